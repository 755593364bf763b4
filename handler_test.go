package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/big"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"itemsvc/internal/docs"
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
		h = NewServer(NewStore(true), quiet, testMaxBody, false, nil, nil)
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
			srv := newTestServer(t, NewServer(open(t), quiet, testMaxBody, false, nil, nil))
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

// TestCORS checks what -cors-origins grants: each case lists the CORS
// headers and Vary it expects, and any other Access-Control- header fails.
// Without the flag, checkContract finds none on any answer.
func TestCORS(t *testing.T) {
	const app, other = "http://localhost:5173", "https://evil.example"
	preflight := func(origin, method, headers string) map[string]string {
		return map[string]string{"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers}
	}
	fromApp := map[string]string{"Origin": app, "Content-Type": "application/json"}
	granted := func(origin, methods string) map[string]string {
		return map[string]string{"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Methods": methods,
			"Access-Control-Allow-Headers": "Content-Type, If-Match, If-None-Match", "Access-Control-Max-Age": "600", "Vary": "Origin"}
	}
	readable := func(origin string) map[string]string {
		return map[string]string{"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": "ETag, Link", "Vary": "Origin"}
	}
	vary := map[string]string{"Vary": "Origin"}
	const item, list = "GET, HEAD, PUT, DELETE", "GET, HEAD"
	tests := []struct {
		name, origins string
		req           req
		status        int
		want          map[string]string
	}{
		{"preflight of a PUT", app, req{"OPTIONS", "/items/foo", "", preflight(app, "PUT", "content-type, if-match")}, 204, granted(app, item)},
		{"preflight of a DELETE", app, req{"OPTIONS", "/items/foo", "", preflight(app, "DELETE", "If-None-Match")}, 204, granted(app, item)},
		{"preflight of a list", app, req{"OPTIONS", "/items", "", preflight(app, "GET", "")}, 204, granted(app, list)},
		{"preflight from one of a list", "https://app.example.com, " + app, req{"OPTIONS", "/healthz", "", preflight(app, "GET", "")}, 204, granted(app, list)},
		{"preflight for any origin", "*", req{"OPTIONS", "/items/foo", "", preflight(other, "PUT", "Content-Type")}, 204, granted("*", item)},
		{"preflight from an origin not allowed", app, req{"OPTIONS", "/items/foo", "", preflight(other, "PUT", "")}, 400, vary},
		// The browser checks a method and headers against the grant itself.
		{"preflight of a method not served", app, req{"OPTIONS", "/items", "", preflight(app, "PUT", "")}, 204, granted(app, list)},
		{"preflight of a header not allowed", app, req{"OPTIONS", "/items/foo", "", preflight(app, "PUT", "content-type, x-token")}, 204, granted(app, item)},
		{"OPTIONS that is no preflight", app, req{"OPTIONS", "/items/foo", "", map[string]string{"Origin": app}}, 405, readable(app)},
		{"preflight of a path not served", app, req{"OPTIONS", "/nope", "", preflight(app, "GET", "")}, 404, readable(app)},
		{"create", app, req{"PUT", "/items/new", `{"name":"x"}`, fromApp}, 201, readable(app)},
		{"422", app, req{"PUT", "/items/foo", `{"size":"six"}`, fromApp}, 422, readable(app)},
		{"412", app, req{"PUT", "/items/foo", `{}`, map[string]string{"Origin": app, "Content-Type": "application/json", "If-Match": `"stale"`}}, 412, readable(app)},
		{"read for any origin", "*", req{"GET", "/items/foo", "", map[string]string{"Origin": other}}, 200, readable("*")},
		{"read from an origin not allowed", app, req{"GET", "/items/foo", "", map[string]string{"Origin": other}}, 200, vary},
		{"read without an Origin", app, req{"GET", "/items/foo", "", nil}, 200, nil},
		{"the docs keep their policy", app, req{"GET", "/docs", "", map[string]string{"Origin": app}}, 200, nil},
		{"no preflight for the docs", app, req{"OPTIONS", "/redoc", "", preflight(app, "GET", "")}, 405, nil},
	}
	pages, err := docs.AssetsFor(true, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			origins, err := parseOrigins(tt.origins)
			if err != nil {
				t.Fatal(err)
			}
			srv := newTestServer(t, NewServer(NewStore(true), quiet, testMaxBody, false, pages, origins))
			resp, body := do(t, srv, tt.req)
			if resp.StatusCode != tt.status {
				t.Fatalf("%s: status = %d, want %d (body %s)", tt.req, resp.StatusCode, tt.status, body)
			}
			for k := range resp.Header {
				if _, ok := tt.want[k]; !ok && strings.HasPrefix(k, "Access-Control-") {
					t.Errorf("%s: sent %s: %s, want none", tt.req, k, resp.Header.Get(k))
				}
			}
			for k, v := range tt.want {
				if got := strings.Join(resp.Header.Values(k), ", "); got != v {
					t.Errorf("%s: %s = %q, want %q", tt.req, k, got, v)
				}
			}
			if tt.status >= 400 {
				checkErrorBody(t, tt.req.String(), resp, body)
			} else if tt.status == 204 && body != "" {
				t.Errorf("%s: 204 with body %q", tt.req, body)
			}
		})
	}
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
	srv := newTestServer(t, NewServer(NewStore(false), quiet, 1<<20, false, nil, nil))
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
		h := NewServer(NewStore(true), quiet, testMaxBody, false, nil, nil)
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
	handler := NewServer(NewStore(true), quiet, 1<<20, false, nil, nil)
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
	x, stored := `{"name":"x"}`, `{"name":"x","size":null}`
	failed, notFound := detail("Precondition Failed"), detail("Not Found")
	malformed := func(name string) string {
		return detail("Malformed " + name + " header: send * or a list of quoted entity tags")
	}
	checkContract(t, []contractCase{
		{name: "create-only on a new id", req: req{"PUT", "/items/new", x, cond("If-None-Match", "*")}, status: 201, body: stored},
		{name: "create-only on an existing id", req: req{"PUT", "/items/foo", x, cond("If-None-Match", "*")}, status: 412, body: failed},
		{name: "update-only on an existing id", req: req{"PUT", "/items/foo", x, cond("If-Match", "*")}, status: 200, body: stored},
		{name: "update-only on a new id", req: req{"PUT", "/items/new", x, cond("If-Match", "*")}, status: 412, body: failed},
		{name: "If-Match current tag", req: req{"PUT", "/items/foo", x, cond("If-Match", "{foo}")}, status: 200, body: stored},
		{name: "If-Match stale tag", req: req{"PUT", "/items/foo", x, cond("If-Match", `"stale"`)}, status: 412, body: failed},
		{name: "If-Match list holding the tag", req: req{"PUT", "/items/foo", x, cond("If-Match", `"a", {foo} ,"b"`)}, status: 200, body: stored},
		{name: "If-Match list of empty elements", req: req{"PUT", "/items/foo", x, cond("If-Match", ` , ,`)}, status: 412, body: failed},
		{name: "If-Match weak tag never matches", req: req{"PUT", "/items/foo", x, cond("If-Match", "W/{foo}")}, status: 412, body: failed},
		{name: "If-Match tag of a missing item", req: req{"PUT", "/items/new", x, cond("If-Match", "{foo}")}, status: 412, body: failed},
		{name: "If-None-Match current tag", req: req{"PUT", "/items/foo", x, cond("If-None-Match", "{foo}")}, status: 412, body: failed},
		{name: "If-None-Match weak form of current tag", req: req{"PUT", "/items/foo", x, cond("If-None-Match", "W/{foo}")}, status: 412, body: failed},
		{name: "If-None-Match other tag", req: req{"PUT", "/items/foo", x, cond("If-None-Match", `"other"`)}, status: 200, body: stored},
		{name: "If-Match passes, If-None-Match fails", req: req{"PUT", "/items/foo", x, cond("If-Match", "{foo}", "If-None-Match", "{foo}")}, status: 412, body: failed},
		{name: "failed precondition wins over a bad body", req: req{"PUT", "/items/foo", `{"size":"x"}`, cond("If-Match", `"stale"`)}, status: 412, body: failed},
		{name: "bad body with a passing precondition", req: req{"PUT", "/items/foo", `{"size":"x"}`, cond("If-Match", "{foo}")},
			status: 422, problems: []problem{{"int_type", []any{"body", "size"}}}},
		{name: "unquoted tag", req: req{"PUT", "/items/foo", x, cond("If-Match", "abc")}, status: 400, body: malformed("If-Match")},
		{name: "junk after a tag", req: req{"PUT", "/items/foo", x, cond("If-Match", `"a" b`)}, status: 400, body: malformed("If-Match")},
		{name: "unterminated tag", req: req{"PUT", "/items/foo", x, cond("If-None-Match", `"a`)}, status: 400, body: malformed("If-None-Match")},
		{name: "star in a list", req: req{"PUT", "/items/foo", x, cond("If-None-Match", `*, "a"`)}, status: 400, body: malformed("If-None-Match")},
		{name: "space inside a tag", req: req{"PUT", "/items/foo", x, cond("If-Match", `"a b"`)}, status: 400, body: malformed("If-Match")},
		{name: "DELETE If-Match current tag", req: req{"DELETE", "/items/foo", "", cond("If-Match", "{foo}")}, status: 204},
		{name: "DELETE If-Match star", req: req{"DELETE", "/items/foo", "", cond("If-Match", "*")}, status: 204},
		{name: "DELETE If-Match stale tag", req: req{"DELETE", "/items/foo", "", cond("If-Match", `"stale"`)}, status: 412, body: failed},
		{name: "DELETE missing item ignores conditions", req: req{"DELETE", "/items/new", "", cond("If-Match", "*")}, status: 404, body: notFound},
		{name: "DELETE malformed If-Match", req: req{"DELETE", "/items/foo", "", cond("If-Match", "W/")}, status: 400, body: malformed("If-Match")},
		{name: "GET If-None-Match current tag", req: req{"GET", "/items/foo", "", cond("If-None-Match", "{foo}")}, status: 304},
		{name: "GET If-None-Match weak form", req: req{"GET", "/items/foo", "", cond("If-None-Match", "W/{foo}")}, status: 304},
		{name: "GET If-None-Match star", req: req{"GET", "/items/foo", "", cond("If-None-Match", "*")}, status: 304},
		{name: "GET If-None-Match other tag", req: req{"GET", "/items/foo", "", cond("If-None-Match", `"other"`)}, status: 200, body: seeded["foo"]},
		{name: "GET If-Match stale tag", req: req{"GET", "/items/foo", "", cond("If-Match", `"stale"`)}, status: 412, body: failed},
		{name: "GET missing item ignores conditions", req: req{"GET", "/items/new", "", cond("If-None-Match", "*")}, status: 404, body: notFound},
		{name: "GET malformed If-None-Match", req: req{"GET", "/items/foo", "", cond("If-None-Match", "{foo}x")}, status: 400, body: malformed("If-None-Match")},
		{name: "HEAD If-None-Match current tag", req: req{"HEAD", "/items/foo", "", cond("If-None-Match", "{foo}")}, status: 304},
	})
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
	for _, kind := range storeKinds {
		for _, tt := range tests {
			t.Run(kind.name+"/"+tt.name, func(t *testing.T) {
				srv := newTestServer(t, NewServer(kind.open(t), quiet, testMaxBody, false, nil, nil))
				start := make(chan struct{})
				var wg sync.WaitGroup
				var mu sync.Mutex // guards counts
				counts := map[int]int{}
				for i := range clients {
					wg.Go(func() {
						<-start
						resp, _, err := send(srv, req{"PUT", "/items/race", `{"size":` + strconv.Itoa(i) + `}`, tt.header})
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						counts[resp.StatusCode]++
						mu.Unlock()
					})
				}
				close(start)
				wg.Wait()
				if want := map[int]int{http.StatusCreated: 1, tt.wantOthers: clients - 1}; !maps.Equal(counts, want) {
					t.Errorf("%d concurrent %s of one new id: statuses %v, want %v", clients, tt.name, counts, want)
				}
				if resp, _ := do(t, srv, req{"GET", "/items/race", "", nil}); resp.StatusCode != http.StatusOK {
					t.Errorf("GET /items/race after the race: status %d, want 200", resp.StatusCode)
				}
			})
		}
	}
}

