package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"itemsvc/internal/itemjson"
)

// Test servers use a small body limit, so that 413 is cheap to reach, and
// short read timeouts, so that being cut off takes a fraction of a second.
const (
	testMaxBody = 1 << 10
	testTimeout = 300 * time.Millisecond
)

// quiet is the logger of test servers that do not look at their logs.
var quiet = slog.New(slog.DiscardHandler)

// newTestServer serves h, or if h is nil the real handler on a seeded store,
// behind an httptest server with run's http.Server settings, its read
// timeouts cut to testTimeout. Its client does not follow redirects: the API
// never redirects, and a followed one would hide the answer under test.
func newTestServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	if h == nil {
		h = NewServer(NewStore(true), quiet, testMaxBody, false, nil)
	}
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = newHTTPServer(h, quiet)
	srv.Config.ReadHeaderTimeout, srv.Config.ReadTimeout = testTimeout, testTimeout
	srv.Start()
	t.Cleanup(srv.Close)
	srv.Client().CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return srv
}

// req is one request of a test case.
type req struct {
	method, path, body string
	header             map[string]string
}

// String describes rq for failure messages, cut short if long.
func (rq req) String() string {
	s := strings.TrimSpace(rq.method + " " + rq.path + " " + rq.body)
	if len(s) > 100 {
		s = s[:100] + "..."
	}
	return s
}

// do sends rq to srv and returns the answer with its body read, or fails
// the test.
func do(t *testing.T, srv *httptest.Server, rq req) (*http.Response, string) {
	t.Helper()
	resp, body, err := send(srv, rq)
	if err != nil {
		t.Fatalf("%s: %v", rq, err)
	}
	return resp, body
}

// send is do for goroutines other than the test's, which may not end it.
func send(srv *httptest.Server, rq req) (*http.Response, string, error) {
	r, err := http.NewRequest(rq.method, srv.URL+rq.path, strings.NewReader(rq.body))
	if err != nil {
		return nil, "", err
	}
	for k, v := range rq.header {
		r.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(r)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// jsonCT is the header of a PUT with a JSON body.
var jsonCT = map[string]string{"Content-Type": "application/json"}

// seeded is what GET /items holds at start, id by id.
var seeded = map[string]string{
	"foo": `{"name":"Fighters","size":6}`,
	"bar": `{"name":"Tenders","size":3}`,
}

// items returns what GET /items answers, id by id.
func items(t *testing.T, srv *httptest.Server) (m map[string]json.RawMessage) {
	t.Helper()
	if resp, body := do(t, srv, req{"GET", "/items", "", nil}); resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &m) != nil {
		t.Fatalf("GET /items: %d %s", resp.StatusCode, body)
	}
	return m
}

// checkStore fails unless the store holds what rq leaves behind when it gets
// status: a PUT that succeeded stores item under its id, a DELETE that
// succeeded removes it, and anything else changes nothing.
func checkStore(t *testing.T, srv *httptest.Server, rq req, status int, item string) {
	t.Helper()
	want := maps.Clone(seeded)
	id, _ := url.PathUnescape(strings.TrimPrefix(rq.path, "/items/"))
	switch {
	case rq.method == "PUT" && status < 300:
		want[id] = item
	case rq.method == "DELETE" && status < 300:
		delete(want, id)
	}
	if got := items(t, srv); !maps.EqualFunc(got, want, func(g json.RawMessage, w string) bool { return string(g) == w }) {
		t.Errorf("%s: the store holds %s, want %s", rq, got, want)
	}
}

// A contractCase is one request and the answer the contract gives it, on
// the seeded store.
type contractCase struct {
	name     string
	req      req
	status   int
	body     string    // the exact answer, unless problems is set
	problems []problem // the type and loc of each entry of a 422's detail
	allow    string    // the Allow header, sent with every 405
}

// problem is the part of a 422 entry that tests compare.
type problem struct {
	Type string
	Loc  []any
}

// detail is the JSON answer of a failure whose detail is the sentence s.
func detail(s string) string { return `{"detail":"` + s + `"}` }

// checkContract sends each case to a fresh server, on each kind of store, and
// checks the status, the body, the headers, and what the store holds
// afterwards.
func checkContract(t *testing.T, tests []contractCase) {
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) { checkContractOn(t, kind.open, tests) })
	}
}

