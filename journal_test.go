package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// openTestStore opens a store on the journal at path, closed when the test
// ends, and returns it with what it logs.
func openTestStore(t *testing.T, path string, seed bool) (*Store, *syncWriter) {
	t.Helper()
	logs := &syncWriter{}
	s, err := OpenStore(path, seed, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatalf("OpenStore(%s): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s, logs
}

// syncWriter collects what is written to it, from any goroutine.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(b)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// storeKinds are the stores that the concurrency tests run on.
var storeKinds = []struct {
	name string
	open func(t *testing.T) *Store
}{
	{"in memory", func(*testing.T) *Store { return NewStore(true) }},
	{"with -data", func(t *testing.T) *Store {
		s, _ := openTestStore(t, filepath.Join(t.TempDir(), "data"), true)
		return s
	}},
}

// journalOf returns the journal of the changes, given as id, item pairs in
// stored form ("" for a deletion).
func journalOf(changes ...string) []byte {
	var b []byte
	for i := 0; i < len(changes); i += 2 {
		var it []byte
		if changes[i+1] != "" {
			it = []byte(changes[i+1])
		}
		b = appendRecord(b, changes[i], it)
	}
	return b
}

// record returns a journal line of payload, with a valid checksum.
func record(payload string) []byte {
	sum := checksum([]byte(payload))
	return fmt.Appendf(nil, "%s %s\n", sum[:], payload)
}

// contents returns what s holds, in stored form.
func contents(s *Store) map[string]string {
	m := map[string]string{}
	for _, e := range all(s) {
		m[string(e.id)] = string(e.item)
	}
	return m
}

// reopen closes s and opens its journal again.
func reopen(t *testing.T, s *Store) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s, _ = openTestStore(t, s.journal.path, true)
	return s
}

// TestTornTail cuts or spoils the journal's last record, as a crash in the
// middle of a write can: the store opens without it, says so, and goes on.
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
			s, logs := openTestStore(t, path, true)
			if got, want := contents(s), map[string]string{"a": `"a"1`, "b": `"b"2`}; !maps.Equal(got, want) {
				t.Errorf("opened: %v, want %v", got, want)
			}
			if log := logs.String(); !strings.Contains(log, "level=WARN") || !strings.Contains(log, fmt.Sprint("offset=", lastStart)) {
				t.Errorf("no WARN naming offset %d:\n%s", lastStart, log)
			}
			if _, _, err := s.Put("d", []byte(`"d"4`), nil); err != nil {
				t.Fatal(err)
			}
			if got, want := contents(reopen(t, s)), map[string]string{"a": `"a"1`, "b": `"b"2`, "d": `"d"4`}; !maps.Equal(got, want) {
				t.Errorf("reopened after a write: %v, want %v", got, want)
			}
		})
	}
}

// TestCorruptJournal spoils a record before the last: the store refuses to
// open, and says where.
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
			if s, err := OpenStore(path, true, quiet); err == nil || err.Error() != want {
				t.Errorf("OpenStore = %v, %v; want the error %q", s, err, want)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, tt.file) {
				t.Errorf("the journal was changed")
			}
		})
	}
}

// faultyFile is a journal file whose writes or syncs fail while fault is
// set. A failing write writes half of what it was given.
type faultyFile struct {
	journalFile
	fault     atomic.Pointer[error]
	inWriteAt bool // the fault hits WriteAt, else Sync
}

func (f *faultyFile) WriteAt(b []byte, off int64) (int, error) {
	if err := f.fault.Load(); err != nil && f.inWriteAt {
		n, _ := f.journalFile.WriteAt(b[:len(b)/2], off)
		return n, *err
	}
	return f.journalFile.WriteAt(b, off)
}

func (f *faultyFile) Sync() error {
	if err := f.fault.Load(); err != nil && !f.inWriteAt {
		return *err
	}
	return f.journalFile.Sync()
}

