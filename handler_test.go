package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
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
		h = NewServer(NewStore(true), quiet, testMaxBody, false)
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
	for k, v := range rq.header {
		if k != "Content-Type" {
			s += " [" + k + ": " + v + "]"
		}
	}
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
func items(t *testing.T, srv *httptest.Server) map[string]string {
	t.Helper()
	resp, body := do(t, srv, req{"GET", "/items", "", nil})
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &raw); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /items: %d %s: %v", resp.StatusCode, body, err)
	}
	m := make(map[string]string)
	for id, it := range raw {
		m[id] = string(it)
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
	if got := items(t, srv); !maps.Equal(got, want) {
		t.Errorf("%s: the store holds %v, want %v", rq, got, want)
	}
}

func TestSuccess(t *testing.T) {
	const null = `{"name":null,"size":null}`
	tests := []struct {
		name       string
		req        req
		wantStatus int
		wantBody   string // exact bytes
	}{
		{"update existing", req{"PUT", "/items/foo", `{"name":"Bars","size":9}`, jsonCT}, 200, `{"name":"Bars","size":9}`},
		{"create new", req{"PUT", "/items/baz", `{"name":"Baz","size":1}`, jsonCT}, 201, `{"name":"Baz","size":1}`},
		{"partial body leaves size null", req{"PUT", "/items/foo", `{"name":"x"}`, jsonCT}, 200, `{"name":"x","size":null}`},
		{"empty body means both null", req{"PUT", "/items/foo", "", nil}, 200, null},
		{"JSON null means both null", req{"PUT", "/items/new", `null`, jsonCT}, 201, null},
		{"explicit nulls", req{"PUT", "/items/foo", `{"name":null,"size":null}`, jsonCT}, 200, null},
		{"empty object", req{"PUT", "/items/foo", `{}`, jsonCT}, 200, null},
		{"integral float", req{"PUT", "/items/foo", `{"size":6.0}`, jsonCT}, 200, `{"name":null,"size":6}`},
		{"exponent", req{"PUT", "/items/foo", `{"size":1e3}`, jsonCT}, 200, `{"name":null,"size":1000}`},
		{"int64 extremes", req{"PUT", "/items/foo", `{"size":-9223372036854775808}`, jsonCT}, 200, `{"name":null,"size":-9223372036854775808}`},
		{"unknown and miscased keys ignored", req{"PUT", "/items/foo", `{"Name":"no","SIZE":1,"extra":[1,{"a":"}"}],"name":"yes"}`, jsonCT},
			200, `{"name":"yes","size":null}`},
		{"last repeated key wins", req{"PUT", "/items/foo", `{"size":"bad","size":2}`, jsonCT}, 200, `{"name":null,"size":2}`},
		{"escapes are canonicalised", req{"PUT", "/items/foo", `{"n\u0061me":"a\u0062\"\/\n\u00e9"}`, jsonCT}, 200, `{"name":"ab\"/\né","size":null}`},
		{"whitespace everywhere", req{"PUT", "/items/foo", " \n{ \"name\" : \"x\" ,\t\"size\" : 2 } \r\n", jsonCT}, 200, `{"name":"x","size":2}`},
		{"vendor +json media type with charset", req{"PUT", "/items/foo", `{}`, map[string]string{"Content-Type": "Application/Merge-Patch+JSON; Charset=UTF-8"}}, 200, null},
		{"missing content type", req{"PUT", "/items/foo", `{"size":1}`, nil}, 200, `{"name":null,"size":1}`},
		{"identity content encoding", req{"PUT", "/items/foo", `{}`, map[string]string{"Content-Type": "application/json", "Content-Encoding": "Identity"}}, 200, null},
		{"percent-encoded unicode id", req{"PUT", "/items/caf%C3%A9%20au%20lait", `{}`, jsonCT}, 201, null},
		{"id of maximal length", req{"PUT", "/items/" + strings.Repeat("i", maxIDLen), `{}`, jsonCT}, 201, null},
		{"get", req{"GET", "/items/foo", "", nil}, 200, `{"name":"Fighters","size":6}`},
		{"head", req{"HEAD", "/items/bar", "", nil}, 200, ""},
		{"delete", req{"DELETE", "/items/foo", "", nil}, 204, ""},
		{"list", req{"GET", "/items", "", nil}, 200, `{"bar":{"name":"Tenders","size":3},"foo":{"name":"Fighters","size":6}}`},
		{"health", req{"GET", "/healthz", "", nil}, 200, `{"status":"ok"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newTestServer(t, nil)
			resp, body := do(t, srv, tt.req)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("%s: status = %d, want %d (body %s)", tt.req, resp.StatusCode, tt.wantStatus, body)
			}
			if body != tt.wantBody {
				t.Errorf("%s: body = %s, want %s", tt.req, body, tt.wantBody)
			}
			if tt.wantStatus != http.StatusNoContent {
				checkJSONHeaders(t, tt.req, resp)
			}
			checkStore(t, srv, tt.req, resp.StatusCode, body)
		})
	}
}

// checkJSONHeaders checks the headers every JSON answer carries.
func checkJSONHeaders(t *testing.T, rq req, resp *http.Response) {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type = %q, want application/json", rq, ct)
	}
	if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options = %q, want nosniff", rq, got)
	}
}

// problem is the part of a 422 entry that tests compare.
type problem struct {
	Type string
	Loc  []any
}

func TestErrors(t *testing.T) {
	const mediaType = "Unsupported Media Type: send a JSON body with Content-Type: application/json"
	tests := []struct {
		name         string
		req          req
		wantStatus   int
		wantDetail   string    // for answers whose detail is a sentence
		wantProblems []problem // for 422s
		wantAllow    string
	}{
		{"text/plain body", req{"PUT", "/items/foo", `{"name":"x"}`, map[string]string{"Content-Type": "text/plain"}}, 415, mediaType, nil, ""},
		{"form post", req{"PUT", "/items/foo", `name=x`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, 415, mediaType, nil, ""},
		{"multipart", req{"PUT", "/items/foo", "--b\r\n\r\nx\r\n--b--\r\n", map[string]string{"Content-Type": "multipart/form-data; boundary=b"}}, 415, mediaType, nil, ""},
		{"latin-1 charset", req{"PUT", "/items/foo", `{}`, map[string]string{"Content-Type": "application/json; charset=latin-1"}}, 415, mediaType, nil, ""},
		{"unparsable content type", req{"PUT", "/items/foo", `{}`, map[string]string{"Content-Type": "application/json; ;"}}, 415, mediaType, nil, ""},
		{"bare +json", req{"PUT", "/items/foo", `{}`, map[string]string{"Content-Type": "application/+json"}}, 415, mediaType, nil, ""},
		{"gzip", req{"PUT", "/items/foo", `{}`, map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip"}},
			415, "Unsupported Content-Encoding: send the body uncompressed", nil, ""},
		{"name not a string", req{"PUT", "/items/foo", `{"name":1}`, jsonCT}, 422, "", []problem{{"string_type", []any{"body", "name"}}}, ""},
		{"name an object", req{"PUT", "/items/foo", `{"name":{"a":1}}`, jsonCT}, 422, "", []problem{{"string_type", []any{"body", "name"}}}, ""},
		{"size a string", req{"PUT", "/items/foo", `{"size":"6"}`, jsonCT}, 422, "", []problem{{"int_type", []any{"body", "size"}}}, ""},
		{"size a boolean", req{"PUT", "/items/foo", `{"size":true}`, jsonCT}, 422, "", []problem{{"int_type", []any{"body", "size"}}}, ""},
		{"size an array", req{"PUT", "/items/foo", `{"size":[6]}`, jsonCT}, 422, "", []problem{{"int_type", []any{"body", "size"}}}, ""},
		{"size a fraction", req{"PUT", "/items/foo", `{"size":6.5}`, jsonCT}, 422, "", []problem{{"int_from_float", []any{"body", "size"}}}, ""},
		{"size above int64", req{"PUT", "/items/foo", `{"size":9223372036854775808}`, jsonCT}, 422, "", []problem{{"less_than_equal", []any{"body", "size"}}}, ""},
		{"size below int64", req{"PUT", "/items/foo", `{"size":-1e19}`, jsonCT}, 422, "", []problem{{"greater_than_equal", []any{"body", "size"}}}, ""},
		{"every bad field reported", req{"PUT", "/items/foo", `{"name":false,"size":"x"}`, jsonCT},
			422, "", []problem{{"string_type", []any{"body", "name"}}, {"int_type", []any{"body", "size"}}}, ""},
		{"only the last repeated key validated", req{"PUT", "/items/foo", `{"size":1,"size":"x"}`, jsonCT}, 422, "", []problem{{"int_type", []any{"body", "size"}}}, ""},
		{"malformed JSON", req{"PUT", "/items/foo", `{"name":}`, jsonCT}, 422, "", []problem{{"json_invalid", []any{"body", 8.0}}}, ""},
		{"truncated JSON", req{"PUT", "/items/foo", `{"name":"x"`, jsonCT}, 422, "", []problem{{"json_invalid", []any{"body", 11.0}}}, ""},
		{"trailing data", req{"PUT", "/items/foo", `{"name":"x"} x`, jsonCT}, 422, "", []problem{{"json_invalid", []any{"body", 13.0}}}, ""},
		{"invalid UTF-8", req{"PUT", "/items/foo", "{\"name\":\"\xff\"}", jsonCT}, 422, "", []problem{{"json_invalid", []any{"body", 9.0}}}, ""},
		{"body an array", req{"PUT", "/items/foo", `[{"name":"x"}]`, jsonCT}, 422, "", []problem{{"model_attributes_type", []any{"body"}}}, ""},
		{"body a string", req{"PUT", "/items/foo", `"x"`, jsonCT}, 422, "", []problem{{"model_attributes_type", []any{"body"}}}, ""},
		{"body a number", req{"PUT", "/items/foo", `6`, jsonCT}, 422, "", []problem{{"model_attributes_type", []any{"body"}}}, ""},
		{"id too long", req{"PUT", "/items/" + strings.Repeat("i", maxIDLen+1), `{}`, jsonCT}, 422, "", []problem{{"string_too_long", []any{"path", "id"}}}, ""},
		{"id not UTF-8", req{"PUT", "/items/%FF", `{}`, jsonCT}, 422, "", []problem{{"string_unicode", []any{"path", "id"}}}, ""},
		{"encoded slash in id", req{"PUT", "/items/a%2Fb", `{}`, jsonCT}, 404, "Not Found", nil, ""},
		{"empty id", req{"PUT", "/items/", `{}`, jsonCT}, 404, "Not Found", nil, ""},
		{"two segments", req{"PUT", "/items/a/b", `{}`, jsonCT}, 404, "Not Found", nil, ""},
		{"dot segment", req{"PUT", "/items/.", `{}`, jsonCT}, 404, "Not Found", nil, ""},
		{"dot-dot segment", req{"GET", "/items/../items/foo", "", nil}, 404, "Not Found", nil, ""},
		{"doubled slash", req{"PUT", "/items//foo", `{}`, jsonCT}, 404, "Not Found", nil, ""},
		{"root doubled", req{"GET", "//", "", nil}, 404, "Not Found", nil, ""},
		{"trailing dot segment", req{"GET", "/items/foo/.", "", nil}, 404, "Not Found", nil, ""},
		{"unknown path", req{"GET", "/nope", "", nil}, 404, "Not Found", nil, ""},
		{"get missing", req{"GET", "/items/nope", "", nil}, 404, "Not Found", nil, ""},
		{"delete missing", req{"DELETE", "/items/nope", "", nil}, 404, "Not Found", nil, ""},
		{"POST an item", req{"POST", "/items/foo", `{}`, jsonCT}, 405, "Method Not Allowed", nil, "GET, HEAD, PUT, DELETE"},
		{"PATCH an item", req{"PATCH", "/items/foo", `{}`, jsonCT}, 405, "Method Not Allowed", nil, "GET, HEAD, PUT, DELETE"},
		{"POST the list", req{"POST", "/items", `{}`, jsonCT}, 405, "Method Not Allowed", nil, "GET, HEAD"},
		{"DELETE health", req{"DELETE", "/healthz", "", nil}, 405, "Method Not Allowed", nil, "GET, HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newTestServer(t, nil)
			resp, body := do(t, srv, tt.req)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("%s: status = %d, want %d (body %s)", tt.req, resp.StatusCode, tt.wantStatus, body)
			}
			checkErrorBody(t, tt.req.String(), resp, body)
			var got struct{ Detail json.RawMessage }
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("%s: body %s: %v", tt.req, body, err)
			}
			var want any = tt.wantDetail
			if tt.wantProblems != nil {
				var problems []problem
				if err := json.Unmarshal(got.Detail, &problems); err != nil {
					t.Fatalf("%s: detail %s: %v", tt.req, got.Detail, err)
				}
				got.Detail, _ = json.Marshal(problems)
				want = tt.wantProblems
			}
			if w, _ := json.Marshal(want); string(got.Detail) != string(w) {
				t.Errorf("%s: detail = %s, want %s", tt.req, got.Detail, w)
			}
			if got := resp.Header.Get("Allow"); got != tt.wantAllow {
				t.Errorf("%s: Allow = %q, want %q", tt.req, got, tt.wantAllow)
			}
			checkStore(t, srv, tt.req, resp.StatusCode, "")
		})
	}
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
	if shape.Detail[0] != '[' {
		return
	}
	var entries []map[string]json.RawMessage
	if err := json.Unmarshal(shape.Detail, &entries); err != nil || len(entries) == 0 {
		t.Fatalf("%s: detail %s is not a list of problems: %v", call, shape.Detail, err)
	}
	for _, e := range entries {
		for _, k := range []string{"type", "loc", "msg", "input"} {
			if _, ok := e[k]; !ok || len(e) != 4 {
				t.Errorf("%s: problem %v does not have exactly type, loc, msg, input", call, e)
			}
		}
	}
}

// TestSameNewIDTwice checks the upsert's two answers in sequence.
func TestSameNewIDTwice(t *testing.T) {
	srv := newTestServer(t, nil)
	for _, tt := range []struct {
		body       string
		wantStatus int
	}{{`{"size":1}`, http.StatusCreated}, {`{"size":2}`, http.StatusOK}} {
		if resp, body := do(t, srv, req{"PUT", "/items/twice", tt.body, jsonCT}); resp.StatusCode != tt.wantStatus {
			t.Errorf("PUT /items/twice %s: status = %d, want %d (body %s)", tt.body, resp.StatusCode, tt.wantStatus, body)
		}
	}
	if _, body := do(t, srv, req{"GET", "/items/twice", "", nil}); body != `{"name":null,"size":2}` {
		t.Errorf("GET /items/twice = %s, want the second write", body)
	}
}

// TestLargeBodyWithinLimit stores a body far larger than the buffers the
// handler pools, just under the default limit.
func TestLargeBodyWithinLimit(t *testing.T) {
	srv := newTestServer(t, NewServer(NewStore(false), quiet, 1<<20, false))
	name := strings.Repeat("é", (1<<20-40)/2)
	want := `{"name":"` + name + `","size":1}`
	if resp, body := do(t, srv, req{"PUT", "/items/big", want, jsonCT}); resp.StatusCode != http.StatusCreated || body != want {
		t.Fatalf("PUT of a %d-byte body: status %d, %d-byte answer; want 201 with the item", len(want), resp.StatusCode, len(body))
	}
	if _, body := do(t, srv, req{"GET", "/items/big", "", nil}); body != want {
		t.Errorf("GET /items/big: %d bytes, want the %d-byte item", len(body), len(want))
	}
}

// TestCrossSiteWritesRefused checks what a hostile page in a browser can do
// without a CORS preflight: send a form or text/plain body, by POST or by
// PUT. None of it writes, and nothing grants CORS access.
func TestCrossSiteWritesRefused(t *testing.T) {
	srv := newTestServer(t, nil)
	origin := func(h map[string]string) map[string]string { h["Origin"] = "https://evil.example"; return h }
	for _, rq := range []req{
		{"POST", "/items/foo", "name=x", origin(map[string]string{"Content-Type": "application/x-www-form-urlencoded"})},
		{"POST", "/items/foo", `{"name":"x"}`, origin(map[string]string{"Content-Type": "text/plain"})},
		{"PUT", "/items/foo", `{"name":"x"}`, origin(map[string]string{"Content-Type": "text/plain;charset=UTF-8"})},
		{"PUT", "/items/new", "------b\r\n\r\nx\r\n------b--", origin(map[string]string{"Content-Type": "multipart/form-data; boundary=----b"})},
		{"OPTIONS", "/items/foo", "", origin(map[string]string{"Access-Control-Request-Method": "PUT"})},
	} {
		resp, body := do(t, srv, rq)
		if resp.StatusCode < 400 {
			t.Errorf("%s: status %d, want a refusal", rq, resp.StatusCode)
		}
		for k := range resp.Header {
			if strings.HasPrefix(k, "Access-Control-") {
				t.Errorf("%s: sent CORS header %s", rq, k)
			}
		}
		checkErrorBody(t, rq.String(), resp, body)
	}
	checkStore(t, srv, req{}, 0, "")
}

// TestPanicBecomes500 checks that a panicking handler answers a JSON 500,
// logs the panic, and that the server goes on serving.
func TestPanicBecomes500(t *testing.T) {
	var logs strings.Builder
	mux := http.NewServeMux()
	mux.HandleFunc("/panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	mux.Handle("/ok", serveJSON(healthBody))
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
	srv := newTestServer(t, NewServer(NewStore(true), slog.New(slog.NewJSONHandler(&logs, nil)), testMaxBody, true))
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

// fooTag is the entity tag of the seeded item foo.
var fooTag = entityTag([]byte(seedItems["foo"]))

// cond returns request headers with "{foo}" standing for foo's tag.
func cond(kv ...string) map[string]string {
	h := map[string]string{"Content-Type": "application/json"}
	for i := 0; i < len(kv); i += 2 {
		h[kv[i]] = strings.ReplaceAll(kv[i+1], "{foo}", fooTag)
	}
	return h
}

func TestConditionalRequests(t *testing.T) {
	x := `{"name":"x"}`
	tests := []struct {
		name       string
		req        req
		wantStatus int
	}{
		{"create-only on a new id", req{"PUT", "/items/new", x, cond("If-None-Match", "*")}, 201},
		{"create-only on an existing id", req{"PUT", "/items/foo", x, cond("If-None-Match", "*")}, 412},
		{"update-only on an existing id", req{"PUT", "/items/foo", x, cond("If-Match", "*")}, 200},
		{"update-only on a new id", req{"PUT", "/items/new", x, cond("If-Match", "*")}, 412},
		{"If-Match current tag", req{"PUT", "/items/foo", x, cond("If-Match", "{foo}")}, 200},
		{"If-Match stale tag", req{"PUT", "/items/foo", x, cond("If-Match", `"stale"`)}, 412},
		{"If-Match list holding the tag", req{"PUT", "/items/foo", x, cond("If-Match", `"a", {foo} ,"b"`)}, 200},
		{"If-Match list of empty elements", req{"PUT", "/items/foo", x, cond("If-Match", ` , ,`)}, 412},
		{"If-Match weak tag never matches", req{"PUT", "/items/foo", x, cond("If-Match", "W/{foo}")}, 412},
		{"If-Match tag of a missing item", req{"PUT", "/items/new", x, cond("If-Match", "{foo}")}, 412},
		{"If-None-Match current tag", req{"PUT", "/items/foo", x, cond("If-None-Match", "{foo}")}, 412},
		{"If-None-Match weak form of current tag", req{"PUT", "/items/foo", x, cond("If-None-Match", "W/{foo}")}, 412},
		{"If-None-Match other tag", req{"PUT", "/items/foo", x, cond("If-None-Match", `"other"`)}, 200},
		{"If-Match passes, If-None-Match fails", req{"PUT", "/items/foo", x, cond("If-Match", "{foo}", "If-None-Match", "{foo}")}, 412},
		{"failed precondition wins over a bad body", req{"PUT", "/items/foo", `{"size":"x"}`, cond("If-Match", `"stale"`)}, 412},
		{"bad body with a passing precondition", req{"PUT", "/items/foo", `{"size":"x"}`, cond("If-Match", "{foo}")}, 422},
		{"unquoted tag", req{"PUT", "/items/foo", x, cond("If-Match", "abc")}, 400},
		{"junk after a tag", req{"PUT", "/items/foo", x, cond("If-Match", `"a" b`)}, 400},
		{"unterminated tag", req{"PUT", "/items/foo", x, cond("If-None-Match", `"a`)}, 400},
		{"star in a list", req{"PUT", "/items/foo", x, cond("If-None-Match", `*, "a"`)}, 400},
		{"space inside a tag", req{"PUT", "/items/foo", x, cond("If-Match", `"a b"`)}, 400},
		{"DELETE If-Match current tag", req{"DELETE", "/items/foo", "", cond("If-Match", "{foo}")}, 204},
		{"DELETE If-Match star", req{"DELETE", "/items/foo", "", cond("If-Match", "*")}, 204},
		{"DELETE If-Match stale tag", req{"DELETE", "/items/foo", "", cond("If-Match", `"stale"`)}, 412},
		{"DELETE missing item ignores conditions", req{"DELETE", "/items/new", "", cond("If-Match", "*")}, 404},
		{"DELETE malformed If-Match", req{"DELETE", "/items/foo", "", cond("If-Match", "W/")}, 400},
		{"GET If-None-Match current tag", req{"GET", "/items/foo", "", cond("If-None-Match", "{foo}")}, 304},
		{"GET If-None-Match weak form", req{"GET", "/items/foo", "", cond("If-None-Match", "W/{foo}")}, 304},
		{"GET If-None-Match star", req{"GET", "/items/foo", "", cond("If-None-Match", "*")}, 304},
		{"GET If-None-Match other tag", req{"GET", "/items/foo", "", cond("If-None-Match", `"other"`)}, 200},
		{"GET If-Match stale tag", req{"GET", "/items/foo", "", cond("If-Match", `"stale"`)}, 412},
		{"GET missing item ignores conditions", req{"GET", "/items/new", "", cond("If-None-Match", "*")}, 404},
		{"GET malformed If-None-Match", req{"GET", "/items/foo", "", cond("If-None-Match", "{foo}x")}, 400},
		{"HEAD If-None-Match current tag", req{"HEAD", "/items/foo", "", cond("If-None-Match", "{foo}")}, 304},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newTestServer(t, nil)
			resp, body := do(t, srv, tt.req)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("%s: status = %d, want %d (body %s)", tt.req, resp.StatusCode, tt.wantStatus, body)
			}
			switch tt.wantStatus {
			case http.StatusNotModified:
				if body != "" || resp.Header.Get("ETag") != fooTag {
					t.Errorf("%s: 304 with body %q and ETag %q, want no body and ETag %s", tt.req, body, resp.Header.Get("ETag"), fooTag)
				}
			case http.StatusPreconditionFailed:
				if body != `{"detail":"Precondition Failed"}` {
					t.Errorf("%s: body = %s, want {\"detail\":\"Precondition Failed\"}", tt.req, body)
				}
			case http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusNotFound:
				checkErrorBody(t, tt.req.String(), resp, body)
			}
			checkStore(t, srv, tt.req, resp.StatusCode, `{"name":"x","size":null}`)
		})
	}
}