// checkContractOn is checkContract on the seeded stores that open returns.
func checkContractOn(t *testing.T, open func(*testing.T) *Store, tests []contractCase) {
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newTestServer(t, NewServer(open(t), quiet, testMaxBody, false, nil))
			resp, body := do(t, srv, tt.req)
			if resp.StatusCode != tt.status {
				t.Fatalf("%s: status = %d, want %d (body %s)", tt.req, resp.StatusCode, tt.status, body)
			}
			if tt.problems != nil {
				var got struct{ Detail []problem }
				json.Unmarshal([]byte(body), &got)
				if g, w := fmt.Sprint(got.Detail), fmt.Sprint(tt.problems); g != w {
					t.Errorf("%s: problems = %s, want %s (body %s)", tt.req, g, w, body)
				}
			} else if body != tt.body {
				t.Errorf("%s: body = %s, want %s", tt.req, body, tt.body)
			}
			if got := resp.Header.Get("Allow"); got != tt.allow {
				t.Errorf("%s: Allow = %q, want %q", tt.req, got, tt.allow)
			}
			for k := range resp.Header {
				if strings.HasPrefix(k, "Access-Control-") {
					t.Errorf("%s: sent CORS header %s; no other origin may read answers", tt.req, k)
				}
			}
			switch {
			case tt.status >= 400:
				checkErrorBody(t, tt.req.String(), resp, body)
			case tt.status == http.StatusNotModified:
				if resp.Header.Get("ETag") != fooTag {
					t.Errorf("%s: 304 with ETag %q, want %s", tt.req, resp.Header.Get("ETag"), fooTag)
				}
			case tt.status != http.StatusNoContent:
				if ct, nosniff := resp.Header.Get("Content-Type"), resp.Header.Get("X-Content-Type-Options"); ct != "application/json" || nosniff != "nosniff" {
					t.Errorf("%s: Content-Type %q, X-Content-Type-Options %q; want application/json, nosniff", tt.req, ct, nosniff)
				}
			}
			checkStore(t, srv, tt.req, resp.StatusCode, body)
		})
	}
}

func TestSuccess(t *testing.T) {
	const null = `{"name":null,"size":null}`
	checkContract(t, []contractCase{
		{name: "update existing", req: req{"PUT", "/items/foo", `{"name":"Bars","size":9}`, jsonCT}, status: 200, body: `{"name":"Bars","size":9}`},
		{name: "create new", req: req{"PUT", "/items/baz", `{"name":"Baz","size":1}`, jsonCT}, status: 201, body: `{"name":"Baz","size":1}`},
		{name: "vendor +json media type with charset", req: req{"PUT", "/items/foo", `{}`, map[string]string{"Content-Type": "Application/Merge-Patch+JSON; Charset=UTF-8"}}, status: 200, body: null},
		{name: "missing content type", req: req{"PUT", "/items/foo", `{"size":1}`, nil}, status: 200, body: `{"name":null,"size":1}`},
		{name: "identity content encoding", req: req{"PUT", "/items/foo", `{}`, map[string]string{"Content-Type": "application/json", "Content-Encoding": "Identity"}}, status: 200, body: null},
		{name: "percent-encoded unicode id", req: req{"PUT", "/items/caf%C3%A9%20au%20lait", `{}`, jsonCT}, status: 201, body: null},
		{name: "id of maximal length", req: req{"PUT", "/items/" + strings.Repeat("i", maxIDLen), `{}`, jsonCT}, status: 201, body: null},
		{name: "get", req: req{"GET", "/items/foo", "", nil}, status: 200, body: `{"name":"Fighters","size":6}`},
		{name: "head", req: req{"HEAD", "/items/bar", "", nil}, status: 200},
		{name: "delete", req: req{"DELETE", "/items/foo", "", nil}, status: 204},
		{name: "list", req: req{"GET", "/items", "", nil}, status: 200, body: `{"bar":{"name":"Tenders","size":3},"foo":{"name":"Fighters","size":6}}`},
		{name: "health", req: req{"GET", "/healthz", "", nil}, status: 200, body: `{"status":"ok"}`},
		{name: "OpenAPI document", req: req{"GET", "/openapi.json", "", nil}, status: 200, body: string(openAPIDoc)},
	})
}

