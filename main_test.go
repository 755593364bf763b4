package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"itemsvc/internal/journal"
)

// startRun runs run with args in the background and returns the address it
// logged, the channel run's result arrives on, and a cancel that stops it.
// The address comes from run's own start-up log line, so nothing polls.
func startRun(t *testing.T, args ...string) (addr string, done <-chan error, cancel context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	logR, logW := io.Pipe()
	result := make(chan error, 1)
	go func() {
		err := run(ctx, append([]string{"-log-format", "json"}, args...), func(string) string { return "" }, logW)
		logW.Close()
		result <- err
	}()
	addrs := make(chan string, 1)
	go func() {
		for sc := bufio.NewScanner(logR); sc.Scan(); {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				addrs <- line.Addr
			}
		}
		close(addrs)
	}()
	select {
	case addr, ok := <-addrs:
		if !ok {
			t.Fatalf("run exited before listening: %v", <-result)
		}
		return addr, result, cancel
	case <-time.After(10 * time.Second):
		t.Fatal("run did not log a listening address within 10s")
	}
	return "", nil, nil
}

// TestRun starts the real process wiring on a free port, with the store
// seeded or not, serves a request, and checks that cancelling the context
// shuts down cleanly.
func TestRun(t *testing.T) {
	for _, tt := range []struct {
		args       []string
		wantStatus int // of PUT /items/foo
	}{{nil, http.StatusOK}, {[]string{"-seed=false"}, http.StatusCreated}} {
		addr, done, cancel := startRun(t, append(tt.args, "-addr", "127.0.0.1:0", "-access-log=false")...)
		r, _ := http.NewRequest("PUT", "http://"+addr+"/items/foo", strings.NewReader(`{"name":"x"}`))
		r.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.wantStatus {
			t.Errorf("run %q: PUT /items/foo: status = %d, want %d", tt.args, resp.StatusCode, tt.wantStatus)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run %q returned %v after cancel, want nil", tt.args, err)
			}
		case <-time.After(shutdownTimeout + 5*time.Second):
			t.Fatalf("run %q did not return after cancel", tt.args)
		}
	}
}

// TestRunErrors checks that bad configuration is an error, not a server.
func TestRunErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"address in use", []string{"-addr", busy.Addr().String()}, nil, "address already in use"},
		{"$ADDR is the default address", nil, map[string]string{"ADDR": busy.Addr().String()}, busy.Addr().String()},
		{"bad log format", []string{"-log-format", "xml"}, nil, "-log-format"},
		{"zero body limit", []string{"-max-body", "0"}, nil, "-max-body"},
		{"unknown flag", []string{"-nope"}, nil, "not defined"},
		{"stray argument", []string{"serve"}, nil, "unexpected arguments"},
		{"docs assets not a URL", []string{"-docs-assets", "static"}, nil, "-docs-assets"},
		{"docs assets over ftp", []string{"-docs-assets", "ftp://assets.example/"}, nil, "-docs-assets"},
		{"origin without a scheme", []string{"-cors-origins", "localhost:5173"}, nil, `"localhost:5173" is not an origin`},
		{"origin with a path", []string{"-cors-origins", "http://localhost:5173/"}, nil, "is not an origin"},
		{"origin over ftp", []string{"-cors-origins", "ftp://files.example"}, nil, "is not an origin"},
		{"origin without a host", []string{"-cors-origins", "http://:8080"}, nil, "is not an origin"},
		{"origin with a bad port", []string{"-cors-origins", "http://localhost:port"}, nil, "is not an origin"},
		{"origin in upper case", []string{"-cors-origins", "https://App.example.com"}, nil, "is not an origin"},
		{"origin with a user", []string{"-cors-origins", "https://me@app.example.com"}, nil, "is not an origin"},
		{"one bad origin of a list", []string{"-cors-origins", "https://app.example.com, *.example.com"}, nil, `"*.example.com" is not an origin`},
		{"$CORS_ORIGINS is the default", nil, map[string]string{"CORS_ORIGINS": "localhost"}, `"localhost" is not an origin`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			if err := run(context.Background(), tt.args, getenv, io.Discard); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("run(%q) with %v = %v, want an error containing %q", tt.args, tt.env, err, tt.wantErr)
			}
		})
	}
}

