package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// testMaxBody is the body limit of test servers: small, so that 413 is cheap
// to reach.
const testMaxBody = 1 << 10

// newTestServer starts the real handler on a seeded store behind an httptest
// server. Its client does not follow redirects: the API never redirects, and
// a followed one would hide the answer under test.
func newTestServer(t *testing.T) (*httptest.Server, *Store) {
	t.Helper()
	store := NewStore(true)
	srv := httptest.NewServer(NewServer(store, slog.New(slog.DiscardHandler), testMaxBody, false))
	t.Cleanup(srv.Close)
	srv.Client().CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return srv, store
}

// req is one request of a test case.
type req struct {
	method, path, body string
	header             map[string]string
}

// do sends rq to srv and returns the answer with its body read.
func do(t *testing.T, srv *httptest.Server, rq req) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if rq.body != "" {
		body = strings.NewReader(rq.body)
	}
	r, err := http.NewRequest(rq.method, srv.URL+rq.path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", rq.method, rq.path, err)
	}
	for k, v := range rq.header {
		r.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(r)
	if err != nil {
		t.Fatalf("%s %s: %v", rq.method, rq.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", rq.method, rq.path, err)
	}
	return resp, string(b)
}

// jsonCT is the header of a PUT with a JSON body.
var jsonCT = map[string]string{"Content-Type": "application/json"}

// contents returns the store's items as a map of their JSON, for
// comparisons.
func contents(s *Store) map[string]string {
	m := make(map[string]string)
	for _, e := range s.All() {
		m[string(e.ID)] = string(appendItemJSON(nil, e.Item))
	}
	return m
}

// seeded is the store's content at start.
var seeded = map[string]string{
	"foo": `{"name":"Fighters","size":6}`,
	"bar": `{"name":"Tenders","size":3}`,
}

// with returns seeded with the given changes; an empty item deletes.
func with(changes map[string]string) map[string]string {
	m := maps.Clone(seeded)
	for id, it := range changes {
		if it == "" {
			delete(m, id)
		} else {
			m[id] = it
		}
	}
	return m
}

func TestSuccess(t *testing.T) {
	tests := []struct {
		name       string
		req        req
		wantStatus int
		wantBody   string // exact bytes; "" for none
		wantStore  map[string]string
	}{
		{"update existing", req{"PUT", "/items/foo", `{"name":"Bars","size":9}`, jsonCT},
			200, `{"name":"Bars","size":9}`, with(map[string]string{"foo": `{"name":"Bars","size":9}`})},
		{"create new", req{"PUT", "/items/baz", `{"name":"Baz","size":1}`, jsonCT},
			201, `{"name":"Baz","size":1}`, with(map[string]string{"baz": `{"name":"Baz","size":1}`})},
		{"partial body leaves size null", req{"PUT", "/items/foo", `{"name":"x"}`, jsonCT},
			200, `{"name":"x","size":null}`, with(map[string]string{"foo": `{"name":"x","size":null}`})},
		{"empty body means both null", req{"PUT", "/items/foo", "", nil},
			200, `{"name":null,"size":null}`, with(map[string]string{"foo": `{"name":null,"size":null}`})},
		{"JSON null means both null", req{"PUT", "/items/new", `null`, jsonCT},
			201, `{"name":null,"size":null}`, with(map[string]string{"new": `{"name":null,"size":null}`})},
		{"explicit nulls", req{"PUT", "/items/foo", `{"name":null,"size":null}`, jsonCT},
			200, `{"name":null,"size":null}`, with(map[string]string{"foo": `{"name":null,"size":null}`})},
		{"empty object", req{"PUT", "/items/foo", `{}`, jsonCT},
			200, `{"name":null,"size":null}`, with(map[string]string{"foo": `{"name":null,"size":null}`})},
		{"integral float and exponent", req{"PUT", "/items/foo", `{"size":6.0}`, jsonCT},
			200, `{"name":null,"size":6}`, with(map[string]string{"foo": `{"name":null,"size":6}`})},
		{"exponent", req{"PUT", "/items/foo", `{"size":1e3}`, jsonCT},
			200, `{"name":null,"size":1000}`, with(map[string]string{"foo": `{"name":null,"size":1000}`})},
		{"int64 extremes", req{"PUT", "/items/foo", `{"size":-9223372036854775808}`, jsonCT},
			200, `{"name":null,"size":-9223372036854775808}`, with(map[string]string{"foo": `{"name":null,"size":-9223372036854775808}`})},
		{"unknown and miscased keys ignored", req{"PUT", "/items/foo", `{"Name":"no","SIZE":1,"extra":[1,{"a":"}"}],"name":"yes"}`, jsonCT},
			200, `{"name":"yes","size":null}`, with(map[string]string{"foo": `{"name":"yes","size":null}`})},
		{"last repeated key wins", req{"PUT", "/items/foo", `{"size":"bad","size":2}`, jsonCT},
			200, `{"name":null,"size":2}`, with(map[string]string{"foo": `{"name":null,"size":2}`})},
		{"escapes are canonicalised", req{"PUT", "/items/foo", `{"n\u0061me":"a\u0062\"\/\n\u00e9"}`, jsonCT},
			200, `{"name":"ab\"/\né","size":null}`, with(map[string]string{"foo": `{"name":"ab\"/\né","size":null}`})},
		{"whitespace everywhere", req{"PUT", "/items/foo", " \n{ \"name\" : \"x\" ,\t\"size\" : 2 } \r\n", jsonCT},
			200, `{"name":"x","size":2}`, with(map[string]string{"foo": `{"name":"x","size":2}`})},
		{"vendor +json media type with charset", req{"PUT", "/items/foo", `{}`, map[string]string{"Content-Type": "Application/Merge-Patch+JSON; Charset=UTF-8"}},
			200, `{"name":null,"size":null}`, with(map[string]string{"foo": `{"name":null,"size":null}`})},
		{"missing content type", req{"PUT", "/items/foo", `{"size":1}`, nil},
			200, `{"name":null,"size":1}`, with(map[string]string{"foo": `{"name":null,"size":1}`})},
		{"identity content encoding", req{"PUT", "/items/foo", `{}`, map[string]string{"Content-Type": "application/json", "Content-Encoding": "Identity"}},
			200, `{"name":null,"size":null}`, with(map[string]string{"foo": `{"name":null,"size":null}`})},
		{"percent-encoded unicode id", req{"PUT", "/items/caf%C3%A9%20au%20lait", `{}`, jsonCT},
			201, `{"name":null,"size":null}`, with(map[string]string{"café au lait": `{"name":null,"size":null}`})},
		{"id of maximal length", req{"PUT", "/items/" + strings.Repeat("i", maxIDLen), `{}`, jsonCT},
			201, `{"name":null,"size":null}`, with(map[string]string{strings.Repeat("i", maxIDLen): `{"name":null,"size":null}`})},
		{"get", req{"GET", "/items/foo", "", nil}, 200, `{"name":"Fighters","size":6}`, seeded},
		{"head", req{"HEAD", "/items/bar", "", nil}, 200, "", seeded},
		{"delete", req{"DELETE", "/items/foo", "", nil}, 204, "", with(map[string]string{"foo": ""})},
		{"list", req{"GET", "/items", "", nil}, 200, `{"bar":{"name":"Tenders","size":3},"foo":{"name":"Fighters","size":6}}`, seeded},
		{"health", req{"GET", "/healthz", "", nil}, 200, `{"status":"ok"}`, seeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, store := newTestServer(t)
			resp, body := do(t, srv, tt.req)
			call := tt.req.method + " " + tt.req.path + " " + tt.req.body
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("%s: status = %d, want %d (body %s)", call, resp.StatusCode, tt.wantStatus, body)
			}
			if body != tt.wantBody {
				t.Errorf("%s: body = %s, want %s", call, body, tt.wantBody)
			}
			if tt.wantStatus != http.StatusNoContent {
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("%s: Content-Type = %q, want application/json", call, ct)
				}
				if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
					t.Errorf("%s: X-Content-Type-Options = %q, want nosniff", call, got)
				}
			}
			if got := contents(store); !maps.Equal(got, tt.wantStore) {
				t.Errorf("%s: store = %v, want %v", call, got, tt.wantStore)
			}
		})
	}
}