func TestErrors(t *testing.T) {
	mediaType := detail("Unsupported Media Type: send a JSON body with Content-Type: application/json")
	notFound, notAllowed := detail("Not Found"), detail("Method Not Allowed")
	checkContract(t, []contractCase{
		{name: "text/plain body", req: req{"PUT", "/items/foo", `{"name":"x"}`, map[string]string{"Content-Type": "text/plain"}}, status: 415, body: mediaType},
		{name: "form post", req: req{"PUT", "/items/foo", `name=x`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, status: 415, body: mediaType},
		{name: "multipart", req: req{"PUT", "/items/foo", "--b\r\n\r\nx\r\n--b--\r\n", map[string]string{"Content-Type": "multipart/form-data; boundary=b"}}, status: 415, body: mediaType},
		{name: "latin-1 charset", req: req{"PUT", "/items/foo", `{}`, map[string]string{"Content-Type": "application/json; charset=latin-1"}}, status: 415, body: mediaType},
		{name: "unparsable content type", req: req{"PUT", "/items/foo", `{}`, map[string]string{"Content-Type": "application/json; ;"}}, status: 415, body: mediaType},
		{name: "bare +json", req: req{"PUT", "/items/foo", `{}`, map[string]string{"Content-Type": "application/+json"}}, status: 415, body: mediaType},
		{name: "gzip", req: req{"PUT", "/items/foo", `{}`, map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip"}},
			status: 415, body: detail("Unsupported Content-Encoding: send the body uncompressed")},
		{name: "id too long", req: req{"PUT", "/items/" + strings.Repeat("i", maxIDLen+1), `{}`, jsonCT}, status: 422, problems: []problem{{"string_too_long", []any{"path", "id"}}}},
		{name: "id not UTF-8", req: req{"PUT", "/items/%FF", `{}`, jsonCT}, status: 422, problems: []problem{{"string_unicode", []any{"path", "id"}}}},
		{name: "encoded slash in id", req: req{"PUT", "/items/a%2Fb", `{}`, jsonCT}, status: 404, body: notFound},
		{name: "empty id", req: req{"PUT", "/items/", `{}`, jsonCT}, status: 404, body: notFound},
		{name: "two segments", req: req{"PUT", "/items/a/b", `{}`, jsonCT}, status: 404, body: notFound},
		{name: "dot segment", req: req{"PUT", "/items/.", `{}`, jsonCT}, status: 404, body: notFound},
		{name: "dot-dot segment", req: req{"GET", "/items/../items/foo", "", nil}, status: 404, body: notFound},
		{name: "doubled slash", req: req{"PUT", "/items//foo", `{}`, jsonCT}, status: 404, body: notFound},
		{name: "root doubled", req: req{"GET", "//", "", nil}, status: 404, body: notFound},
		{name: "trailing dot segment", req: req{"GET", "/items/foo/.", "", nil}, status: 404, body: notFound},
		{name: "unknown path", req: req{"GET", "/nope", "", nil}, status: 404, body: notFound},
		{name: "get missing", req: req{"GET", "/items/nope", "", nil}, status: 404, body: notFound},
		{name: "delete missing", req: req{"DELETE", "/items/nope", "", nil}, status: 404, body: notFound},
		{name: "POST an item", req: req{"POST", "/items/foo", `{}`, jsonCT}, status: 405, body: notAllowed, allow: "GET, HEAD, PUT, DELETE"},
		{name: "PATCH an item", req: req{"PATCH", "/items/foo", `{}`, jsonCT}, status: 405, body: notAllowed, allow: "GET, HEAD, PUT, DELETE"},
		{name: "POST the list", req: req{"POST", "/items", `{}`, jsonCT}, status: 405, body: notAllowed, allow: "GET, HEAD"},
		{name: "DELETE health", req: req{"DELETE", "/healthz", "", nil}, status: 405, body: notAllowed, allow: "GET, HEAD"},
		// What a hostile page in a browser can send without a CORS preflight:
		// a form or text/plain body, by POST or by PUT. None of it writes.
		{name: "cross-site form POST", req: req{"POST", "/items/foo", "name=x", crossSite("application/x-www-form-urlencoded")}, status: 405, body: notAllowed, allow: "GET, HEAD, PUT, DELETE"},
		{name: "cross-site text POST", req: req{"POST", "/items/foo", `{"name":"x"}`, crossSite("text/plain")}, status: 405, body: notAllowed, allow: "GET, HEAD, PUT, DELETE"},
		{name: "cross-site text PUT", req: req{"PUT", "/items/foo", `{"name":"x"}`, crossSite("text/plain;charset=UTF-8")}, status: 415, body: mediaType},
		{name: "cross-site multipart PUT", req: req{"PUT", "/items/new", "------b\r\n\r\nx\r\n------b--", crossSite("multipart/form-data; boundary=----b")}, status: 415, body: mediaType},
		{name: "CORS preflight", req: req{"OPTIONS", "/items/foo", "", map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "PUT"}},
			status: 405, body: notAllowed, allow: "GET, HEAD, PUT, DELETE"},
	})
}

// crossSite returns the headers of a cross-site request from a hostile page
// with a body of the given type.
func crossSite(contentType string) map[string]string {
	return map[string]string{"Origin": "https://evil.example", "Content-Type": contentType}
}

// maxErrorBody bounds an error answer; inputs are echoed only in short.
const maxErrorBody = 1024

// checkErrorBody checks what every error answer has in common: a JSON
// object of the documented shape, of bounded size, with no Go internals.
func checkErrorBody(t *testing.T, call string, resp *http.Response, body string) {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type = %q, want application/json", call, ct)
	}
	if len(body) > maxErrorBody {
		t.Errorf("%s: error body is %d bytes, want at most %d", call, len(body), maxErrorBody)
	}
	if strings.Contains(body, "json:") || strings.Contains(body, "goroutine") {
		t.Errorf("%s: error body leaks Go internals: %s", call, body)
	}
	var shape struct {
		Detail json.RawMessage `json:"detail"`
	}
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&shape); err != nil || shape.Detail == nil {
		t.Fatalf("%s: body %s is not {\"detail\": ...}: %v", call, body, err)
	}
	var entries []map[string]json.RawMessage
	if shape.Detail[0] == '[' && (json.Unmarshal(shape.Detail, &entries) != nil || len(entries) == 0) {
		t.Fatalf("%s: detail %s is not a list of problems", call, shape.Detail)
	}
	for _, e := range entries {
		if len(e) != 4 || e["type"] == nil || e["loc"] == nil || e["msg"] == nil || e["input"] == nil {
			t.Errorf("%s: problem %v does not have exactly type, loc, msg, input", call, e)
		}
	}
}