// TestNoLostUpdates has many clients increment one item's size by
// read-modify-write with If-Match, retrying on 412: every increment counts.
func TestNoLostUpdates(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			srv := newTestServer(t, NewServer(kind.open(t), quiet, testMaxBody, false, nil, nil))
			const clients, increments = 8, 25
			var wg sync.WaitGroup
			for range clients {
				wg.Go(func() {
					for range increments {
						if err := increment(srv); err != nil {
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
		})
	}
}

// increment adds one to the size of foo, retrying until its If-Match write
// wins.
func increment(srv *httptest.Server) error {
	for {
		resp, body, err := send(srv, req{"GET", "/items/foo", "", nil})
		var it struct {
			Name string
			Size int
		}
		if err == nil {
			err = json.Unmarshal([]byte(body), &it)
		}
		if err != nil {
			return err
		}
		newBody, _ := json.Marshal(map[string]any{"name": it.Name, "size": it.Size + 1})
		resp, _, err = send(srv, req{"PUT", "/items/foo", string(newBody), cond("If-Match", resp.Header.Get("ETag"))})
		switch {
		case err != nil:
			return err
		case resp.StatusCode == http.StatusOK:
			return nil
		case resp.StatusCode != http.StatusPreconditionFailed: // on 412 someone else wrote first: read again
			return fmt.Errorf("PUT /items/foo: status %s", resp.Status)
		}
	}
}

func TestMatchTag(t *testing.T) {
	tests := []struct {
		field, tag        string
		weak, matched, ok bool
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

// TestSameNewIDTwice checks the upsert's two answers in sequence, and that
// the second write is the one stored.
func TestSameNewIDTwice(t *testing.T) {
	srv := newTestServer(t, nil)
	for i, want := range []int{http.StatusCreated, http.StatusOK} {
		if resp, body := do(t, srv, req{"PUT", "/items/twice", `{"size":` + strconv.Itoa(i) + `}`, jsonCT}); resp.StatusCode != want {
			t.Errorf("PUT /items/twice #%d: status = %d, want %d (body %s)", i+1, resp.StatusCode, want, body)
		}
	}
	if _, body := do(t, srv, req{"GET", "/items/twice", "", nil}); body != `{"name":null,"size":1}` {
		t.Errorf("GET /items/twice = %s, want the second write", body)
	}
}

// pagedStore returns a server on a store of the given ids, each holding
// {"name":null,"size":1}.
func pagedStore(t *testing.T, ids ...string) *httptest.Server {
	s := NewStore(false)
	for _, id := range ids {
		s.Put(id, []byte("null1"), nil)
	}
	return newTestServer(t, NewServer(s, quiet, testMaxBody, false, nil, nil))
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
	h := NewServer(bigStore(1000000), quiet, 1<<20, false, nil, nil)
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
		srv := httptest.NewServer(NewServer(bigStore(1000000), quiet, 1<<20, false, nil, nil))
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

// openAPI is the parsed document, with numbers kept as written.
type openAPI map[string]any

func loadOpenAPI(t *testing.T) openAPI {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(openAPIDoc))
	dec.UseNumber()
	var doc openAPI
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return doc
}

// resolve follows a local $ref, if v is one.
func (d openAPI) resolve(v any) map[string]any {
	m, _ := v.(map[string]any)
	ref, ok := m["$ref"].(string)
	if !ok {
		return m
	}
	var cur any = map[string]any(d)
	for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		cur = cur.(map[string]any)[part]
	}
	return d.resolve(cur)
}

// operations returns the document's path → method → operation.
func (d openAPI) operations() map[string]map[string]map[string]any {
	ops := map[string]map[string]map[string]any{}
	for path, item := range d["paths"].(map[string]any) {
		ops[path] = map[string]map[string]any{}
		for method, op := range item.(map[string]any) {
			if method != "parameters" && !strings.HasPrefix(method, "x-") {
				ops[path][strings.ToUpper(method)] = op.(map[string]any)
			}
		}
	}
	return ops
}

// notAllowed returns a path's x-method-not-allowed: its 405 answer.
func (d openAPI) notAllowed(path string) map[string]any {
	item := d["paths"].(map[string]any)[path].(map[string]any)
	return orEmpty(item["x-method-not-allowed"])
}

// TestOpenAPIRoutes checks that every route is in the document and every
// documented operation is served, and that each path documents the 405 that
// its other methods get. The docs pages are the exceptions: as in FastAPI,
// they are not part of the API.
func TestOpenAPIRoutes(t *testing.T) {
	undocumented := map[string]bool{"GET /docs": true, "GET /redoc": true}
	served := map[string]bool{} // "METHOD /path"
	cdn, _ := docs.AssetsFor(true, "")
	for _, rt := range routes(NewStore(false), 1, cdn) {
		served[rt.pattern] = true
	}
	for pattern := range undocumented {
		if !served[pattern] {
			t.Errorf("no route serves %q, an exception here", pattern)
		}
		delete(served, pattern)
	}
	doc := loadOpenAPI(t)
	ops := doc.operations()
	for pattern := range served {
		method, path, _ := strings.Cut(pattern, " ")
		if ops[path][method] == nil {
			t.Errorf("route %q: openapi.json has no %s %s", pattern, method, path)
		}
	}
	for path, methods := range ops {
		for method := range methods {
			if !served[method+" "+path] && !(method == "HEAD" && served["GET "+path]) { // the mux serves HEAD with GET
				t.Errorf("openapi.json documents %s %s, which no route serves", method, path)
			}
		}
		if len(doc.notAllowed(path)) == 0 {
			t.Errorf("openapi.json does not document the 405 answers of %s", path)
		}
	}
}

// example is one documented request and the answer it must get.
type example struct {
	name     string
	req      req
	docPath  string // the path as documented, with {id}
	status   int
	response map[string]any // the documented answer
}

// examples collects the document's examples, each with x-status and
// optionally x-id, x-query and x-headers: request-body examples, an operation's
// x-examples (with the body as text in x-body), and each path's
// x-method-not-allowed examples (with the method in x-method).
func (d openAPI) examples(t *testing.T) []example {
	var out []example
	add := func(path, method, name string, ex map[string]any, body []byte, responses map[string]any) {
		e := example{name: method + " " + path + " " + name, req: req{method, path, string(body), map[string]string{}}, docPath: path}
		if id, ok := ex["x-id"].(string); ok {
			e.req.path = strings.ReplaceAll(path, "{id}", id)
		}
		if query, ok := ex["x-query"].(string); ok {
			e.req.path += "?" + query
		}
		status, err := strconv.Atoi(fmt.Sprint(ex["x-status"]))
		if err != nil {
			t.Fatalf("example %s: x-status %v", e.name, ex["x-status"])
		}
		e.status, e.response = status, d.resolve(responses[strconv.Itoa(status)])
		if body != nil {
			e.req.header["Content-Type"] = "application/json"
		}
		for k, v := range orEmpty(ex["x-headers"]) {
			e.req.header[k] = v.(string)
		}
		out = append(out, e)
	}
	for path, methods := range d.operations() {
		for method, op := range methods {
			responses := op["responses"].(map[string]any)
			if rb, ok := op["requestBody"].(map[string]any); ok {
				media := rb["content"].(map[string]any)["application/json"].(map[string]any)
				for name, ex := range media["examples"].(map[string]any) {
					ex := ex.(map[string]any)
					body, _ := json.Marshal(ex["value"])
					add(path, method, name, ex, body, responses)
				}
			}
			for name, ex := range orEmpty(op["x-examples"]) {
				ex := ex.(map[string]any)
				var body []byte
				if text, ok := ex["x-body"].(string); ok {
					body = []byte(text)
				}
				add(path, method, name, ex, body, responses)
			}
		}
		na := d.notAllowed(path)
		for name, ex := range orEmpty(na["examples"]) {
			ex := ex.(map[string]any)
			add(path, ex["x-method"].(string), name, ex, nil, map[string]any{"405": na["response"]})
		}
	}
	return out
}

func orEmpty(v any) map[string]any {
	if m, ok := v.(map[string]any); ok {
		return m
	}
	return map[string]any{}
}

// TestOpenAPIExamples sends every documented example to the real handler
// and checks the documented status, headers and body schema.
func TestOpenAPIExamples(t *testing.T) {
	doc := loadOpenAPI(t)
	examples := doc.examples(t)
	if len(examples) < 20 {
		t.Fatalf("found only %d examples in openapi.json", len(examples))
	}
	statuses := map[int]bool{}
	for _, e := range examples {
		resp, body := do(t, newTestServer(t, nil), e.req)
		if resp.StatusCode != e.status {
			t.Errorf("%s: status = %d, want %d (%s)", e.name, resp.StatusCode, e.status, body)
			continue
		}
		statuses[e.status] = true
		documented := e.response
		if documented == nil {
			t.Errorf("%s: status %d is not documented", e.name, e.status)
			continue
		}
		for name, h := range orEmpty(documented["headers"]) {
			got := resp.Header.Get(name)
			if got == "" && doc.resolve(h)["required"] == true {
				t.Errorf("%s: documented header %s is missing", e.name, name)
			} else if err := doc.validate(doc.resolve(h)["schema"], got, name); err != nil {
				t.Errorf("%s: %v", e.name, err)
			}
		}
		if allow, ok := doc.notAllowed(e.docPath)["allow"].(string); ok && e.status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") != allow {
			t.Errorf("%s: Allow = %q, want %q as documented", e.name, resp.Header.Get("Allow"), allow)
		}
		media, ok := orEmpty(documented["content"])["application/json"].(map[string]any)
		if !ok || e.req.method == "HEAD" {
			if body != "" {
				t.Errorf("%s: undocumented body %s", e.name, body)
			}
			continue
		}
		dec := json.NewDecoder(strings.NewReader(body))
		dec.UseNumber()
		var value any
		if err := dec.Decode(&value); err != nil {
			t.Errorf("%s: body is not JSON: %v", e.name, err)
			continue
		}
		if err := doc.validate(media["schema"], value, "body"); err != nil {
			t.Errorf("%s: %v", e.name, err)
		}
	}
	for _, s := range []int{200, 201, 204, 304, 400, 404, 405, 412, 415, 422} {
		if !statuses[s] {
			t.Errorf("no documented example gets status %d", s)
		}
	}
}

// validate checks v against the JSON Schema subset openapi.json uses.
func (d openAPI) validate(schemaV, v any, at string) error {
	s := d.resolve(schemaV)
	if types, ok := s["type"]; ok {
		allowed := fmt.Sprint(types) // "string", or a list: "[integer null]"
		if t := jsonType(v); !slices.Contains(strings.Fields(strings.Trim(allowed, "[]")), t) && !(t == "integer" && strings.Contains(allowed, "number")) {
			return fmt.Errorf("%s: %v is %s, want %v", at, v, t, allowed)
		}
	}
	if c, ok := s["const"]; ok && fmt.Sprint(c) != fmt.Sprint(v) {
		return fmt.Errorf("%s: %v, want %v", at, v, c)
	}
	if enum, ok := s["enum"].([]any); ok && !slices.ContainsFunc(enum, func(e any) bool { return fmt.Sprint(e) == fmt.Sprint(v) }) {
		return fmt.Errorf("%s: %v is not one of %v", at, v, enum)
	}
	if p, ok := s["pattern"].(string); ok {
		if str, _ := v.(string); !regexp.MustCompile(p).MatchString(str) {
			return fmt.Errorf("%s: %q does not match %s", at, str, p)
		}
	}
	switch v := v.(type) {
	case map[string]any:
		required, _ := s["required"].([]any)
		for _, r := range required {
			if _, ok := v[r.(string)]; !ok {
				return fmt.Errorf("%s: missing %s", at, r)
			}
		}
		for k, val := range v {
			sub, ok := orEmpty(s["properties"])[k]
			if !ok {
				sub = s["additionalProperties"] // true or absent: anything goes
				if sub == false {
					return fmt.Errorf("%s: unexpected property %s", at, k)
				}
			}
			if err := d.validate(sub, val, at+"."+k); err != nil {
				return err
			}
		}
	case []any:
		if min, ok := s["minItems"].(json.Number); ok {
			if n, _ := strconv.Atoi(string(min)); len(v) < n {
				return fmt.Errorf("%s: %d items, want at least %d", at, len(v), n)
			}
		}
		if items, ok := s["items"]; ok {
			for i, el := range v {
				if err := d.validate(items, el, fmt.Sprintf("%s[%d]", at, i)); err != nil {
					return err
				}
			}
		}
	case json.Number:
		n, _ := new(big.Rat).SetString(string(v))
		for key, cmp := range map[string]int{"minimum": -1, "maximum": 1} {
			if bound, ok := s[key].(json.Number); ok {
				b, _ := new(big.Rat).SetString(string(bound))
				if n.Cmp(b) == cmp {
					return fmt.Errorf("%s: %s is beyond %s %s", at, v, key, bound)
				}
			}
		}
	}
	return nil
}

// jsonType names v's JSON Schema type.
func jsonType(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		if r, ok := new(big.Rat).SetString(string(v)); ok && r.IsInt() {
			return "integer"
		}
		return "number"
	case []any:
		return "array"
	}
	return "object"
}

// TestDocsInBrowser loads /docs and /redoc in headless Chromium, with Swagger
// UI and ReDoc served from $DOCS_ASSETS_DIR through -docs-assets, checks what
// the pages show and log, and writes a screenshot of each into
// $DOCS_SCREENSHOTS. make browser-test sets both; make test skips it, and
// needs no browser.
func TestDocsInBrowser(t *testing.T) {
	dir, shots := os.Getenv("DOCS_ASSETS_DIR"), os.Getenv("DOCS_SCREENSHOTS")
	if dir == "" || shots == "" {
		t.Skip("DOCS_ASSETS_DIR and DOCS_SCREENSHOTS are unset: make browser-test runs this")
	}
	assets := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer assets.Close()
	pages, err := docs.AssetsFor(true, assets.URL)
	if err != nil {
		t.Fatal(err)
	}
	srv := newTestServer(t, NewServer(NewStore(true), quiet, testMaxBody, false, pages, nil))
	// The condition headers' descriptions open with the wildcard, which
	// Markdown would take for a list item if it were not code.
	wildcards := []string{"<code>*</code> (the item must exist)", "<code>*</code> (the item must not exist: create only)"}
	tests := []struct {
		name, page string
		wants      []string // in the page as rendered
		blocked    string   // what the policy may be seen to block
	}{
		// The fragment opens the PUT operation, with its responses.
		{"docs", "/docs#/default/putItem", append([]string{`opblock-summary-method">PUT<`, `parameter__name required">id<`,
			`response-col_status">200<`, `response-col_status">201<`}, wildcards...), ""},
		// ReDoc's side menu shows a logo from its own CDN, which the policy stops.
		{"redoc", "/redoc", append([]string{`operation-type put">put<`, `>200</li>`, `>201</li>`}, wildcards...), "Loading the image 'https://cdn.redoc.ly/redoc/logo-mini.svg' violates"},
	}
	for _, tt := range tests {
		dom, console := chromium(t, srv.URL+tt.page, "--dump-dom")
		for _, want := range tt.wants {
			if !strings.Contains(dom, want) {
				t.Errorf("%s: the page has no %s", tt.page, want)
			}
		}
		for _, line := range console {
			if tt.blocked == "" || !strings.Contains(line, tt.blocked) {
				t.Errorf("%s: the console says %s", tt.page, line)
			}
		}
		png := filepath.Join(shots, tt.name+".png")
		chromium(t, srv.URL+tt.page, "--screenshot="+png, "--window-size=1280,2400")
		if info, err := os.Stat(png); err != nil || info.Size() < 10000 {
			t.Errorf("%s: no screenshot in %s: %v", tt.page, png, err)
		}
	}
}

// corsPage is a browser app on another origin than the API's, which it
// takes from ?api=: it creates an item, reads its tag, writes with it and
// with a stale one, and walks a page by its Link, writing each result as a
// line of the page.
const corsPage = `<!doctype html><meta charset="utf-8"><pre id="out"></pre><script>
const api = new URLSearchParams(location.search).get("api");
const log = line => document.getElementById("out").textContent += line + "\n";
const put = (body, headers) => fetch(api + "/items/b1", {method: "PUT", body: JSON.stringify(body), headers: {"Content-Type": "application/json", ...headers}});
(async () => {
  log("create " + (await put({name: "x"})).status);
  const got = await fetch(api + "/items/b1"), tag = got.headers.get("ETag");
  log("get " + got.status + (tag ? " with its ETag" : " without ETag"));
  log("If-Match " + (await put({name: "y"}, {"If-Match": tag})).status);
  const stale = await put({name: "z"}, {"If-Match": tag});
  log("stale If-Match " + stale.status + " " + (await stale.json()).detail);
  const link = (await fetch(api + "/items?limit=1")).headers.get("Link");
  const next = await fetch(new URL(link.slice(1, link.indexOf(">")), api));
  log("next page " + Object.keys(await next.json()));
})().catch(err => log("rejected: " + err.name));
</script>`

// TestCORSInBrowser runs corsPage in headless Chromium against a server
// that allows the page's origin, and from an origin it does not allow, where
// the browser must block the first fetch and nothing may be written. make
// browser-test runs it; make test skips it.
func TestCORSInBrowser(t *testing.T) {
	if os.Getenv("BROWSER_TEST") == "" {
		t.Skip("BROWSER_TEST is unset: make browser-test runs this")
	}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, corsPage) }))
	defer app.Close()
	tests := []struct {
		name, page string // the page's URL: app's own origin, or localhost for the same server
		want       string
		console    string // a console line expected, if any: none other may appear
	}{
		{"allowed", app.URL, "create 201\nget 200 with its ETag\nIf-Match 200\nstale If-Match 412 Precondition Failed\nnext page bar\n", ""},
		{"not allowed", strings.Replace(app.URL, "127.0.0.1", "localhost", 1), "rejected: TypeError\n", "has been blocked by CORS policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := NewStore(true)
			api := newTestServer(t, NewServer(store, quiet, testMaxBody, false, nil, corsOrigins{app.URL: app.URL}))
			dom, console := chromium(t, tt.page+"/?api="+url.QueryEscape(api.URL), "--dump-dom")
			if _, out, _ := strings.Cut(dom, `<pre id="out">`); !strings.HasPrefix(out, tt.want+"</pre>") {
				t.Errorf("the page wrote %.300q, want %q", out, tt.want)
			}
			for _, line := range console {
				if tt.console == "" || !strings.Contains(line, tt.console) {
					t.Errorf("the console says %s", line)
				}
			}
			if tt.console != "" && len(console) == 0 {
				t.Errorf("the console is silent, want %q", tt.console)
			}
			if _, ok := store.Get("b1"); ok != (tt.name == "allowed") {
				t.Errorf("b1 stored: %v, want %v", ok, !ok)
			}
		})
	}
}

