package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testTimeout is the shortened ReadHeaderTimeout and ReadTimeout of the
// servers in these tests, so that being cut off takes a fraction of a second.
const testTimeout = 300 * time.Millisecond

// startServer serves the real handler on 127.0.0.1:0 with newHTTPServer's
// settings, read timeouts shortened to testTimeout, and returns its address.
func startServer(t *testing.T, store *Store) string {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	srv := newHTTPServer(NewServer(store, logger, testMaxBody, false), logger)
	srv.ReadHeaderTimeout, srv.ReadTimeout = testTimeout, testTimeout
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// dial opens a raw connection to addr that gives up reading after 10 s, so
// that a server that fails to cut a client off fails the test instead of
// hanging it.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// cutOffWithin reads c until the server closes it and fails unless that
// happens within limit of start. It returns what the server sent.
func cutOffWithin(t *testing.T, c net.Conn, start time.Time, limit time.Duration) string {
	t.Helper()
	got, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the server did not close the connection within 10 s (got %q)", got)
	}
	if elapsed := time.Since(start); elapsed > limit {
		t.Errorf("the server closed the connection after %v, want within %v", elapsed, limit)
	}
	return string(got)
}

func TestSlowHeadersAreCutOff(t *testing.T) {
	store := NewStore(true)
	c := dial(t, startServer(t, store))
	start := time.Now()
	// One byte at a time, never finishing the headers: slowloris.
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for _, b := range []byte("PUT /items/foo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Slow: " + strings.Repeat("a", 1000)) {
			<-tick.C
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
		}
	}()
	// net/http closes the connection, saying 400 on the way out.
	if got := cutOffWithin(t, c, start, testTimeout+2*time.Second); got != "" && !strings.HasPrefix(got, "HTTP/1.1 400 ") {
		t.Errorf("a client that never finished its headers got %q, want a 400 or nothing", got)
	}
	if got := contents(store); !maps.Equal(got, seeded) {
		t.Errorf("store = %v, want it unchanged", got)
	}
}

func TestStalledBodyIsCutOff(t *testing.T) {
	store := NewStore(true)
	c := dial(t, startServer(t, store))
	start := time.Now()
	fmt.Fprintf(c, "PUT /items/foo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":")
	got := cutOffWithin(t, c, start, testTimeout+2*time.Second)
	if got != "" && !strings.HasPrefix(got, "HTTP/1.1 400 ") {
		t.Errorf("a stalled body got %q, want a 400 or no answer", got)
	}
	if got := contents(store); !maps.Equal(got, seeded) {
		t.Errorf("store = %v, want it unchanged", got)
	}
}

func TestOversizedRequests(t *testing.T) {
	tests := []struct {
		name, request string
		wantStatus    int
	}{
		{"declared length over the limit, no body sent",
			"PUT /items/foo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n", 413},
		{"the same, waiting for 100 Continue",
			"PUT /items/foo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\nExpect: 100-continue\r\n\r\n", 413},
		{"chunked body over the limit",
			"PUT /items/foo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
				strings.Repeat(fmt.Sprintf("%x\r\n%s\r\n", 512, strings.Repeat(" ", 512)), 3) + "0\r\n\r\n", 413},
		{"headers over the limit",
			"GET /items/foo HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", maxHeaderBytes+8192) + "\r\n\r\n", 431},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := NewStore(true)
			c := dial(t, startServer(t, store))
			if _, err := io.WriteString(c, tt.request); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d (a 100 Continue must not come first)", resp.StatusCode, tt.wantStatus)
			}
			if got := contents(store); !maps.Equal(got, seeded) {
				t.Errorf("store = %v, want it unchanged", got)
			}
		})
	}
}