// TestLargeBodyWithinLimit stores a body far larger than the buffers the
// handler pools, just under the default limit.
func TestLargeBodyWithinLimit(t *testing.T) {
	srv := newTestServer(t, NewServer(NewStore(false), quiet, 1<<20, false, nil))
	name := strings.Repeat("é", (1<<20-40)/2)
	want := `{"name":"` + name + `","size":1}`
	if resp, body := do(t, srv, req{"PUT", "/items/big", want, jsonCT}); resp.StatusCode != http.StatusCreated || body != want {
		t.Fatalf("PUT of a %d-byte body: status %d, %d-byte answer; want 201 with the item", len(want), resp.StatusCode, len(body))
	}
	if _, body := do(t, srv, req{"GET", "/items/big", "", nil}); body != want {
		t.Errorf("GET /items/big: %d bytes, want the %d-byte item", len(body), len(want))
	}
}

// FuzzHandler sends arbitrary requests through the real handler and checks
// the invariants every answer keeps: no 5xx; every body is JSON of the
// documented shape for its status; a successful PUT reads back exactly as
// answered; a refusal changes nothing; and the decoder agrees with a plain
// encoding/json reading of the same rules.
func FuzzHandler(f *testing.F) {
	for _, s := range [][6]string{
		{"PUT", "foo", "application/json", "", "", `{"name":"x","size":1}`},
		{"PUT", "new", "", "", "*", `{"name":"x","size":6.0}`},
		{"PUT", "foo", "application/json", fooTag, "", `{"size":1e3,"name":null}`},
		{"PUT", "foo", "application/json", `W/` + fooTag, "", `{}`},
		{"PUT", "foo", "application/merge-patch+json; charset=utf-8", "", `"a", ` + fooTag, `null`},
		{"PUT", "foo", "text/plain", "", "", `{"name":"x"}`},
		{"PUT", "é/x", "application/json", "", "", `{"name":"\ud800\"","size":-0.0e5}`},
		{"PUT", "foo", "application/json", "", "", `{"name":"x"} x`},
		{"PUT", "foo", "application/json", "", "", `{"size":"6","name":1,"size":[{"}":"]"}]}`},
		{"PUT", "foo", "application/json", "", "", "{\"name\":\"\xff\"}"},
		{"PUT", "foo", "application/json", "", "", `{"size":123456789012345678901234567890e-20}`},
		{"GET", "foo", "", "", fooTag, ""},
		{"GET", "foo", "", `"x"`, "", ""},
		{"HEAD", "bar", "", "", "*", ""},
		{"HEAD", "bar", "", "", " ", ""},
		{"DELETE", "foo", "", fooTag, "", ""},
		{"DELETE", "nope", "", "*", "", ""},
		{"POST", "foo", "application/x-www-form-urlencoded", "", "", "name=x"},
		{"PUT", strings.Repeat("i", maxIDLen+1), "", "", "", ""},
		{"0", ".", "0", "0", "0", "0"},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4], s[5])
	}
	f.Fuzz(func(t *testing.T, method, id, contentType, ifMatch, ifNoneMatch, body string) {
		h := NewServer(NewStore(true), quiet, testMaxBody, false, nil)
		serve := func(method, target, body string, header map[string]string) *httptest.ResponseRecorder {
			r, err := http.NewRequest(method, target, strings.NewReader(body))
			if err != nil {
				return nil // not a method net/http would accept from the wire either
			}
			for k, v := range header {
				if v != "" {
					r.Header.Set(k, v)
				}
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return w
		}
		listing := func() string { return serve("GET", "/items", "", nil).Body.String() }
		before, target := listing(), "http://itemsvc/items/"+url.PathEscape(id)
		w := serve(method, target, body, map[string]string{"Content-Type": contentType, "If-Match": ifMatch, "If-None-Match": ifNoneMatch})
		if w == nil {
			return
		}
		resp, got, call := w.Result(), w.Body.String(), method+" /items/"+url.PathEscape(id)
		switch {
		case resp.StatusCode >= 500:
			t.Fatalf("%s: status %d: %s", call, resp.StatusCode, got)
		case resp.StatusCode >= 400:
			checkErrorBody(t, call, resp, got)
			if after := listing(); after != before {
				t.Fatalf("%s: refused with %d but the store changed: %s", call, resp.StatusCode, after)
			}
		case method == "HEAD":
			// net/http drops a HEAD answer's body; the recorder does not.
		case resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified:
			if got != "" {
				t.Fatalf("%s: status %d with body %q", call, resp.StatusCode, got)
			}
		default:
			checkItemJSON(t, call, got)
		}
		if method != "PUT" {
			return
		}
		ok := resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated
		if back := serve("GET", target, "", nil); ok && (back.Code != http.StatusOK || back.Body.String() != got) {
			t.Fatalf("%s answered %s, but GET answers %d %s", call, got, back.Code, back.Body)
		}
		// FuzzDecodeItem holds itemjson.Decode to encoding/json; the handler
		// must answer with what Decode reads, or refuse what it refuses.
		it, problems := itemjson.Decode(nil, []byte(body))
		want := ""
		if problems == nil {
			want = string(itemjson.AppendObject(nil, it))
		}
		switch {
		case ok && (problems != nil || got != want):
			t.Fatalf("%s %q: stored %s, but itemjson.Decode reads %s (problems %v)", call, body, got, want, problems)
		case resp.StatusCode == http.StatusUnprocessableEntity && strings.Contains(got, `"loc":["body"`) && problems == nil:
			t.Fatalf("%s %q: refused with %s, but itemjson.Decode reads it as %s", call, body, got, want)
		}
	})
}

