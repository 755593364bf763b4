package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"itemsvc/internal/journal"
)

// TestStoreCopies checks that the store shares no memory with its callers:
// it copies what Put is given and what Get returns. What its methods report
// is held to a map by the arena's TestMatchesMap, and through HTTP by the handler's
// tests.
func TestStoreCopies(t *testing.T) {
	s := NewStore(false)
	it := []byte(`"a"1`)
	s.Put("k", it, nil)
	it[1] = 'X'
	got, _ := s.Get("k")
	got[1] = 'Y'
	if again, _ := s.Get("k"); string(again) != `"a"1` {
		t.Errorf("Get(k) after changing both what was put and what Get returned = %s, want %s", again, `"a"1`)
	}
}

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
		b = journal.AppendRecord(b, changes[i], it)
	}
	return b
}

// contents returns what s holds, in stored form.
func contents(s *Store) map[string]string {
	m := map[string]string{}
	s.Page("", math.MaxInt, func(id, it []byte) { m[string(id)] = string(it) })
	return m
}

// reopen closes s and opens its journal, at path, again.
func reopen(t *testing.T, s *Store, path string) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s, _ = openTestStore(t, path, true)
	return s
}

// faultyFile is a journal file whose writes or syncs fail while fault is
// set. A failing write writes half of what it was given.
type faultyFile struct {
	journal.File
	fault     atomic.Pointer[error]
	inWriteAt bool // the fault hits WriteAt, else Sync
}

func (f *faultyFile) WriteAt(b []byte, off int64) (int, error) {
	if err := f.fault.Load(); err != nil && f.inWriteAt {
		n, _ := f.File.WriteAt(b[:len(b)/2], off)
		return n, *err
	}
	return f.File.WriteAt(b, off)
}

func (f *faultyFile) Sync() error {
	if err := f.fault.Load(); err != nil && !f.inWriteAt {
		return *err
	}
	return f.File.Sync()
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
			var path string // the last store's
			open := func(t *testing.T) (*Store, *faultyFile, *syncWriter) {
				path = filepath.Join(t.TempDir(), "data")
				s, logs := openTestStore(t, path, true)
				file := &faultyFile{inWriteAt: tt.inWriteAt}
				file.fault.Store(&tt.err)
				s.journal.WrapFile(func(f journal.File) journal.File { file.File = f; return file })
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
			srv := newTestServer(t, NewServer(s, quiet, testMaxBody, false, nil, nil))
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
			s, logs = openTestStore(t, path, true)
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
	journal.File
	syncs chan chan error
}

func (f *heldFile) Sync() error {
	outcome := make(chan error)
	f.syncs <- outcome
	if err := <-outcome; err != nil {
		return err
	}
	return f.File.Sync()
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
			file := &heldFile{syncs: make(chan chan error)}
			s.journal.WrapFile(func(f journal.File) journal.File { file.File = f; return file })
			srv := newTestServer(t, NewServer(s, quiet, testMaxBody, false, nil, nil))
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
			file, want[id] = journal.AppendRecord(file, id, []byte(it)), it
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
	s.compactions.Wait()
	if !strings.Contains(logs.String(), "journal compacted") {
		t.Fatalf("no compaction:\n%s", logs)
	}
	if got := contents(s); !maps.Equal(got, want) {
		t.Errorf("after compaction: %d items differ from the writes", len(got))
	}
	var live int64
	for id, it := range want {
		live += journal.RecordSize(id, []byte(it))
	}
	if info, err := os.Stat(path); err != nil || info.Size() > 2*live {
		t.Errorf("journal after compaction: %v, %v; want at most twice its %d live bytes", info.Size(), err, live)
	}
	if got := contents(reopen(t, s, path)); !maps.Equal(got, want) {
		t.Errorf("reopened after compaction: the items differ from the writes")
	}
}

// TestOpenStore checks what a journal starts with, and that it keeps it.
func TestOpenStore(t *testing.T) {
	seeded := maps.Clone(seedItems)
	tests := []struct {
		name string
		file []byte // nil: no file
		seed bool
		want map[string]string
	}{
		{"no file", nil, true, seeded},
		{"no file, -seed=false", nil, false, map[string]string{}},
		{"empty file", []byte{}, true, seeded},
		{"a journal is never seeded again", journalOf("foo", `"Fighters"6`, "bar", `null1`, "foo", ""), true, map[string]string{"bar": "null1"}},
		{"every kind of id and item", journalOf("a\nb\"c\\ d", `"é\"\u0001"null`, "%2F", `null-9223372036854775808`), true,
			map[string]string{"a\nb\"c\\ d": `"é\"\u0001"null`, "%2F": `null-9223372036854775808`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "data")
			if tt.file != nil {
				if err := os.WriteFile(path, tt.file, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			s, logs := openTestStore(t, path, tt.seed)
			if got := contents(s); !maps.Equal(got, tt.want) {
				t.Errorf("opened: %v, want %v", got, tt.want)
			}
			if !strings.Contains(logs.String(), fmt.Sprintf("items=%d", len(tt.want))) {
				t.Errorf("the log does not give the number of items, %d:\n%s", len(tt.want), logs)
			}
			if got := contents(reopen(t, s, path)); !maps.Equal(got, tt.want) {
				t.Errorf("reopened: %v, want %v", got, tt.want)
			}
		})
	}
}

// TestJournalInUse checks that a second store cannot open a journal in use.
func TestJournalInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data")
	openTestStore(t, path, true)
	if _, err := OpenStore(path, true, quiet); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second OpenStore = %v, want an error saying it is in use", err)
	}
	if _, err := OpenStore(filepath.Join(t.TempDir(), "no", "dir"), true, quiet); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenStore in a missing directory = %v, want it not to exist", err)
	}
}
