package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"itemsvc/internal/docs"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

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
	srv := newTestServer(t, NewServer(NewStore(true), quiet, testMaxBody, false, pages))
	tests := []struct {
		name, page string
		wants      []string // in the page as rendered
		blocked    string   // what the policy may be seen to block
	}{
		// The fragment opens the PUT operation, with its responses.
		{"docs", "/docs#/default/putItem", []string{`opblock-summary-method">PUT<`, `parameter__name required">id<`,
			`response-col_status">200<`, `response-col_status">201<`}, ""},
		// ReDoc's side menu shows a logo from its own CDN, which the policy stops.
		{"redoc", "/redoc", []string{`operation-type put">put<`, `>200</li>`, `>201</li>`}, "Loading the image 'https://cdn.redoc.ly/redoc/logo-mini.svg' violates"},
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
		srv := newTestServer(t, NewServer(NewStore(true), quiet, testMaxBody, false, pages))
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