// checkItemJSON fails unless body is exactly an item:
// {"name":<string or null>,"size":<integer or null>}.
func checkItemJSON(t *testing.T, call, body string) {
	t.Helper()
	var it struct {
		Name *string
		Size *int64
	}
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&it); err != nil || !strings.HasPrefix(body, `{"name":`) || !strings.Contains(body, `,"size":`) {
		t.Fatalf("%s: body %s is not an item: %v", call, body, err)
	}
}

// discardWriter is a ResponseWriter that keeps nothing but the status, so
// that the benchmarks measure the handler rather than a recorder.
type discardWriter struct {
	header http.Header
	status int
}

func (d *discardWriter) Header() http.Header         { return d.header }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(status int)      { d.status = status }

// benchServe times method on path with body and the extra header h, through
// the real handler on a seeded store; paths(i) names the i'th request's path.
// Every answer must be want.
func benchServe(b *testing.B, method string, paths func(i int) string, body string, h map[string]string, want int) {
	handler := NewServer(NewStore(true), quiet, 1<<20, false, nil)
	w := &discardWriter{header: http.Header{}}
	rd := strings.NewReader(body)
	r, _ := http.NewRequest(method, "http://bench/", io.NopCloser(rd))
	r.ContentLength = int64(len(body))
	r.Header.Set("Content-Type", "application/json")
	for k, v := range h {
		r.Header.Set(k, v)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.URL.Path = paths(i)
		rd.Reset(body)
		clear(w.header)
		handler.ServeHTTP(w, r)
		if w.status != want {
			b.Fatalf("%s %s: status = %d, want %d", method, r.URL.Path, w.status, want)
		}
	}
}