// problem is the part of a 422 entry that tests compare.
type problem struct {
	Type string
	Loc  []any
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name         string
		req          req
		wantStatus   int
		wantDetail   string    // for answers whose detail is a sentence
		wantProblems []problem // for 422s
		wantAllow    string
	}{
		{"text/plain body", req{"PUT", "/items/foo", `{"name":"x"}`, map[string]string{"Content-Type": "text/plain"}},
			415, errUnsupportedMediaType.detail, nil, ""},
		{"form post", req{"PUT", "/items/foo", `name=x`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}},
			415, errUnsupportedMediaType.detail, nil, ""},
		{"multipart", req{"PUT", "/items/foo", "--b\r\n\r\nx\r\n--b--\r\n", map[string]string{"Content-Type": "multipart/form-data; boundary=b"}},
			415, errUnsupportedMediaType.detail, nil, ""},
		{"latin-1 charset", req{"PUT", "/items/foo", `{}`, map[string]string{"Content-Type": "application/json; charset=latin-1"}},
			415, errUnsupportedMediaType.detail, nil, ""},
		{"unparsable content type", req{"PUT", "/items/foo", `{}`, map[string]string{"Content-Type": "application/json; ;"}},
			415, errUnsupportedMediaType.detail, nil, ""},
		{"bare +json", req{"PUT", "/items/foo", `{}`, map[string]string{"Content-Type": "application/+json"}},
			415, errUnsupportedMediaType.detail, nil, ""},
		{"gzip", req{"PUT", "/items/foo", `{}`, map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip"}},
			415, errUnsupportedEncoding.detail, nil, ""},
		{"body over the limit", req{"PUT", "/items/foo", `{"name":"` + strings.Repeat("x", testMaxBody) + `"}`, jsonCT},
			413, "Request body too large: the limit is 1024 bytes", nil, ""},
		{"name not a string", req{"PUT", "/items/foo", `{"name":1}`, jsonCT},
			422, "", []problem{{"string_type", []any{"body", "name"}}}, ""},
		{"name an object", req{"PUT", "/items/foo", `{"name":{"a":1}}`, jsonCT},
			422, "", []problem{{"string_type", []any{"body", "name"}}}, ""},
		{"size a string", req{"PUT", "/items/foo", `{"size":"6"}`, jsonCT},
			422, "", []problem{{"int_type", []any{"body", "size"}}}, ""},
		{"size a boolean", req{"PUT", "/items/foo", `{"size":true}`, jsonCT},
			422, "", []problem{{"int_type", []any{"body", "size"}}}, ""},
		{"size an array", req{"PUT", "/items/foo", `{"size":[6]}`, jsonCT},
			422, "", []problem{{"int_type", []any{"body", "size"}}}, ""},
		{"size a fraction", req{"PUT", "/items/foo", `{"size":6.5}`, jsonCT},
			422, "", []problem{{"int_from_float", []any{"body", "size"}}}, ""},
		{"size above int64", req{"PUT", "/items/foo", `{"size":9223372036854775808}`, jsonCT},
			422, "", []problem{{"less_than_equal", []any{"body", "size"}}}, ""},
		{"size below int64", req{"PUT", "/items/foo", `{"size":-1e19}`, jsonCT},
			422, "", []problem{{"greater_than_equal", []any{"body", "size"}}}, ""},
		{"every bad field reported", req{"PUT", "/items/foo", `{"name":false,"size":"x"}`, jsonCT},
			422, "", []problem{{"string_type", []any{"body", "name"}}, {"int_type", []any{"body", "size"}}}, ""},
		{"only the last repeated key validated", req{"PUT", "/items/foo", `{"size":1,"size":"x"}`, jsonCT},
			422, "", []problem{{"int_type", []any{"body", "size"}}}, ""},
		{"malformed JSON", req{"PUT", "/items/foo", `{"name":}`, jsonCT},
			422, "", []problem{{"json_invalid", []any{"body", 8.0}}}, ""},
		{"truncated JSON", req{"PUT", "/items/foo", `{"name":"x"`, jsonCT},
			422, "", []problem{{"json_invalid", []any{"body", 11.0}}}, ""},
		{"trailing data", req{"PUT", "/items/foo", `{"name":"x"} x`, jsonCT},
			422, "", []problem{{"json_invalid", []any{"body", 13.0}}}, ""},
		{"invalid UTF-8", req{"PUT", "/items/foo", "{\"name\":\"\xff\"}", jsonCT},
			422, "", []problem{{"json_invalid", []any{"body", 9.0}}}, ""},
		{"body an array", req{"PUT", "/items/foo", `[{"name":"x"}]`, jsonCT},
			422, "", []problem{{"model_attributes_type", []any{"body"}}}, ""},
		{"body a string", req{"PUT", "/items/foo", `"x"`, jsonCT},
			422, "", []problem{{"model_attributes_type", []any{"body"}}}, ""},
		{"body a number", req{"PUT", "/items/foo", `6`, jsonCT},
			422, "", []problem{{"model_attributes_type", []any{"body"}}}, ""},
		{"id too long", req{"PUT", "/items/" + strings.Repeat("i", maxIDLen+1), `{}`, jsonCT},
			422, "", []problem{{"string_too_long", []any{"path", "id"}}}, ""},
		{"id not UTF-8", req{"PUT", "/items/%FF", `{}`, jsonCT},
			422, "", []problem{{"string_unicode", []any{"path", "id"}}}, ""},
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
			srv, store := newTestServer(t)
			resp, body := do(t, srv, tt.req)
			call := tt.req.method + " " + tt.req.path + " " + tt.req.body
			if len(call) > 100 {
				call = call[:100] + "..."
			}
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("%s: status = %d, want %d (body %s)", call, resp.StatusCode, tt.wantStatus, body)
			}
			checkErrorBody(t, call, resp, body)
			var got struct{ Detail json.RawMessage }
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("%s: body %s: %v", call, body, err)
			}
			if tt.wantProblems == nil {
				var detail string
				if err := json.Unmarshal(got.Detail, &detail); err != nil || detail != tt.wantDetail {
					t.Errorf("%s: detail = %s, want %q", call, got.Detail, tt.wantDetail)
				}
			} else {
				var problems []problem
				if err := json.Unmarshal(got.Detail, &problems); err != nil {
					t.Fatalf("%s: detail %s: %v", call, got.Detail, err)
				}
				if !equalJSON(problems, tt.wantProblems) {
					t.Errorf("%s: problems = %v, want %v", call, problems, tt.wantProblems)
				}
			}
			if got := resp.Header.Get("Allow"); got != tt.wantAllow {
				t.Errorf("%s: Allow = %q, want %q", call, got, tt.wantAllow)
			}
			if got := contents(store); !maps.Equal(got, seeded) {
				t.Errorf("%s: store = %v, want it unchanged", call, got)
			}
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

