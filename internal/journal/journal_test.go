package journal

import (
	"bytes"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// journalOf returns the journal of the changes, given as id, item pairs in
// stored form ("" for a deletion).
func journalOf(changes ...string) []byte {
	var b []byte
	for i := 0; i < len(changes); i += 2 {
		var it []byte
		if changes[i+1] != "" {
			it = []byte(changes[i+1])
		}
		b = AppendRecord(b, changes[i], it)
	}
	return b
}

// record returns a journal line of payload, with a valid checksum.
func record(payload string) []byte {
	sum := checksum([]byte(payload))
	return fmt.Appendf(nil, "%s %s\n", sum[:], payload)
}

// validID is the service's rule for ids, in short.
func validID(id string) bool { return id != "" && !strings.Contains(id, "/") }

// open opens the journal at path, closed when the test ends, and returns
// it with what it holds, in stored form, and what it logs.
func open(t *testing.T, path string) (*Journal, map[string]string, *bytes.Buffer) {
	t.Helper()
	items, logs := map[string]string{}, &bytes.Buffer{}
	j, err := Open(path, slog.New(slog.NewTextHandler(logs, nil)), validID, func(c Change) {
		if c.Item == nil {
			delete(items, c.ID)
		} else {
			items[c.ID] = string(c.Item)
		}
	})
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { j.Close() })
	return j, items, logs
}

// TestTornTail cuts or spoils the journal's last record, as a crash in the
// middle of a write can: the journal opens without it, says so, and cuts it
// off at the next append.
func TestTornTail(t *testing.T) {
	whole := journalOf("a", `"a"1`, "b", `"b"2`, "c", `"c"3`)
	lastStart := bytes.LastIndexByte(whole[:len(whole)-1], '\n') + 1
	tests := []struct {
		name string
		file []byte
	}{
		{"no newline", whole[:len(whole)-1]},
		{"cut in the item", whole[:len(whole)-8]},
		{"cut in the checksum", whole[:lastStart+3]},
		{"a spoilt checksum", append(append(whole[:lastStart:lastStart], "0000000"...), whole[lastStart+7:]...)},
		{"zeros after the end", append(whole[:lastStart:lastStart], make([]byte, 100)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "data")
			if err := os.WriteFile(path, tt.file, 0o644); err != nil {
				t.Fatal(err)
			}
			j, items, logs := open(t, path)
			if want := map[string]string{"a": `"a"1`, "b": `"b"2`}; !maps.Equal(items, want) {
				t.Errorf("opened: %v, want %v", items, want)
			}
			if log := logs.String(); !strings.Contains(log, "level=WARN") || !strings.Contains(log, fmt.Sprint("offset=", lastStart)) {
				t.Errorf("no WARN naming offset %d:\n%s", lastStart, log)
			}
			if err := j.Append(journalOf("d", `"d"4`)); err != nil {
				t.Fatal(err)
			}
			j.Close()
			if _, items, _ := open(t, path); !maps.Equal(items, map[string]string{"a": `"a"1`, "b": `"b"2`, "d": `"d"4`}) {
				t.Errorf("reopened after an append: %v, want a, b and d", items)
			}
		})
	}
}

// TestCorruptJournal spoils a record before the last: Open refuses it, and says where.
func TestCorruptJournal(t *testing.T) {
	whole := journalOf("a", `"a"1`, "b", `"b"2`, "c", `"c"3`)
	second := bytes.IndexByte(whole, '\n') + 1
	flip := func(at int) []byte {
		b := bytes.Clone(whole)
		b[at] ^= 0x20
		return b
	}
	tests := []struct {
		name   string
		file   []byte
		offset int
	}{
		{"a flipped bit in an item", flip(second + 20), second},
		{"a flipped bit in a checksum", flip(0), 0},
		{"a lost newline", slices.Delete(bytes.Clone(whole), second-1, second), 0},
		{"a line that is not a record", append([]byte("hello\n"), whole...), 0},
		{"a valid checksum on an invalid item", append(record(`{"x":5}`), whole...), 0},
		{"a valid checksum on an invalid id", append(record(`{"a/b":null}`), whole...), 0},
		{"a valid checksum on no object", append(record(`[]`), whole...), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "data")
			if err := os.WriteFile(path, tt.file, 0o644); err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("%s: corrupt record at offset %d", path, tt.offset)
			if _, err := Open(path, slog.New(slog.DiscardHandler), validID, func(Change) {}); err == nil || err.Error() != want {
				t.Errorf("Open: %v; want the error %q", err, want)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, tt.file) {
				t.Errorf("the journal was changed")
			}
		})
	}
}