const benchBody = `{"name":"Fighters","size":6}`

// foo is the path of every request in most benchmarks.
func foo(int) string { return "/items/foo" }

// BenchmarkPutUpdate replaces one existing item, the bench harness's update
// workload. Its one allocation is the ServeMux's wildcard match (net/http's,
// there in any handler with a {id} pattern): the scanner decodes without
// allocating, and the store overwrites the item in place.
func BenchmarkPutUpdate(b *testing.B) {
	benchServe(b, "PUT", foo, benchBody, nil, http.StatusOK)
}

// BenchmarkPutCreate creates a new item each time. Its allocations are
// those of an update, plus the store's index, slots and arena growing now
// and then.
func BenchmarkPutCreate(b *testing.B) {
	// Paths are made up front, so that only the handler is timed; past them
	// the PUTs would be updates, so the count is kept well above b.N.
	paths := make([]string, 4<<20)
	for i := range paths {
		paths[i] = "/items/c" + strconv.Itoa(i)
	}
	benchServe(b, "PUT", func(i int) string { return paths[i%len(paths)] }, benchBody, nil, http.StatusCreated)
}

// BenchmarkPutIfMatch is a conditional update, which hashes the current item
// inside the store's critical section. Its other allocations are that tag
// and the precondition that holds the request's conditions.
func BenchmarkPutIfMatch(b *testing.B) {
	benchServe(b, "PUT", foo, benchBody, map[string]string{"If-Match": fooTag}, http.StatusOK)
}

// BenchmarkGet reads one item with its entity tag. Its allocations: the
// mux's match, the item's copy, the tag and the header slice that holds it,
// and the answer.
func BenchmarkGet(b *testing.B) {
	benchServe(b, "GET", foo, "", nil, http.StatusOK)
}

// BenchmarkRejected is a PUT refused for its body: the validation path,
// which allocates freely (the problem list and its JSON) since only bad
// requests take it.
func BenchmarkRejected(b *testing.B) {
	benchServe(b, "PUT", foo, `{"name":"Fighters","size":"six"}`, nil, http.StatusUnprocessableEntity)
}

// TestDecoding checks what bodies mean through the real handler: each PUT
// stores and answers the item decoded from its body.
func TestDecoding(t *testing.T) {
	const null = `{"name":null,"size":null}`
	checkContract(t, []contractCase{
		{name: "partial body leaves size null", req: req{"PUT", "/items/foo", `{"name":"x"}`, jsonCT}, status: 200, body: `{"name":"x","size":null}`},
		{name: "empty body means both null", req: req{"PUT", "/items/foo", "", nil}, status: 200, body: null},
		{name: "JSON null means both null", req: req{"PUT", "/items/new", `null`, jsonCT}, status: 201, body: null},
		{name: "explicit nulls", req: req{"PUT", "/items/foo", `{"name":null,"size":null}`, jsonCT}, status: 200, body: null},
		{name: "empty object", req: req{"PUT", "/items/foo", `{}`, jsonCT}, status: 200, body: null},
		{name: "integral float", req: req{"PUT", "/items/foo", `{"size":6.0}`, jsonCT}, status: 200, body: `{"name":null,"size":6}`},
		{name: "exponent", req: req{"PUT", "/items/foo", `{"size":1e3}`, jsonCT}, status: 200, body: `{"name":null,"size":1000}`},
		{name: "int64 extremes", req: req{"PUT", "/items/foo", `{"size":-9223372036854775808}`, jsonCT}, status: 200, body: `{"name":null,"size":-9223372036854775808}`},
		{name: "unknown and miscased keys ignored", req: req{"PUT", "/items/foo", `{"Name":"no","SIZE":1,"extra":[1,{"a":"}"}],"name":"yes"}`, jsonCT},
			status: 200, body: `{"name":"yes","size":null}`},
		{name: "last repeated key wins", req: req{"PUT", "/items/foo", `{"size":"bad","size":2}`, jsonCT}, status: 200, body: `{"name":null,"size":2}`},
		{name: "escapes are canonicalised", req: req{"PUT", "/items/foo", `{"n\u0061me":"a\u0062\"\/\n\u00e9"}`, jsonCT}, status: 200, body: `{"name":"ab\"/\né","size":null}`},
		{name: "whitespace everywhere", req: req{"PUT", "/items/foo", " \n{ \"name\" : \"x\" ,\t\"size\" : 2 } \r\n", jsonCT}, status: 200, body: `{"name":"x","size":2}`},
	})
}

