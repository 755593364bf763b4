package main

// The tests in this file run the real binary on a journal and kill it with
// SIGKILL, as a crash would.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"itemsvc/internal/journal"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// binDir holds the binary that the tests in this file build.
var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildBinary builds itemsvc from this source, once per test run.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "itemsvc-test")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "itemsvc")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// A server is the binary, running on a journal.
type server struct {
	cmd    *exec.Cmd
	url    string
	log    *logWatcher
	exited chan struct{} // closed once it has exited
}

// startServer starts the binary on the journal at path, and returns once it
// listens.
func startServer(t *testing.T, path string) *server {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	s := &server{log: &logWatcher{addr: addr}, exited: make(chan struct{})}
	s.cmd = exec.Command(bin, "-addr", "127.0.0.1:0", "-access-log=false", "-data", path)
	s.cmd.Stderr = s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(s.kill)
	select {
	case a := <-addr:
		s.url = "http://" + a
	case <-s.exited:
		t.Fatalf("itemsvc exited before listening: %v\n%s", s.cmd.ProcessState, s.log)
	}
	return s
}

// kill sends SIGKILL and waits for the server to exit.
func (s *server) kill() {
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
}

// items returns every item, walking GET /items by its Link headers.
func (s *server) items(t *testing.T) map[string]string {
	t.Helper()
	m := map[string]string{}
	for next := "/items?limit=10000"; next != ""; {
		resp, err := http.Get(s.url + next)
		if err != nil {
			t.Fatal(err)
		}
		var page map[string]json.RawMessage
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for id, it := range page {
			m[id] = string(it)
		}
		next = nextPage(resp)
	}
	return m
}

// do sends a request with body, a JSON item or "" for none, and returns
// the status.
func (s *server) do(client *http.Client, method, id, body string) (int, error) {
	r, err := http.NewRequest(method, s.url+"/items/"+id, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	r.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(r)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// A logWatcher collects a server's log, and sends on addr the address that
// it listens on once it logs it.
type logWatcher struct {
	syncWriter
	addr chan<- string // nil once sent; only Write, called by one goroutine, uses it
}

func (w *logWatcher) Write(b []byte) (int, error) {
	n, err := w.syncWriter.Write(b)
	if _, rest, ok := strings.Cut(w.String(), "msg=listening addr="); ok && w.addr != nil {
		if addr, _, ok := strings.Cut(rest, "\n"); ok {
			w.addr <- addr
			w.addr = nil
		}
	}
	return n, err
}

// A workload writes from several writers, each to ids of its own, and
// remembers what the server acknowledged and what it was sending when it
// died.
type workload struct {
	acked    []map[string]string // per writer: id → item; absent if deleted
	inFlight []journal.Change    // per writer: the request without an answer, if any
	acks     atomic.Int64
}

func newWorkload(writers int) *workload {
	w := &workload{acked: make([]map[string]string, writers), inFlight: make([]journal.Change, writers)}
	for i := range w.acked {
		w.acked[i] = map[string]string{}
	}
	return w
}

// run writes to srv until it stops, and calls stop after killAfter
// acknowledged writes if that is not 0. Every answer must fit what was
// acknowledged before.
func (w *workload) run(t *testing.T, srv *server, round int, killAfter int64, stop func()) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: len(w.acked)}}
	var wg sync.WaitGroup
	for i := range w.acked {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(round), uint64(i)))
			for n := 0; ; n++ {
				c := journal.Change{ID: fmt.Sprintf("w%d-%d", i, rng.IntN(4))}
				if rng.IntN(4) > 0 {
					c.Item = fmt.Appendf(nil, `{"name":"round %d","size":%d}`, round, n)
				}
				w.inFlight[i] = c
				_, had := w.acked[i][c.ID]
				var status int
				var err error
				if c.Item != nil {
					status, err = srv.do(client, "PUT", c.ID, string(c.Item))
				} else {
					status, err = srv.do(client, "DELETE", c.ID, "")
				}
				if err != nil {
					return // the server died under it
				}
				want := map[[2]bool]int{{true, true}: 200, {true, false}: 201, {false, true}: 204, {false, false}: 404}[[2]bool{c.Item != nil, had}]
				if status != want {
					t.Errorf("%s %s: %d, want %d", map[bool]string{true: "PUT", false: "DELETE"}[c.Item != nil], c.ID, status, want)
				}
				if c.Item != nil {
					w.acked[i][c.ID] = string(c.Item)
				} else {
					delete(w.acked[i], c.ID)
				}
				w.inFlight[i] = journal.Change{}
				if w.acks.Add(1) == killAfter {
					stop()
				}
			}
		})
	}
	wg.Wait()
}

// check fails unless got, a restarted server's items, holds every write that
// was acknowledged, where each writer's request in flight may have landed or
// not. It then takes what landed as acknowledged.
func (w *workload) check(t *testing.T, got map[string]string) {
	t.Helper()
	for i, acked := range w.acked {
		for k := range 4 {
			id := fmt.Sprintf("w%d-%d", i, k)
			it, ok := got[id]
			c := w.inFlight[i]
			switch {
			case ok == (acked[id] != "") && it == acked[id]:
			case c.ID == id && ok == (c.Item != nil) && it == string(c.Item):
				if ok {
					acked[id] = it
				} else {
					delete(acked, id)
				}
			default:
				t.Errorf("after a crash, %s is %q; acknowledged: %q, in flight: %q", id, it, acked[id], c.Item)
			}
		}
		w.inFlight[i] = journal.Change{}
	}
}