// dial opens a raw connection to srv that gives up reading after 10 s, so
// that a server that fails to cut a client off fails the test instead of
// hanging it.
func dial(t *testing.T, srv interface{ Addr() net.Addr }) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// TestSlowClientsAreCutOff has clients stall their headers or their body:
// the server closes the connection soon after its read timeout, answering at
// most a 400, and stores nothing.
func TestSlowClientsAreCutOff(t *testing.T) {
	tests := []struct {
		name  string
		write func(c net.Conn)
	}{
		{"headers one byte at a time, never finished (slowloris)", func(c net.Conn) {
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for _, b := range []byte("PUT /items/foo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Slow: " + strings.Repeat("a", 1000)) {
				<-tick.C
				if _, err := c.Write([]byte{b}); err != nil {
					return
				}
			}
		}},
		{"body stalled after a few bytes", func(c net.Conn) {
			fmt.Fprintf(c, "PUT /items/foo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newTestServer(t, nil)
			c := dial(t, srv.Listener)
			start := time.Now()
			go tt.write(c)
			got, err := io.ReadAll(c)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("the server did not close the connection within 10 s (got %q)", got)
			}
			if limit := testTimeout + 2*time.Second; time.Since(start) > limit {
				t.Errorf("the server closed the connection after %v, want within %v", time.Since(start), limit)
			}
			if len(got) > 0 && !strings.HasPrefix(string(got), "HTTP/1.1 400 ") {
				t.Errorf("the client got %q, want a 400 or nothing", got)
			}
			checkStore(t, srv, req{}, 0, "")
		})
	}
}

// TestOversizedRequests sends requests over the body and header limits, with
// and without a declared length: each is refused without storing anything,
// and a declared length over the limit before the body is read (so no 100
// Continue comes first).
func TestOversizedRequests(t *testing.T) {
	const put = "PUT /items/foo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
	const tooLarge = `{"detail":"Request body too large: the limit is 1024 bytes"}`
	tests := []struct {
		name, request string
		wantStatus    int
		wantBody      string // "" for net/http's own answer
	}{
		{"declared length over the limit, no body sent", put + "Content-Length: 1048576\r\n\r\n", 413, tooLarge},
		{"the same, waiting for 100 Continue", put + "Content-Length: 1048576\r\nExpect: 100-continue\r\n\r\n", 413, tooLarge},
		{"declared length over the limit, body sent", put + fmt.Sprintf("Content-Length: %d\r\n\r\n", testMaxBody+1) + strings.Repeat(" ", testMaxBody+1), 413, tooLarge},
		{"chunked body over the limit", put + "Transfer-Encoding: chunked\r\n\r\n" +
			strings.Repeat(fmt.Sprintf("%x\r\n%s\r\n", 512, strings.Repeat(" ", 512)), 3) + "0\r\n\r\n", 413, tooLarge},
		{"headers over the limit", "GET /items/foo HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", maxHeaderBytes+8192) + "\r\n\r\n", 431, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newTestServer(t, nil)
			c := dial(t, srv.Listener)
			if _, err := io.WriteString(c, tt.request); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus || tt.wantBody != "" && string(body) != tt.wantBody {
				t.Errorf("%d %s, want %d %s", resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			checkStore(t, srv, req{}, 0, "")
		})
	}
}

