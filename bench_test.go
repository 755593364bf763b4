package main

import (
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// discardWriter is a ResponseWriter that keeps nothing but the status, so
// that the benchmarks measure the handler rather than a recorder.
type discardWriter struct {
	header http.Header
	status int
}

func (d *discardWriter) Header() http.Header         { return d.header }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(status int)      { d.status = status }

// benchRequest returns a reusable request whose body is body each time it
// is reset.
func benchRequest(method, path, body string) (*http.Request, func()) {
	rd := strings.NewReader(body)
	r, _ := http.NewRequest(method, "http://bench"+path, io.NopCloser(rd))
	r.ContentLength = int64(len(body))
	r.Header.Set("Content-Type", "application/json")
	return r, func() { rd.Reset(body) }
}

// serveBench runs one request through h and checks its status.
func serveBench(b *testing.B, h http.Handler, w *discardWriter, r *http.Request, want int) {
	clear(w.header)
	w.status = 0
	h.ServeHTTP(w, r)
	if w.status != want {
		b.Fatalf("%s %s: status = %d, want %d", r.Method, r.URL.Path, w.status, want)
	}
}

func newBenchHandler() http.Handler {
	return NewServer(NewStore(true), slog.New(slog.DiscardHandler), 1<<20, false)
}

const benchBody = `{"name":"Fighters","size":6}`

// BenchmarkPutUpdate replaces one existing item, the bench harness's update
// workload. Its one allocation is the ServeMux's wildcard match (net/http's,
// there in any handler with a {id} pattern): the store overwrites the item
// in place.
func BenchmarkPutUpdate(b *testing.B) {
	benchPutFoo(b, benchBody, nil, http.StatusOK)
}

// benchPutFoo times PUT /items/foo with body and the extra header h, which
// must answer want every time.
func benchPutFoo(b *testing.B, body string, h map[string]string, want int) {
	handler := newBenchHandler()
	w := &discardWriter{header: http.Header{}}
	r, reset := benchRequest("PUT", "/items/foo", body)
	for k, v := range h {
		r.Header.Set(k, v)
	}
	b.ReportAllocs()
	for b.Loop() {
		reset()
		serveBench(b, handler, w, r, want)
	}
}

// BenchmarkPutCreate creates a new item each time. Its allocations are
// those of an update, plus the store's index, slots and arena growing now
// and then.
func BenchmarkPutCreate(b *testing.B) {
	h := newBenchHandler()
	w := &discardWriter{header: http.Header{}}
	r, reset := benchRequest("PUT", "/items/x", benchBody)
	// Ids are made up front, so that only the handler is timed; past them
	// the PUTs would be updates, so the count is kept well above b.N.
	const ids = 4 << 20
	paths := make([]string, ids)
	for i := range paths {
		paths[i] = "/items/c" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.URL.Path = paths[i%ids]
		i++
		reset()
		serveBench(b, h, w, r, http.StatusCreated)
	}
}

// BenchmarkPutIfMatch is a conditional update, which hashes the current item
// inside the store's critical section. Its second allocation is that tag.
func BenchmarkPutIfMatch(b *testing.B) {
	benchPutFoo(b, benchBody, map[string]string{"If-Match": entityTag([]byte(seedItems["foo"]))}, http.StatusOK)
}

// BenchmarkGet reads one item with its entity tag. Its allocations: the
// mux's match, the tag and the header slice that holds it.
func BenchmarkGet(b *testing.B) {
	h := newBenchHandler()
	w := &discardWriter{header: http.Header{}}
	r, _ := http.NewRequest("GET", "http://bench/items/foo", nil)
	b.ReportAllocs()
	for b.Loop() {
		serveBench(b, h, w, r, http.StatusOK)
	}
}

// BenchmarkRejected is a PUT refused for its body: the validation path,
// which allocates freely (the problem list and its JSON) since only bad
// requests take it.
func BenchmarkRejected(b *testing.B) {
	benchPutFoo(b, `{"name":"Fighters","size":"six"}`, nil, http.StatusUnprocessableEntity)
}
