package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
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
			if method != "parameters" {
				ops[path][strings.ToUpper(method)] = op.(map[string]any)
			}
		}
	}
	return ops
}

func TestOpenAPIServed(t *testing.T) {
	srv, _ := newTestServer(t)
	resp, body := do(t, srv, req{"GET", "/openapi.json", "", nil})
	file, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || body != string(file) || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("GET /openapi.json: %d %s, %d bytes; want 200 application/json with openapi.json",
			resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
}

// routePattern finds the mux patterns in NewServer's route list.
var routePattern = regexp.MustCompile(`mux\.Handle\("([^"]+)"`)

// TestOpenAPIRoutes checks that every route the mux serves is in the
// document and every documented operation is served.
func TestOpenAPIRoutes(t *testing.T) {
	src, err := os.ReadFile("handler.go")
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{} // "METHOD /path", or "/path" for a 405 catcher
	for _, m := range routePattern.FindAllSubmatch(src, -1) {
		served[string(m[1])] = true
	}
	ops := loadOpenAPI(t).operations()
	for pattern := range served {
		method, path, hasMethod := strings.Cut(pattern, " ")
		if !hasMethod {
			path = method
		}
		if path == "/" {
			continue // the catch-all 404
		}
		if _, ok := ops[path]; !ok {
			t.Errorf("route %q is not in openapi.json", pattern)
		} else if hasMethod && ops[path][method] == nil {
			t.Errorf("route %q: openapi.json has no %s %s", pattern, method, path)
		}
	}
	for path, methods := range ops {
		for method, op := range methods {
			_, documents405 := op["responses"].(map[string]any)["405"]
			switch {
			case served[method+" "+path]:
			case method == "HEAD" && served["GET "+path]: // the mux serves HEAD with GET
			case documents405 && served[path]:
			default:
				t.Errorf("openapi.json documents %s %s, which no route serves", method, path)
			}
		}
	}
}

// example is one documented request and the status it must get.
type example struct {
	name, method, path string
	docPath            string // the path as documented, with {id}
	body               []byte
	header             map[string]string
	status             int
}

// examples collects the document's examples: request-body examples and an
// operation's x-examples, each with x-status and optionally x-id and
// x-headers.
func (d openAPI) examples(t *testing.T) []example {
	var out []example
	for path, methods := range d.operations() {
		for method, op := range methods {
			add := func(name string, ex map[string]any, body []byte) {
				e := example{name: method + " " + path + " " + name, method: method, path: path, docPath: path, body: body, header: map[string]string{}}
				if id, ok := ex["x-id"].(string); ok {
					e.path = strings.ReplaceAll(path, "{id}", id)
				}
				status, err := strconv.Atoi(fmt.Sprint(ex["x-status"]))
				if err != nil {
					t.Fatalf("example %s: x-status %v", e.name, ex["x-status"])
				}
				e.status = status
				if body != nil {
					e.header["Content-Type"] = "application/json"
				}
				for k, v := range ex["x-headers"].(map[string]any) {
					e.header[k] = v.(string)
				}
				out = append(out, e)
			}
			if rb, ok := op["requestBody"].(map[string]any); ok {
				media := rb["content"].(map[string]any)["application/json"].(map[string]any)
				for name, ex := range media["examples"].(map[string]any) {
					ex := ex.(map[string]any)
					body, _ := json.Marshal(ex["value"])
					ex["x-headers"] = orEmpty(ex["x-headers"])
					add(name, ex, body)
				}
			}
			for name, ex := range orEmpty(op["x-examples"]) {
				ex := ex.(map[string]any)
				ex["x-headers"] = orEmpty(ex["x-headers"])
				add(name, ex, nil)
			}
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
		h := NewServer(NewStore(true), slog.New(slog.DiscardHandler), testMaxBody, false)
		r := httptest.NewRequest(e.method, e.path, bytes.NewReader(e.body))
		for k, v := range e.header {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != e.status {
			t.Errorf("%s: status = %d, want %d (%s)", e.name, w.Code, e.status, w.Body)
			continue
		}
		statuses[e.status] = true
		op := doc.operations()[e.docPath][e.method]
		resp := doc.resolve(op["responses"].(map[string]any)[strconv.Itoa(e.status)])
		if resp == nil {
			t.Errorf("%s: status %d is not documented", e.name, e.status)
			continue
		}
		for name := range orEmpty(resp["headers"]) {
			if w.Header().Get(name) == "" {
				t.Errorf("%s: documented header %s is missing", e.name, name)
			}
		}
		media, ok := orEmpty(resp["content"])["application/json"].(map[string]any)
		if !ok || e.method == "HEAD" {
			if w.Body.Len() > 0 && e.method != "HEAD" {
				t.Errorf("%s: undocumented body %s", e.name, w.Body)
			}
			continue
		}
		dec := json.NewDecoder(w.Body)
		dec.UseNumber()
		var body any
		if err := dec.Decode(&body); err != nil {
			t.Errorf("%s: body is not JSON: %v", e.name, err)
			continue
		}
		if err := doc.validate(media["schema"], body, "body"); err != nil {
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
		var allowed []string
		switch ts := types.(type) {
		case string:
			allowed = []string{ts}
		case []any:
			for _, t := range ts {
				allowed = append(allowed, t.(string))
			}
		}
		if !slices.Contains(allowed, jsonType(v)) && !(jsonType(v) == "integer" && slices.Contains(allowed, "number")) {
			return fmt.Errorf("%s: %v is %s, want %v", at, v, jsonType(v), allowed)
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
		props := orEmpty(s["properties"])
		for _, r := range orAnyList(s["required"]) {
			if _, ok := v[r.(string)]; !ok {
				return fmt.Errorf("%s: missing %s", at, r)
			}
		}
		for k, val := range v {
			sub, ok := props[k]
			if !ok {
				switch ap := s["additionalProperties"].(type) {
				case bool:
					if !ap {
						return fmt.Errorf("%s: unexpected property %s", at, k)
					}
					continue
				case nil:
					continue
				default:
					sub = ap
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

func orAnyList(v any) []any {
	l, _ := v.([]any)
	return l
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
	default:
		return "object"
	}
}