// TestETag checks what the entity tag is tied to: the item's stored
// representation, and nothing else.
func TestETag(t *testing.T) {
	srv := newTestServer(t, nil)
	tagOf := func(method string) string {
		t.Helper()
		resp, _ := do(t, srv, req{method, "/items/foo", "", nil})
		tag := resp.Header.Get("ETag")
		if _, ok := matchTag(tag, tag, false); !ok || strings.HasPrefix(tag, "W/") {
			t.Fatalf("%s /items/foo: ETag %q is not a strong entity tag", method, tag)
		}
		return tag
	}
	put := func(body string) {
		t.Helper()
		if resp, _ := do(t, srv, req{"PUT", "/items/foo", body, jsonCT}); resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") != "" {
			t.Fatalf("PUT /items/foo %s: status %d, ETag %q; want 200 and no ETag", body, resp.StatusCode, resp.Header.Get("ETag"))
		}
	}
	first := tagOf("GET")
	if first != fooTag {
		t.Errorf("ETag of foo = %s, want %s", first, fooTag)
	}
	put(`{"name":"Fighters","size":7}`)
	if changed := tagOf("GET"); changed == first {
		t.Errorf("ETag stayed %s after foo changed", changed)
	}
	put(` { "size" : 6, "name" : "Fighters" } `)
	for _, method := range []string{"GET", "HEAD"} {
		if back := tagOf(method); back != first {
			t.Errorf("%s: ETag = %s after foo got its first representation back, want %s", method, back, first)
		}
	}
}