// TestIdleConnectionsDoNotBlockService holds hundreds of idle connections,
// some after a request and some before any, and checks that a new client is
// still served.
func TestIdleConnectionsDoNotBlockService(t *testing.T) {
	srv := newTestServer(t, nil)
	const idle = 200
	for i := range 2 * idle {
		c := dial(t, srv.Listener)
		if i%2 == 0 {
			continue // connected, never says anything
		}
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		resp.Body.Close()
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(srv.URL + "/items/foo")
	if err != nil {
		t.Fatalf("a new client with %d idle connections open: %v", 2*idle, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a new client with %d idle connections open: status %d, want 200", 2*idle, resp.StatusCode)
	}
}

// TestShutdownUnderLoad cancels serve while many clients write: every
// acknowledged write is in the store, every answer is a 2xx, serve returns
// nil in time, and no goroutine is left behind.
func TestShutdownUnderLoad(t *testing.T) {
	baseline := runtime.NumGoroutine()
	store := NewStore(false)
	srv := newHTTPServer(NewServer(store, quiet, testMaxBody, false, nil, nil), quiet)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, srv, ln, quiet) }()

	const workers, cancelAfter = 16, 500
	transport := &http.Transport{MaxIdleConnsPerHost: workers}
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	var answered atomic.Int64
	acked := make([][]string, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				r, _ := http.NewRequest("PUT", "http://"+ln.Addr().String()+"/items/"+id, strings.NewReader(`{"size":1}`))
				r.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(r)
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("PUT %s before shutdown: %v", id, err)
					}
					return // refused or closed: the server is going away
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					t.Errorf("PUT %s: status %d, want 201", id, resp.StatusCode)
					return
				}
				acked[w] = append(acked[w], id)
				if answered.Add(1) == cancelAfter {
					cancel()
				}
			}
		})
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve returned %v, want nil", err)
		}
	case <-time.After(shutdownTimeout + 5*time.Second):
		t.Fatal("serve did not return within the shutdown bound")
	}
	wg.Wait()
	total := 0
	for _, ids := range acked {
		for _, id := range ids {
			if _, ok := store.Get(id); !ok {
				t.Errorf("acknowledged write %s is not in the store", id)
			}
		}
		total += len(ids)
	}
	t.Logf("%d writes acknowledged, %d stored", total, len(contents(store)))
	transport.CloseIdleConnections()
	waitForGoroutines(t, baseline)
}

// waitForGoroutines fails unless the number of goroutines falls back to at
// most baseline within a few seconds; goroutines of closed connections exit
// asynchronously, so it looks again while they do.
func waitForGoroutines(t *testing.T, baseline int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > baseline; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, want at most %d as before:\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
		}
	}
}

// TestNoLeaksAfterBurst sends a burst of mixed requests and checks that
// goroutines return to their baseline and the heap to near its start.
func TestNoLeaksAfterBurst(t *testing.T) {
	srv := newTestServer(t, nil)
	baseline := runtime.NumGoroutine()
	heapBefore := liveHeap()

	const workers, perWorker = 8, 1000
	transport := &http.Transport{MaxIdleConnsPerHost: workers}
	client := &http.Client{Transport: transport}
	bodies := []string{`{"name":"x","size":1}`, `{"size":"bad"}`, `{`, strings.Repeat("x", 2*testMaxBody)}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				r, _ := http.NewRequest("PUT", srv.URL+"/items/foo", strings.NewReader(bodies[(w+i)%len(bodies)]))
				r.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(r)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	transport.CloseIdleConnections()
	waitForGoroutines(t, baseline)

	heapAfter := liveHeap()
	t.Logf("live heap: %d KiB before, %d KiB after %d requests", heapBefore>>10, heapAfter>>10, workers*perWorker)
	if heapAfter > heapBefore+1<<20 {
		t.Errorf("live heap grew from %d KiB to %d KiB over a burst that stores nothing new", heapBefore>>10, heapAfter>>10)
	}
}

// liveHeap returns the bytes of live heap after a full collection.
func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC() // the second one also empties sync.Pools
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestPanicBecomes500 checks that a panicking handler answers a JSON 500,
// logs the panic, and that the server goes on serving.
func TestPanicBecomes500(t *testing.T) {
	var logs strings.Builder
	mux := http.NewServeMux()
	mux.HandleFunc("/panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	mux.Handle("/ok", serveJSON([]byte(`{"status":"ok"}`)))
	srv := newTestServer(t, recoverPanics(mux, slog.New(slog.NewTextHandler(&logs, nil))))

	if resp, body := do(t, srv, req{"GET", "/panic", "", nil}); resp.StatusCode != 500 || body != `{"detail":"Internal Server Error"}` {
		t.Errorf("GET /panic: %d %s, want 500 {\"detail\":\"Internal Server Error\"}", resp.StatusCode, body)
	}
	if !strings.Contains(logs.String(), "boom") {
		t.Errorf("the panic was not logged: %q", logs.String())
	}
	if resp, _ := do(t, srv, req{"GET", "/ok", "", nil}); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /ok after a panic: status = %d, want 200", resp.StatusCode)
	}
}