// TestIdleConnectionsDoNotBlockService holds hundreds of idle connections,
// some after a request and some before any, and checks that a new client is
// still served.
func TestIdleConnectionsDoNotBlockService(t *testing.T) {
	addr := startServer(t, NewStore(true))
	const idle = 200
	for i := range 2 * idle {
		c := dial(t, addr)
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
	resp, err := client.Get("http://" + addr + "/items/foo")
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
	logger := slog.New(slog.DiscardHandler)
	srv := newHTTPServer(NewServer(store, logger, testMaxBody, false), logger)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, srv, ln, logger) }()

	const workers, cancelAfter = 16, 500
	transport := &http.Transport{MaxIdleConnsPerHost: workers}
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	var answered atomic.Int64
	halfway := make(chan struct{})
	var once sync.Once
	acked := make([][]string, workers)
	bad := make(chan string, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				r, _ := http.NewRequest("PUT", "http://"+ln.Addr().String()+"/items/"+id, strings.NewReader(`{"size":1}`))
				r.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(r)
				if err != nil {
					if ctx.Err() == nil {
						bad <- fmt.Sprintf("PUT %s before shutdown: %v", id, err)
					}
					return // refused or closed: the server is going away
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					bad <- fmt.Sprintf("PUT %s: status %d, want 201", id, resp.StatusCode)
					return
				}
				acked[w] = append(acked[w], id)
				if answered.Add(1) == cancelAfter {
					once.Do(func() { close(halfway) })
				}
			}
		}()
	}
	<-halfway
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve returned %v, want nil", err)
		}
	case <-time.After(shutdownTimeout + 5*time.Second):
		t.Fatal("serve did not return within the shutdown bound")
	}
	wg.Wait()
	close(bad)
	for msg := range bad {
		t.Error(msg)
	}
	var total int
	for _, ids := range acked {
		for _, id := range ids {
			if _, ok := store.Get(nil, id); !ok {
				t.Errorf("acknowledged write %s is not in the store", id)
			}
		}
		total += len(ids)
	}
	t.Logf("%d writes acknowledged, %d stored", total, len(store.All()))
	transport.CloseIdleConnections()
	waitForGoroutines(t, baseline)
}

// waitForGoroutines fails unless the number of goroutines falls back to at
// most baseline within a few seconds; goroutines of closed connections exit
// asynchronously, so it looks again while they do.
func waitForGoroutines(t *testing.T, baseline int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, want at most %d as before:\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNoLeaksAfterBurst sends a burst of mixed requests and checks that
// goroutines return to their baseline and the heap to near its start.
func TestNoLeaksAfterBurst(t *testing.T) {
	store := NewStore(true)
	srv, baseline := startServerCounted(t, store)
	heapBefore := liveHeap()

	const workers, perWorker = 8, 1000
	transport := &http.Transport{MaxIdleConnsPerHost: workers}
	client := &http.Client{Transport: transport}
	bodies := []string{`{"name":"x","size":1}`, `{"size":"bad"}`, `{`, strings.Repeat("x", 2*testMaxBody)}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				r, _ := http.NewRequest("PUT", srv+"/items/foo", strings.NewReader(bodies[(w+i)%len(bodies)]))
				r.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(r)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
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

// startServerCounted is startServer that also returns the number of
// goroutines once the server runs, as a baseline for leak checks.
func startServerCounted(t *testing.T, store *Store) (url string, baseline int) {
	addr := startServer(t, store)
	return "http://" + addr, runtime.NumGoroutine()
}

// liveHeap returns the bytes of live heap after a full collection.
func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC() // the second one also empties sync.Pools
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestCrossSiteWritesRefused checks what a hostile page in a browser can do
// without a CORS preflight: send a form or text/plain body, by POST or by
// PUT. None of it writes, and nothing grants CORS access.
func TestCrossSiteWritesRefused(t *testing.T) {
	srv, store := newTestServer(t)
	origin := map[string]string{"Origin": "https://evil.example"}
	for _, rq := range []req{
		{"POST", "/items/foo", "name=x", merge(origin, map[string]string{"Content-Type": "application/x-www-form-urlencoded"})},
		{"POST", "/items/foo", `{"name":"x"}`, merge(origin, map[string]string{"Content-Type": "text/plain"})},
		{"PUT", "/items/foo", `{"name":"x"}`, merge(origin, map[string]string{"Content-Type": "text/plain;charset=UTF-8"})},
		{"PUT", "/items/new", "------b\r\n\r\nx\r\n------b--", merge(origin, map[string]string{"Content-Type": "multipart/form-data; boundary=----b"})},
		{"OPTIONS", "/items/foo", "", merge(origin, map[string]string{"Access-Control-Request-Method": "PUT"})},
	} {
		resp, body := do(t, srv, rq)
		if resp.StatusCode < 400 {
			t.Errorf("%s %s as %s: status %d, want a refusal", rq.method, rq.path, rq.header["Content-Type"], resp.StatusCode)
		}
		for k := range resp.Header {
			if strings.HasPrefix(k, "Access-Control-") {
				t.Errorf("%s %s: sent CORS header %s", rq.method, rq.path, k)
			}
		}
		checkErrorBody(t, rq.method+" "+rq.path, resp, body)
	}
	if got := contents(store); !maps.Equal(got, seeded) {
		t.Errorf("store = %v, want it unchanged", got)
	}
}

// merge returns the union of two header maps.
func merge(a, b map[string]string) map[string]string {
	m := maps.Clone(a)
	maps.Copy(m, b)
	return m
}
