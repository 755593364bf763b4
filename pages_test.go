package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// pagedStore returns a server on a store of the given ids, each holding
// {"name":null,"size":1}.
func pagedStore(t *testing.T, ids ...string) *httptest.Server {
	s := NewStore(false)
	for _, id := range ids {
		s.Put(id, []byte("null1"), nil)
	}
	return newTestServer(t, NewServer(s, quiet, testMaxBody, false, nil))
}

// walk follows GET /items's Links from path and returns the ids it sees, in
// the order seen.
func walk(t *testing.T, srv *httptest.Server, path string) (ids []string) {
	t.Helper()
	for path != "" {
		resp, body := do(t, srv, req{"GET", path, "", nil})
		dec := json.NewDecoder(strings.NewReader(body))
		dec.Token() // {
		for dec.More() {
			id, _ := dec.Token()
			var it json.RawMessage
			if err := dec.Decode(&it); err != nil {
				t.Fatalf("GET %s: %v in %s", path, err, body)
			}
			ids = append(ids, id.(string))
		}
		next := nextPage(resp)
		if next == path {
			t.Fatalf("GET %s links to itself", path)
		}
		path = next
	}
	return ids
}

// nextPage returns the path that resp's Link gives for the next page, or "".
func nextPage(resp *http.Response) string {
	next, _, _ := strings.Cut(strings.TrimPrefix(resp.Header.Get("Link"), "<"), `>; rel="next"`)
	return next
}

// TestPages checks GET /items's limit, after and Link on the ids a to e.
func TestPages(t *testing.T) {
	srv := pagedStore(t, "a", "b", "c", "d", "e")
	next := func(limit, after string) string {
		return "</items?limit=" + limit + "&after=" + after + `>; rel="next"`
	}
	tests := []struct {
		query, ids, link string
	}{
		{"", "a b c d e", ""},
		{"?limit=2", "a b", next("2", "b")},
		{"?limit=2&after=b", "c d", next("2", "d")},
		{"?limit=2&after=d", "e", ""},
		{"?limit=5", "a b c d e", ""},
		{"?after=bb", "c d e", ""},
		{"?after=0", "a b c d e", ""},
		{"?after=z", "", ""},
		{"?limit=1&limit=3&after=a", "b c d", next("3", "d")},
		{"?limit=+1&sort=desc", "a", next("1", "a")},
		{"?limit=10000&after=%C3%A9", "", ""},
	}
	for _, tt := range tests {
		for _, method := range []string{"GET", "HEAD"} {
			resp, body := do(t, srv, req{method, "/items" + tt.query, "", nil})
			if link := resp.Header.Get("Link"); resp.StatusCode != 200 || link != tt.link {
				t.Errorf("%s /items%s: %d with Link %q, want 200 with %q", method, tt.query, resp.StatusCode, link, tt.link)
			}
			if method == "GET" {
				if got := strings.Join(walk(t, srv, "/items"+tt.query)[:strings.Count(body, `":{"name"`)], " "); got != tt.ids {
					t.Errorf("GET /items%s: ids %q, want %q", tt.query, got, tt.ids)
				}
			}
		}
	}
	limit := func(typ string) []problem { return []problem{{typ, []any{"query", "limit"}}} }
	after := func(typ string) []problem { return []problem{{typ, []any{"query", "after"}}} }
	checkContractOn(t, func(*testing.T) *Store { return NewStore(true) }, []contractCase{
		{name: "limit not a number", req: req{"GET", "/items?limit=ten", "", nil}, status: 422, problems: limit("int_parsing")},
		{name: "limit a fraction", req: req{"GET", "/items?limit=1.5", "", nil}, status: 422, problems: limit("int_parsing")},
		{name: "limit empty", req: req{"GET", "/items?limit=", "", nil}, status: 422, problems: limit("int_parsing")},
		{name: "limit 0", req: req{"GET", "/items?limit=0", "", nil}, status: 422, problems: limit("greater_than_equal")},
		{name: "limit over the maximum", req: req{"GET", "/items?limit=10001", "", nil}, status: 422, problems: limit("less_than_equal")},
		{name: "a bad last of repeated limits", req: req{"GET", "/items?limit=5&limit=-1", "", nil}, status: 422, problems: limit("greater_than_equal")},
		{name: "after empty", req: req{"GET", "/items?after=", "", nil}, status: 422, problems: after("string_too_short")},
		{name: "after with a slash", req: req{"GET", "/items?after=a%2Fb", "", nil}, status: 422, problems: after("string_pattern_mismatch")},
		{name: "after not UTF-8", req: req{"GET", "/items?after=%FF", "", nil}, status: 422, problems: after("string_unicode")},
		{name: "after too long", req: req{"GET", "/items?after=" + strings.Repeat("i", maxIDLen+1), "", nil}, status: 422, problems: after("string_too_long")},
		{name: "both bad", req: req{"GET", "/items?limit=0&after=", "", nil}, status: 422,
			problems: []problem{{"greater_than_equal", []any{"query", "limit"}}, {"string_too_short", []any{"query", "after"}}}},
	})
}

// TestWalkYieldsSortedIDs follows the Links through random stores with
// random limits: the walk yields every id once, in byte order.
func TestWalkYieldsSortedIDs(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		ids := map[string]bool{}
		for range rng.IntN(3 * 1024) { // up to three of the order's runs
			ids[string([]rune{rune('a' + rng.IntN(3)), []rune("é&+ =%z")[rng.IntN(7)], rune('0' + rng.IntN(10))})+fmt.Sprint(rng.IntN(100))] = true
		}
		want := slices.Sorted(maps.Keys(ids))
		limit := 1 + rng.IntN(50)
		if got := walk(t, pagedStore(t, want...), fmt.Sprint("/items?limit=", limit)); !slices.Equal(got, want) {
			t.Fatalf("walk of %d ids in pages of %d: %d ids, or not in order", len(want), limit, len(got))
		}
	}
}