// equalJSON reports whether a and b encode to the same JSON.
func equalJSON(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(ja) == string(jb)
}

// TestSameNewIDTwice checks the upsert's two answers in sequence.
func TestSameNewIDTwice(t *testing.T) {
	srv, store := newTestServer(t)
	for i, want := range []int{http.StatusCreated, http.StatusOK} {
		resp, body := do(t, srv, req{"PUT", "/items/twice", `{"size":` + strconv.Itoa(i+1) + `}`, jsonCT})
		if resp.StatusCode != want {
			t.Errorf("PUT /items/twice #%d: status = %d, want %d (body %s)", i+1, resp.StatusCode, want, body)
		}
	}
	if it, _ := store.Get(nil, "twice"); string(it) != `null2` {
		t.Errorf("stored %s, want the second write", it)
	}
}

// TestBodyLimitChunked sends an oversized body with no declared length.
func TestBodyLimitChunked(t *testing.T) {
	srv, store := newTestServer(t)
	body := io.MultiReader(strings.NewReader(`{"name":"`), strings.NewReader(strings.Repeat("x", 2*testMaxBody)), strings.NewReader(`"}`))
	r, _ := http.NewRequest("PUT", srv.URL+"/items/big", body)
	r.Header.Set("Content-Type", "application/json")
	r.ContentLength = -1
	r.TransferEncoding = []string{"chunked"}
	resp, err := srv.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked PUT of %d bytes: status = %d, want 413", 2*testMaxBody, resp.StatusCode)
	}
	if _, ok := store.Get(nil, "big"); ok {
		t.Error("an oversized body was stored")
	}
}