// TestAccessLog checks the access log line's fields.
func TestAccessLog(t *testing.T) {
	var logs strings.Builder
	srv := newTestServer(t, NewServer(NewStore(true), slog.New(slog.NewJSONHandler(&logs, nil)), testMaxBody, true, nil, nil))
	do(t, srv, req{"PUT", "/items/new%20one", `{"size":1}`, jsonCT})

	type accessLine struct {
		Msg, Method, Path string
		Status            int
		Bytes, Duration   int64
	}
	var got accessLine
	if err := json.Unmarshal([]byte(logs.String()), &got); err != nil {
		t.Fatalf("access log %q: %v", logs.String(), err)
	}
	if got.Duration <= 0 {
		t.Errorf("access log duration = %d, want > 0", got.Duration)
	}
	got.Duration = 0
	if want := (accessLine{Msg: "request", Method: "PUT", Path: "/items/new%20one", Status: 201, Bytes: 22}); got != want {
		t.Errorf("access log = %+v, want %+v", got, want)
	}
}

// FuzzCleanPath holds rejectUncleanPaths to the mux it stands in front of:
// a path passes exactly when a ServeMux serves it rather than redirecting.
func FuzzCleanPath(f *testing.F) {
	for _, p := range []string{"", "/", "//", "/items", "/items/", "/items//", "/items/foo",
		"/items/.", "/items/..", "/items/./foo", "/items/../foo", "/items/...", "/items/.x",
		"/items/foo/.", "items/foo", "*", "/a//b", "/./", "/../"} {
		f.Add(p)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(http.ResponseWriter, *http.Request) {})
	guarded := rejectUncleanPaths(mux)
	f.Fuzz(func(t *testing.T, p string) {
		code := func(h http.Handler) int {
			r := httptest.NewRequest("GET", "/", nil)
			r.URL.Path, r.URL.RawPath = p, ""
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return w.Code
		}
		if served, passes := code(mux) == http.StatusOK, code(guarded) == http.StatusOK; served != passes {
			t.Fatalf("path %q: the mux serves it: %v; rejectUncleanPaths lets it pass: %v", p, served, passes)
		}
	})
}

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
	return startBinary(t, "", "-data", path)
}

// startBinary starts the binary in dir with args, on a free port, and waits
// until it listens.
func startBinary(t *testing.T, dir string, args ...string) *server {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	s := &server{log: &logWatcher{addr: addr}, exited: make(chan struct{})}
	s.cmd = exec.Command(bin, append([]string{"-addr", "127.0.0.1:0", "-access-log=false"}, args...)...)
	s.cmd.Dir, s.cmd.Stderr = dir, s.log
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

// TestREADME replays every console block of README.md against the real
// binary, line for line, Date lines aside. Each block gets a server of its
// own in a temporary directory: the one its first command starts, if it
// starts ./itemsvc, else the one make run starts.
func TestREADME(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("the README's sessions use curl, which is not installed; .ci/run installs it")
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```console\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) < 2 {
		t.Fatalf("README.md has %d console blocks, want at least 2", len(blocks))
	}
	for i, block := range blocks {
		t.Run(fmt.Sprint("block ", i+1), func(t *testing.T) {
			commands := strings.Split(strings.TrimPrefix(block[1], "$ "), "\n$ ")
			dir, args := t.TempDir(), []string(nil)
			if rest, ok := strings.CutPrefix(commands[0], "./itemsvc "); ok {
				line, _, _ := strings.Cut(rest, " 2>") // the rest sends it to the background
				args = strings.Fields(line)
				commands = commands[1:]
			}
			srv := startBinary(t, dir, args...)
			for _, c := range commands {
				command, want, _ := strings.Cut(c, "\n")
				command = strings.ReplaceAll(command, "localhost:8000", strings.TrimPrefix(srv.url, "http://"))
				out, err := exec.Command("bash", "-c", "cd "+dir+" && "+command).Output()
				got := regexp.MustCompile(`(?m)^Date: .*\n`).ReplaceAllString(strings.ReplaceAll(string(out), "\r", ""), "")
				// A block shows each answer on lines of its own, ended or not, and
				// without the blank line that ends the headers of curl -i.
				if got, want = strings.TrimRight(got, "\n"), strings.TrimRight(want, "\n"); err != nil || got != want {
					t.Errorf("$ %s\n%v; got:\n%s\nwant:\n%s", command, err, got, want)
				}
			}
		})
	}
}
