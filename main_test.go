package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
		addrEnv string // $ADDR
		wantErr string
	}{
		{"address in use", []string{"-addr", busy.Addr().String()}, "", "address already in use"},
		{"$ADDR is the default address", nil, busy.Addr().String(), busy.Addr().String()},
		{"bad log format", []string{"-log-format", "xml"}, "", "-log-format"},
		{"zero body limit", []string{"-max-body", "0"}, "", "-max-body"},
		{"unknown flag", []string{"-nope"}, "", "not defined"},
		{"stray argument", []string{"serve"}, "", "unexpected arguments"},
		{"docs assets not a URL", []string{"-docs-assets", "static"}, "", "-docs-assets"},
		{"docs assets over ftp", []string{"-docs-assets", "ftp://assets.example/"}, "", "-docs-assets"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return map[string]string{"ADDR": tt.addrEnv}[k] }
			if err := run(context.Background(), tt.args, getenv, io.Discard); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("run(%q) with ADDR=%q = %v, want an error containing %q", tt.args, tt.addrEnv, err, tt.wantErr)
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
	srv := newHTTPServer(NewServer(store, quiet, testMaxBody, false, nil), quiet)
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
	t.Logf("%d writes acknowledged, %d stored", total, len(all(store)))
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
	srv := newTestServer(t, NewServer(NewStore(true), slog.New(slog.NewJSONHandler(&logs, nil)), testMaxBody, true, nil))
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