// TestCrashes kills the server at random moments as many writers write, and
// restarts it on the same journal: every acknowledged write is there each
// time, and the store is never seeded again.
func TestCrashes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data")
	srv := startServer(t, path)
	if status, err := srv.do(http.DefaultClient, "DELETE", "foo", ""); status != 204 {
		t.Fatalf("DELETE /items/foo: %d, %v", status, err)
	}
	w := newWorkload(8)
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 6 {
		w.run(t, srv, round, w.acks.Load()+int64(1+rng.IntN(400)), srv.kill)
		srv = startServer(t, path)
		got := srv.items(t)
		w.check(t, got)
		if _, ok := got["foo"]; ok || got["bar"] != seeded["bar"] {
			t.Errorf("round %d: foo = %q, bar = %q; want foo still deleted and bar as seeded", round, got["foo"], got["bar"])
		}
	}
}

// TestGracefulShutdown stops the server with SIGTERM as writers write: it
// exits 0 once the writes in flight are answered, having closed the journal,
// and everything it answered is there at the next start.
func TestGracefulShutdown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data")
	srv := startServer(t, path)
	w := newWorkload(8)
	w.run(t, srv, 0, 200, func() { srv.cmd.Process.Signal(syscall.SIGTERM) })
	<-srv.exited
	if code := srv.cmd.ProcessState.ExitCode(); code != 0 || !strings.Contains(srv.log.String(), "msg=stopped") {
		t.Fatalf("after SIGTERM: exit status %d, log:\n%s", code, srv.log)
	}
	w.check(t, startServer(t, path).items(t))
}

// TestTornTailThenCrash starts the server on a journal whose last record is
// cut short: it starts without it, and what it acknowledges next survives a
// crash.
func TestTornTailThenCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data")
	whole := journalOf("a", `"a"1`, "b", `"b"2`)
	if err := os.WriteFile(path, whole[:len(whole)-5], 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, path)
	if log := srv.log.String(); !strings.Contains(log, "level=WARN") {
		t.Errorf("no WARN about the torn record:\n%s", log)
	}
	if status, err := srv.do(http.DefaultClient, "PUT", "c", `{"name":"c","size":3}`); status != 201 {
		t.Fatalf("PUT /items/c: %d, %v", status, err)
	}
	srv.kill()
	want := map[string]string{"a": `{"name":"a","size":1}`, "c": `{"name":"c","size":3}`}
	if got := startServer(t, path).items(t); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after the crash: %v, want %v", got, want)
	}
}

// TestCorruptJournalExits checks that the binary refuses a corrupt journal
// with status 1 and a message that says where.
func TestCorruptJournalExits(t *testing.T) {
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, append([]byte("junk\n"), journalOf("a", `"a"1`)...), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-data", path)
	cmd.Stderr = &stderr
	err = cmd.Run()
	if want := "itemsvc: " + path + ": corrupt record at offset 0\n"; cmd.ProcessState.ExitCode() != 1 || !strings.HasSuffix(stderr.String(), want) {
		t.Errorf("itemsvc on a corrupt journal: %v, stderr %q; want status 1 and %q", err, stderr.String(), want)
	}
}

// TestCompactionCrashes kills the server at several points of a compaction,
// as writers write: at its start, half way, and once it has renamed the new
// file. Each time, nothing is lost and the journal opens. The checks start a
// server on a copy of the journal, which leaves the journal's compaction for
// the next point.
func TestCompactionCrashes(t *testing.T) {
	// A journal over its limit, so that each start compacts it: 4 MB of
	// items, each written three times.
	var file []byte
	want := map[string]string{}
	for round := range 3 {
		name := strings.Repeat(strconv.Itoa(round), 200)
		for i := range 20000 {
			id := "item" + strconv.Itoa(i)
			file = journal.AppendRecord(file, id, []byte(`"`+name+`"`+strconv.Itoa(i)))
			want[id] = `{"name":"` + name + `","size":` + strconv.Itoa(i) + `}`
		}
	}
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	size := func(p string) int64 {
		info, err := os.Stat(p)
		if err != nil {
			return -1
		}
		return info.Size()
	}
	renamed := func() bool { return size(path) < int64(len(file)) }
	points := []struct {
		name    string
		reached func() bool
	}{
		{"at its start", func() bool { return size(path+".tmp") >= 0 }},
		{"half way", func() bool { return size(path+".tmp") > int64(len(file))/6 }},
		{"after the rename", renamed},
	}
	w := newWorkload(4)
	for round, point := range points {
		srv := startServer(t, path)
		done := make(chan struct{})
		go func() {
			w.run(t, srv, round, 0, nil)
			close(done)
		}()
		for deadline := time.Now().Add(time.Minute); !point.reached(); runtime.Gosched() {
			if point.name != "after the rename" && renamed() || time.Now().After(deadline) {
				t.Fatalf("the compaction ended, or never began, before the kill %s", point.name)
			}
		}
		srv.kill()
		<-done
		if _, err := os.Stat(path + ".tmp"); !renamed() && err != nil {
			t.Errorf("killed %s, but the compaction was not running: %v", point.name, err)
		}

		copied, err := os.ReadFile(path)
		if err == nil {
			err = os.WriteFile(path+".copy", copied, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
		check := startServer(t, path+".copy")
		got := check.items(t)
		check.kill()
		w.check(t, got)
		for id, it := range want {
			if got[id] != it {
				t.Fatalf("killed %s: %s = %q, want %s", point.name, id, got[id], it)
			}
		}
	}
}