// TestConcurrentCreate has many clients create one id at once: exactly one
// of them creates it.
func TestConcurrentCreate(t *testing.T) {
	srv, store := newTestServer(t)
	const clients = 50
	counts := concurrentPUTs(t, srv, "/items/race", clients, nil)
	if counts[http.StatusCreated] != 1 || counts[http.StatusOK] != clients-1 {
		t.Errorf("%d concurrent PUTs of one new id: statuses %v, want one 201 and %d 200", clients, counts, clients-1)
	}
	if _, ok := store.Get(nil, "race"); !ok {
		t.Error("the item is not stored")
	}
}

// concurrentPUTs has n clients PUT a JSON body (each its own size) to path
// at the same moment, with the extra header h, and counts the statuses.
func concurrentPUTs(t *testing.T, srv *httptest.Server, path string, n int, h map[string]string) map[int]int {
	t.Helper()
	statuses := make(chan int, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r, _ := http.NewRequest("PUT", srv.URL+path, strings.NewReader(`{"size":`+strconv.Itoa(i)+`}`))
			r.Header.Set("Content-Type", "application/json")
			for k, v := range h {
				r.Header.Set(k, v)
			}
			resp, err := srv.Client().Do(r)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	close(start)
	wg.Wait()
	close(statuses)
	counts := map[int]int{}
	for s := range statuses {
		counts[s]++
	}
	return counts
}

// TestPanicBecomes500 checks that a panicking handler answers a JSON 500 and
// that the server goes on serving.
func TestPanicBecomes500(t *testing.T) {
	var logs strings.Builder
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	mux := http.NewServeMux()
	mux.HandleFunc("/panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, healthBody) })
	srv := httptest.NewServer(recoverPanics(mux, logger))
	defer srv.Close()

	resp, body := do(t, srv, req{"GET", "/panic", "", nil})
	if resp.StatusCode != http.StatusInternalServerError || body != `{"detail":"Internal Server Error"}` {
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
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	srv := httptest.NewServer(NewServer(NewStore(true), logger, testMaxBody, true))
	defer srv.Close()
	do(t, srv, req{"PUT", "/items/new%20one", `{"size":1}`, jsonCT})

	type accessLine struct {
		Msg, Method, Path string
		Status            int
		Bytes             int64
		Duration          int64
	}
	var got accessLine
	if err := json.Unmarshal([]byte(logs.String()), &got); err != nil {
		t.Fatalf("access log %q: %v", logs.String(), err)
	}
	if got.Duration <= 0 {
		t.Errorf("access log duration = %d, want > 0", got.Duration)
	}
	got.Duration = 0
	want := accessLine{Msg: "request", Method: "PUT", Path: "/items/new%20one", Status: 201, Bytes: 22}
	if got != want {
		t.Errorf("access log = %+v, want %+v", got, want)
	}
}

// TestLargeBodyWithinLimit stores a body far larger than the buffers the
// handler pools, just under the default limit.
func TestLargeBodyWithinLimit(t *testing.T) {
	store := NewStore(false)
	srv := httptest.NewServer(NewServer(store, slog.New(slog.DiscardHandler), 1<<20, false))
	defer srv.Close()
	name := strings.Repeat("é", (1<<20-40)/2)
	resp, body := do(t, srv, req{"PUT", "/items/big", `{"name":"` + name + `","size":1}`, jsonCT})
	if resp.StatusCode != http.StatusCreated || body != `{"name":"`+name+`","size":1}` {
		t.Fatalf("PUT of a %d-byte body: status %d, %d-byte answer; want 201 with the item", len(name)+20, resp.StatusCode, len(body))
	}
	if it, _ := store.Get(nil, "big"); string(it) != `"`+name+`"1` {
		t.Errorf("stored item of %d bytes, want %d", len(it), len(name)+3)
	}
}