// TestWriteFailures has the journal's writes fail: writes get 503 and change
// nothing, everything else is served, and writes work again once the fault
// is gone, leaving no trace of the refused ones.
func TestWriteFailures(t *testing.T) {
	for _, tt := range []struct {
		name      string
		inWriteAt bool
		err       error
	}{
		{"disk full", true, syscall.ENOSPC},
		{"I/O error on sync", false, syscall.EIO},
	} {
		t.Run(tt.name, func(t *testing.T) {
			open := func(t *testing.T) (*Store, *faultyFile, *syncWriter) {
				s, logs := openTestStore(t, filepath.Join(t.TempDir(), "data"), true)
				file := &faultyFile{journalFile: s.journal.file, inWriteAt: tt.inWriteAt}
				file.fault.Store(&tt.err)
				s.journal.file = file
				return s, file, logs
			}
			unavailable := detail("Service Unavailable: the change could not be saved, and nothing was changed")
			checkContractOn(t, func(t *testing.T) *Store { s, _, _ := open(t); return s }, []contractCase{
				{name: "update", req: req{"PUT", "/items/foo", `{"name":"x"}`, jsonCT}, status: 503, body: unavailable},
				{name: "create", req: req{"PUT", "/items/new", `{"name":"x"}`, jsonCT}, status: 503, body: unavailable},
				{name: "delete", req: req{"DELETE", "/items/bar", "", nil}, status: 503, body: unavailable},
				{name: "conditional update", req: req{"PUT", "/items/foo", `{}`, cond("If-Match", "{foo}")}, status: 503, body: unavailable},
				{name: "read", req: req{"GET", "/items/foo", "", nil}, status: 200, body: seeded["foo"]},
				{name: "health", req: req{"GET", "/healthz", "", nil}, status: 200, body: `{"status":"ok"}`},
			})

			s, file, logs := open(t)
			srv := newTestServer(t, NewServer(s, quiet, testMaxBody, false, nil))
			for i := range 3 { // longer than the write that follows, so that they leave something behind
				if resp, _ := do(t, srv, req{"PUT", "/items/foo", fmt.Sprintf(`{"name":"%0200d"}`, i), jsonCT}); resp.StatusCode != 503 {
					t.Fatalf("PUT /items/foo while the disk fails: %d, want 503", resp.StatusCode)
				}
			}
			if !strings.Contains(logs.String(), "level=ERROR") {
				t.Errorf("nothing logged at ERROR:\n%s", logs)
			}
			file.fault.Store(nil)
			if resp, _ := do(t, srv, req{"PUT", "/items/foo", `{"name":"y"}`, jsonCT}); resp.StatusCode != 200 {
				t.Fatalf("PUT /items/foo once the fault is gone: %d, want 200", resp.StatusCode)
			}
			if resp, _ := do(t, srv, req{"DELETE", "/items/bar", "", nil}); resp.StatusCode != 204 {
				t.Fatalf("DELETE /items/bar once the fault is gone: %d, want 204", resp.StatusCode)
			}
			s.Close()
			s, logs = openTestStore(t, s.journal.path, true)
			if got, want := contents(s), map[string]string{"foo": `"y"null`}; !maps.Equal(got, want) {
				t.Errorf("reopened: %v, want %v", got, want)
			}
			if strings.Contains(logs.String(), "level=WARN") {
				t.Errorf("the refused writes left a trace in the journal:\n%s", logs)
			}
		})
	}
}

// heldFile is a journal file whose syncs each wait for the outcome that the
// test sends on the channel they send.
type heldFile struct {
	journalFile
	syncs chan chan error
}

func (f *heldFile) Sync() error {
	outcome := make(chan error)
	f.syncs <- outcome
	if err := <-outcome; err != nil {
		return err
	}
	return f.journalFile.Sync()
}