// chromium runs headless Chromium on url with args, and returns what it
// printed and the console messages of the page.
func chromium(t *testing.T, url string, args ...string) (out string, console []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	args = append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
		"--virtual-time-budget=15000"}, append(args, url)...)
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "chromium", args...)
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %s: %v\n%s", url, err, stderr.String())
	}
	for line := range strings.Lines(stderr.String()) {
		if strings.Contains(line, ":CONSOLE") {
			console = append(console, line)
		}
	}
	return string(b), console
}

// TestDocsPages checks the pages' answers, from FastAPI's CDN and from
// self-hosted assets: HTML for GET and HEAD, under a policy that lets
// scripts and styles come only from the assets' origin, plus the page's own
// inline script by its hash; the JSON 405 for other methods; and the JSON
// 404 once they are turned off.
func TestDocsPages(t *testing.T) {
	for _, tt := range []struct{ base, origin string }{
		{"", "https://cdn.jsdelivr.net"},
		{"http://assets.example:8080/static/", "http://assets.example:8080"},
	} {
		pages, err := docs.AssetsFor(true, tt.base)
		if err != nil {
			t.Fatal(err)
		}
		srv := newTestServer(t, NewServer(NewStore(true), quiet, testMaxBody, false, pages, nil))
		for _, path := range []string{"/docs", "/redoc"} {
			_, page := do(t, srv, req{"GET", path, "", nil})
			for _, method := range []string{"GET", "HEAD"} {
				resp, _ := do(t, srv, req{method, path, "", nil})
				csp := resp.Header.Get("Content-Security-Policy")
				if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" || !strings.HasPrefix(csp, "default-src 'none';") {
					t.Errorf("%s %s (assets %q): %d, %q, policy %q", method, path, tt.base, resp.StatusCode, resp.Header.Get("Content-Type"), csp)
				}
				checkSources(t, csp, tt.origin, page)
			}
			if !strings.Contains(page, `"`+tt.origin+"/") || !strings.Contains(page, `"/openapi.json"`) {
				t.Errorf("GET %s (assets %q) loads nothing from %s, or not /openapi.json:\n%s", path, tt.base, tt.origin, page)
			}
			if resp, body := do(t, srv, req{"POST", path, "", nil}); resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" || body != detail("Method Not Allowed") {
				t.Errorf("POST %s: %d, Allow %q, %s", path, resp.StatusCode, resp.Header.Get("Allow"), body)
			}
		}
	}
	checkContract(t, []contractCase{ // -docs=false
		{name: "docs off", req: req{"GET", "/docs", "", nil}, status: 404, body: detail("Not Found")},
		{name: "redoc off", req: req{"GET", "/redoc", "", nil}, status: 404, body: detail("Not Found")},
	})
}

// checkSources fails the test unless every source that csp allows scripts
// and styles from is origin, the hash of one of page's inline scripts, or,
// for styles, 'unsafe-inline'; and unless each inline script is allowed.
func checkSources(t *testing.T, csp, origin, page string) {
	t.Helper()
	hashes := map[string]bool{}
	for _, m := range regexp.MustCompile(`<script>([^<]*)</script>`).FindAllStringSubmatch(page, -1) {
		sum := sha256.Sum256([]byte(m[1]))
		hashes["'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'"] = true
	}
	for directive := range strings.SplitSeq(csp, ";") {
		fields := strings.Fields(directive)
		for _, src := range fields[1:] {
			ok := src == origin || hashes[src] || fields[0] == "style-src" && src == "'unsafe-inline'"
			if (fields[0] == "script-src" || fields[0] == "style-src") && !ok {
				t.Errorf("the policy allows %s from %s: %s", fields[0], src, csp)
			}
		}
	}
	for hash := range hashes {
		if !strings.Contains(csp, hash) {
			t.Errorf("the policy blocks the page's inline script %s: %s", hash, csp)
		}
	}
}