// TestRaces has many clients PUT one new id at the same moment: exactly one
// creates it, whatever the others get.
func TestRaces(t *testing.T) {
	const clients = 50
	tests := []struct {
		name       string
		header     map[string]string
		wantOthers int
	}{
		{"plain PUTs", jsonCT, http.StatusOK},
		{"create-only PUTs", cond("If-None-Match", "*"), http.StatusPreconditionFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newTestServer(t, nil)
			statuses := make(chan int, clients)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range clients {
				wg.Go(func() {
					<-start
					resp, _, err := send(srv, req{"PUT", "/items/race", `{"size":` + strconv.Itoa(i) + `}`, tt.header})
					if err != nil {
						t.Error(err)
						return
					}
					statuses <- resp.StatusCode
				})
			}
			close(start)
			wg.Wait()
			close(statuses)
			counts := map[int]int{}
			for s := range statuses {
				counts[s]++
			}
			if want := map[int]int{http.StatusCreated: 1, tt.wantOthers: clients - 1}; !maps.Equal(counts, want) {
				t.Errorf("%d concurrent %s of one new id: statuses %v, want %v", clients, tt.name, counts, want)
			}
			if resp, _ := do(t, srv, req{"GET", "/items/race", "", nil}); resp.StatusCode != http.StatusOK {
				t.Errorf("GET /items/race after the race: status %d, want 200", resp.StatusCode)
			}
		})
	}
}