// TestVisibleOnceDurable holds a create's sync: until it ends, readers do not
// see the item, and a create-only PUT of the same id waits for it, then gets
// the answer that what landed calls for.
func TestVisibleOnceDurable(t *testing.T) {
	tests := []struct {
		name                    string
		syncErr                 error
		wantFirst, wantCreateIf int
	}{
		{"the sync succeeds", nil, 201, 412},
		{"the sync fails", syscall.EIO, 503, 201},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTestStore(t, filepath.Join(t.TempDir(), "data"), true)
			file := &heldFile{journalFile: s.journal.file, syncs: make(chan chan error)}
			s.journal.file = file
			srv := newTestServer(t, NewServer(s, quiet, testMaxBody, false, nil))
			status := func(rq req) <-chan int {
				c := make(chan int, 1)
				go func() {
					resp, _, err := send(srv, rq)
					if err != nil {
						t.Error(err)
						c <- 0
						return
					}
					c <- resp.StatusCode
				}()
				return c
			}
			first := status(req{"PUT", "/items/new", `{"name":"first"}`, jsonCT})
			firstSync := <-file.syncs
			if resp, _ := do(t, srv, req{"GET", "/items/new", "", nil}); resp.StatusCode != 404 {
				t.Errorf("GET /items/new before its create is durable: %d, want 404", resp.StatusCode)
			}
			if _, ok := items(t, srv)["new"]; ok {
				t.Errorf("GET /items lists new before its create is durable")
			}
			createIf := status(req{"PUT", "/items/new", `{"name":"second"}`, cond("If-None-Match", "*")})
			// Wait until the create-only PUT waits for the create, unless it
			// answers at once, which it must not.
			answered := 0
			for waiting := 0; waiting < 2 && answered == 0; {
				select {
				case answered = <-createIf:
					t.Errorf("PUT /items/new If-None-Match: * answered %d while the create it rests on was not durable", answered)
				default:
				}
				buf := make([]byte, 1<<20)
				waiting = strings.Count(string(buf[:runtime.Stack(buf, true)]), "(*Store).commit(")
			}
			firstSync <- tt.syncErr
			if got := <-first; got != tt.wantFirst {
				t.Errorf("PUT /items/new: %d, want %d", got, tt.wantFirst)
			}
			for answered == 0 {
				select {
				case sync := <-file.syncs:
					sync <- nil
				case answered = <-createIf:
				}
			}
			if answered != tt.wantCreateIf {
				t.Errorf("PUT /items/new If-None-Match: * while the create waited: %d, want %d", answered, tt.wantCreateIf)
			}
		})
	}
}

// TestCompaction compacts while writers go on, and checks that nothing is
// lost and that the journal shrinks to its live items.
func TestCompaction(t *testing.T) {
	// A journal that is over its limit when opened: its items, each
	// written over four times.
	var file []byte
	want := map[string]string{}
	for round := range 5 {
		for i := range 10000 {
			id, it := fmt.Sprint("item", i), fmt.Sprintf(`"%d"%d`, round, i)
			file, want[id] = appendRecord(file, id, []byte(it)), it
		}
	}
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	s, logs := openTestStore(t, path, true)
	var mu sync.Mutex // guards want
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 0))
			for i := range 200 {
				id := fmt.Sprint("item", rng.IntN(10000))
				it := fmt.Sprintf(`"w%d"%d`, w, i)
				mu.Lock() // the store's order of writes to one id is this order
				if _, _, err := s.Put(id, []byte(it), nil); err != nil {
					t.Error(err)
				}
				want[id] = it
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	s.journal.compactions.Wait()
	if !strings.Contains(logs.String(), "journal compacted") {
		t.Fatalf("no compaction:\n%s", logs)
	}
	if got := contents(s); !maps.Equal(got, want) {
		t.Errorf("after compaction: %d items differ from the writes", len(got))
	}
	var live int64
	for id, it := range want {
		live += recordSize(id, []byte(it))
	}
	if info, err := os.Stat(path); err != nil || info.Size() > 2*live {
		t.Errorf("journal after compaction: %v, %v; want at most twice its %d live bytes", info.Size(), err, live)
	}
	if got := contents(reopen(t, s)); !maps.Equal(got, want) {
		t.Errorf("reopened after compaction: the items differ from the writes")
	}
}

// TestRecordFormat holds the journal's records to what they record:
// parseRecord reads back what appendRecord writes, recordSize is its length,
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
		line := appendRecord(nil, tt.id, it)
		if c, ok := parseRecord(line[:len(line)-1], nil); !ok || c.id != tt.id || string(c.item) != tt.item {
			t.Errorf("parseRecord(%s) = %q, %q, %v; want %q, %q", line, c.id, c.item, ok, tt.id, tt.item)
		}
		if got := recordSize(tt.id, it); it != nil && got != int64(len(line)) {
			t.Errorf("recordSize(%q, %q) = %d, want %d", tt.id, tt.item, got, len(line))
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
		if !ok || c.id == "" {
			return
		}
		again := appendRecord(nil, c.id, c.item)
		if back, ok := parseRecord(again[:len(again)-1], nil); !ok || back.id != c.id || !bytes.Equal(back.item, c.item) {
			t.Errorf("%s reads as %q, %q, which is written as %s and reads back as %q, %q, %v", line, c.id, c.item, again, back.id, back.item, ok)
		}
	})
}