// TestCompaction replaces a journal with its live items, plus what was
// appended between Prepare and Replace, as the store's compaction does.
func TestCompaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, journalOf("a", `"a"1`, "a", `"a"2`, "b", `"b"1`, "b", ""), 0o644); err != nil {
		t.Fatal(err)
	}
	j, _, _ := open(t, path)
	from := j.Size()
	next, err := j.Prepare(journalOf("a", `"a"2`))
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Append(journalOf("c", `"c"1`)); err != nil {
		t.Fatal(err)
	}
	if err := j.Replace(next, from); err != nil {
		t.Fatal(err)
	}
	want := append([]byte(opening), journalOf("a", `"a"2`, "c", `"c"1`)...)
	if got, _ := os.ReadFile(path); !bytes.Equal(got, want) || j.Size() != int64(len(want)) {
		t.Errorf("after Replace the file is %q (size %d), want %q", got, j.Size(), want)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("the temporary file is left: %v", err)
	}
	j.Close()
	if _, items, _ := open(t, path); !maps.Equal(items, map[string]string{"a": `"a"2`, "c": `"c"1`}) {
		t.Errorf("reopened: %v", items)
	}
}

// TestRecordFormat holds the journal's records to what they record:
// parseRecord reads back what AppendRecord writes, RecordSize is its length,
// and an item that the handler could not have stored is refused.
func TestRecordFormat(t *testing.T) {
	for _, tt := range []struct{ id, item string }{
		{"foo", `"Fighters"6`}, {"a\n\"\x01", `null9`}, {strings.Repeat("é", 100), `"x"null`},
		{"min", `"\"\\\u0001é"-9223372036854775808`}, {"deleted", ""},
	} {
		var it []byte
		if tt.item != "" {
			it = []byte(tt.item)
		}
		line := AppendRecord(nil, tt.id, it)
		if c, ok := parseRecord(line[:len(line)-1], nil); !ok || c.ID != tt.id || string(c.Item) != tt.item {
			t.Errorf("parseRecord(%s) = %q, %q, %v; want %q, %q", line, c.ID, c.Item, ok, tt.id, tt.item)
		}
		if got := RecordSize(tt.id, it); it != nil && got != int64(len(line)) {
			t.Errorf("RecordSize(%q, %q) = %d, want %d", tt.id, tt.item, got, len(line))
		}
	}
	for _, payload := range []string{
		`{"x":5}`, `{"x":{"name":5,"size":1}}`, `{"x":{"name":"a","size":+5}}`, `{"x":{"name":"a","size":007}}`,
		`{"x":{"name":"a","size":1.0}}`, `{"x":{"name":"a","size":-0}}`, `{"x":{"name":"a"}}`, `{"x":{"size":1,"name":"a"}}`,
	} {
		line := record(payload)
		if _, ok := parseRecord(line[:len(line)-1], nil); ok {
			t.Errorf("parseRecord accepts %s", payload)
		}
	}
}

// FuzzParseRecord checks that no record makes replay panic, even one whose
// checksum is right, and that what it accepts, written again, reads back the
// same.
func FuzzParseRecord(f *testing.F) {
	for _, payload := range []string{`{}`, `{"foo":{"name":"Fighters","size":6}}`, `{"a\\u0041":null}`, `{"x":{"name":null,"size":-1}}`} {
		f.Add([]byte(payload))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		line := record(string(payload))
		c, ok := parseRecord(line[:len(line)-1], nil)
		if !ok || c.ID == "" {
			return
		}
		again := AppendRecord(nil, c.ID, c.Item)
		if back, ok := parseRecord(again[:len(again)-1], nil); !ok || back.ID != c.ID || !bytes.Equal(back.Item, c.Item) {
			t.Errorf("%s reads as %q, %q, which is written as %s and reads back as %q, %q, %v", line, c.ID, c.Item, again, back.ID, back.Item, ok)
		}
	})
}