// TestNoLostUpdates has many clients increment one item's size by
// read-modify-write with If-Match, retrying on 412: every increment counts.
func TestNoLostUpdates(t *testing.T) {
	srv := newTestServer(t, nil)
	const clients, increments = 8, 25
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for range increments {
				if err := increment(srv.Client(), srv.URL+"/items/foo"); err != "" {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	want := `{"name":"Fighters","size":` + strconv.Itoa(6+clients*increments) + `}`
	if _, got := do(t, srv, req{"GET", "/items/foo", "", nil}); got != want {
		t.Errorf("after %d×%d conditional increments: foo = %s, want %s", clients, increments, got, want)
	}
}

// increment adds one to the size of the item at url, retrying until its
// If-Match write wins. It returns a description of what went wrong, if
// anything did.
func increment(c *http.Client, url string) string {
	for {
		resp, err := c.Get(url)
		if err != nil {
			return err.Error()
		}
		var it struct {
			Name string
			Size int
		}
		err = json.NewDecoder(resp.Body).Decode(&it)
		resp.Body.Close()
		if err != nil {
			return "GET: " + err.Error()
		}
		body, _ := json.Marshal(map[string]any{"name": it.Name, "size": it.Size + 1})
		r, _ := http.NewRequest("PUT", url, strings.NewReader(string(body)))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("If-Match", resp.Header.Get("ETag"))
		if resp, err = c.Do(r); err != nil {
			return err.Error()
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			return ""
		case http.StatusPreconditionFailed:
			continue // someone else wrote first: read again
		default:
			return "PUT: status " + resp.Status
		}
	}
}

func TestMatchTag(t *testing.T) {
	tests := []struct {
		field, tag  string
		weak        bool
		matched, ok bool
	}{
		{`"a"`, `"a"`, false, true, true},
		{`"a"`, `"b"`, false, false, true},
		{`W/"a"`, `"a"`, false, false, true},
		{`W/"a"`, `"a"`, true, true, true},
		{`"x", "a"`, `"a"`, false, true, true},
		{` ,"x",,	"a" , `, `"a"`, false, true, true},
		{`""`, `""`, false, true, true},
		{`"a,b"`, `"a,b"`, false, true, true},
		{"\"\x80\xff\"", "\"\x80\xff\"", false, true, true},
		{``, `"a"`, false, false, true},
		{`a`, ``, false, false, false},
		{`"a`, ``, false, false, false},
		{`"a" "b"`, ``, false, false, false},
		{`"a b"`, ``, false, false, false},
		{`w/"a"`, ``, false, false, false},
		{`W/`, ``, false, false, false},
		{`*`, ``, false, false, false},
		{"\"a\x7f\"", ``, false, false, false},
	}
	for _, tt := range tests {
		if matched, ok := matchTag(tt.field, tt.tag, tt.weak); matched != tt.matched || ok != tt.ok {
			t.Errorf("matchTag(%q, %q, weak=%v) = %v, %v; want %v, %v", tt.field, tt.tag, tt.weak, matched, ok, tt.matched, tt.ok)
		}
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
		h := NewServer(NewStore(true), quiet, testMaxBody, false)
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
		want, accept, sure := referenceDecode([]byte(body))
		switch {
		case !sure:
		case ok && !accept:
			t.Fatalf("%s %q: stored %s, but encoding/json says the body must be refused", call, body, got)
		case ok && !sameItem(got, want):
			t.Fatalf("%s %q: stored %s, but encoding/json reads %s", call, body, got, want)
		case resp.StatusCode == http.StatusUnprocessableEntity && strings.Contains(got, `"loc":["body"`) && accept:
			t.Fatalf("%s %q: refused with %s, but encoding/json reads it as %s", call, body, got, want)
		}
	})
}

// checkItemJSON fails unless body is exactly an item, a list of items, or
// the health answer.
func checkItemJSON(t *testing.T, call, body string) {
	t.Helper()
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &obj); err != nil {
		t.Fatalf("%s: body %q is not a JSON object: %v", call, body, err)
	}
	if body == string(healthBody) {
		return
	}
	if _, ok := obj["name"]; !ok || len(obj) != 2 {
		t.Fatalf("%s: body %s is not {\"name\":...,\"size\":...}", call, body)
	}
	var it struct {
		Name *string
		Size *int64
	}
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&it); err != nil {
		t.Fatalf("%s: body %s is not an item: %v", call, body, err)
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
	handler := NewServer(NewStore(true), quiet, 1<<20, false)
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