// TestDecodingErrors checks the 422s through the real handler: pydantic's
// type and loc for every problem a body has.
func TestDecodingErrors(t *testing.T) {
	sizeIs := func(typ string) []problem { return []problem{{typ, []any{"body", "size"}}} }
	invalidAt := func(offset float64) []problem { return []problem{{"json_invalid", []any{"body", offset}}} }
	notObject := []problem{{"model_attributes_type", []any{"body"}}}
	nameNotString := []problem{{"string_type", []any{"body", "name"}}}
	checkContract(t, []contractCase{
		{name: "name not a string", req: req{"PUT", "/items/foo", `{"name":1}`, jsonCT}, status: 422, problems: nameNotString},
		{name: "name an object", req: req{"PUT", "/items/foo", `{"name":{"a":1}}`, jsonCT}, status: 422, problems: nameNotString},
		{name: "size a string", req: req{"PUT", "/items/foo", `{"size":"6"}`, jsonCT}, status: 422, problems: sizeIs("int_type")},
		{name: "size a boolean", req: req{"PUT", "/items/foo", `{"size":true}`, jsonCT}, status: 422, problems: sizeIs("int_type")},
		{name: "size an array", req: req{"PUT", "/items/foo", `{"size":[6]}`, jsonCT}, status: 422, problems: sizeIs("int_type")},
		{name: "size a fraction", req: req{"PUT", "/items/foo", `{"size":6.5}`, jsonCT}, status: 422, problems: sizeIs("int_from_float")},
		{name: "size above int64", req: req{"PUT", "/items/foo", `{"size":9223372036854775808}`, jsonCT}, status: 422, problems: sizeIs("less_than_equal")},
		{name: "size below int64", req: req{"PUT", "/items/foo", `{"size":-1e19}`, jsonCT}, status: 422, problems: sizeIs("greater_than_equal")},
		{name: "every bad field reported", req: req{"PUT", "/items/foo", `{"name":false,"size":"x"}`, jsonCT},
			status: 422, problems: append(nameNotString, sizeIs("int_type")...)},
		{name: "only the last repeated key validated", req: req{"PUT", "/items/foo", `{"size":1,"size":"x"}`, jsonCT}, status: 422, problems: sizeIs("int_type")},
		{name: "malformed JSON", req: req{"PUT", "/items/foo", `{"name":}`, jsonCT}, status: 422, problems: invalidAt(8)},
		{name: "truncated JSON", req: req{"PUT", "/items/foo", `{"name":"x"`, jsonCT}, status: 422, problems: invalidAt(11)},
		{name: "trailing data", req: req{"PUT", "/items/foo", `{"name":"x"} x`, jsonCT}, status: 422, problems: invalidAt(13)},
		{name: "invalid UTF-8", req: req{"PUT", "/items/foo", "{\"name\":\"\xff\"}", jsonCT}, status: 422, problems: invalidAt(9)},
		{name: "body an array", req: req{"PUT", "/items/foo", `[{"name":"x"}]`, jsonCT}, status: 422, problems: notObject},
		{name: "body a string", req: req{"PUT", "/items/foo", `"x"`, jsonCT}, status: 422, problems: notObject},
		{name: "body a number", req: req{"PUT", "/items/foo", `6`, jsonCT}, status: 422, problems: notObject},
	})
}