// TestWalkUnderChurn walks in small pages while writers create and delete
// other ids: every id there throughout is seen exactly once, in order.
func TestWalkUnderChurn(t *testing.T) {
	var stay []string
	for i := range 2000 {
		stay = append(stay, fmt.Sprintf("s%04d", i))
	}
	srv := pagedStore(t, stay...)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				id := fmt.Sprintf("s%04d-%d-%d", i%2000, w, i)
				send(srv, req{"PUT", "/items/" + id, `{}`, jsonCT})
				send(srv, req{"DELETE", "/items/" + id, "", nil})
			}
		})
	}
	seen := walk(t, srv, "/items?limit=7")
	close(done)
	wg.Wait()
	if !slices.IsSorted(seen) {
		t.Errorf("the walk's ids are not in order")
	}
	var kept []string
	for _, id := range seen {
		if !strings.Contains(id, "-") {
			kept = append(kept, id)
		}
	}
	if !slices.Equal(kept, stay) {
		t.Errorf("the walk saw %d of the %d ids there throughout, or saw one twice", len(kept), len(stay))
	}
}

// bigStore returns a store of n items, k0000000 on, each `"Fighters"6`.
func bigStore(n int) *Store {
	s := NewStore(false)
	for i := range n {
		s.Put(fmt.Sprintf("k%07d", i), []byte(`"Fighters"6`), nil)
	}
	return s
}

// BenchmarkListPage serves a page of 1,000 from a store of 1,000,000, after
// a random id.
func BenchmarkListPage(b *testing.B) {
	h := NewServer(bigStore(1000000), quiet, 1<<20, false, nil)
	w := &discardWriter{header: http.Header{}}
	r, _ := http.NewRequest("GET", "http://bench/items", nil)
	rng := rand.New(rand.NewPCG(5, 6))
	b.ReportAllocs()
	for b.Loop() {
		r.URL.RawQuery = fmt.Sprintf("limit=1000&after=k%07d", rng.IntN(998000))
		clear(w.header)
		if h.ServeHTTP(w, r); w.status != http.StatusOK || w.header.Get("Link") == "" {
			b.Fatalf("GET /items?%s: %d, Link %q", r.URL.RawQuery, w.status, w.header.Get("Link"))
		}
	}
}

// BenchmarkWalks reports, on a store of 1,000,000 items over HTTP, the
// seconds of a full walk in pages of 1,000 by one client; then, while 8
// clients walk, the 99th percentile and longest waits of a PUT, and of a
// GET /healthz as a control that touches no store; and the growth of the
// server's RSS. The server runs in this process, unless WALK_URL and
// WALK_PID give one already filled: bench/load.sh pages.
func BenchmarkWalks(b *testing.B) {
	url, pid := os.Getenv("WALK_URL"), os.Getenv("WALK_PID")
	if url == "" {
		srv := httptest.NewServer(NewServer(bigStore(1000000), quiet, 1<<20, false, nil))
		defer srv.Close()
		url, pid = srv.URL, "self"
	}
	get := func(path string) *http.Response {
		resp, err := http.Get(url + path)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	walkAll := func() {
		for next := "/items?limit=1000"; next != ""; {
			next = nextPage(get(next))
		}
	}
	for b.Loop() {
		start := time.Now()
		walkAll()
		b.ReportMetric(time.Since(start).Seconds(), "walk-s")
		rssBefore := rss(pid)
		done := make(chan struct{})
		var walkers sync.WaitGroup
		for range 8 {
			walkers.Go(walkAll)
		}
		go func() { walkers.Wait(); close(done) }()
		waits := map[string][]time.Duration{} // by probe: a PUT, and /healthz as a control
		maxRSS := rssBefore
	probing:
		for i := 0; ; i++ {
			select {
			case <-done:
				break probing
			default:
			}
			for name, probe := range map[string]func() (*http.Response, error){
				"put": func() (*http.Response, error) {
					r, _ := http.NewRequest("PUT", url+"/items/probe"+strconv.Itoa(i%1000), strings.NewReader(`{"name":"p","size":1}`))
					r.Header.Set("Content-Type", "application/json")
					return http.DefaultClient.Do(r)
				},
				"healthz": func() (*http.Response, error) { return http.Get(url + "/healthz") },
			} {
				start := time.Now()
				resp, err := probe()
				if err != nil || resp.StatusCode > 201 {
					b.Fatalf("%s: %v %v", name, resp, err)
				}
				resp.Body.Close()
				waits[name] = append(waits[name], time.Since(start))
			}
			maxRSS = max(maxRSS, rss(pid))
		}
		for name, w := range waits {
			slices.Sort(w)
			b.ReportMetric(float64(w[len(w)*99/100].Microseconds())/1000, name+"-p99-ms")
			b.ReportMetric(float64(w[len(w)-1].Microseconds())/1000, name+"-max-ms")
		}
		b.ReportMetric(100*float64(maxRSS-rssBefore)/float64(rssBefore), "rss-growth-%")
	}
}

// rss returns the resident set size of process pid ("self" for this one),
// in kB.
func rss(pid string) int {
	status, _ := os.ReadFile("/proc/" + pid + "/status")
	_, rest, _ := strings.Cut(string(status), "VmRSS:")
	n, _ := strconv.Atoi(strings.Fields(rest)[0])
	return n
}
