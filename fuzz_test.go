package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"maps"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzHandler sends arbitrary requests through the real handler and checks
// the invariants every answer keeps: no 5xx; every body is JSON of the
// documented shape for its status; a successful PUT reads back exactly as
// answered; a refusal changes nothing; and the decoder agrees with a plain
// encoding/json reading of the same rules.
func FuzzHandler(f *testing.F) {
	tag := entityTag([]byte(seedItems["foo"]))
	for _, s := range [][6]string{
		{"PUT", "foo", "application/json", "", "", `{"name":"x","size":1}`},
		{"PUT", "new", "", "", "*", `{"name":"x","size":6.0}`},
		{"PUT", "foo", "application/json", tag, "", `{"size":1e3,"name":null}`},
		{"PUT", "foo", "application/json", `W/` + tag, "", `{}`},
		{"PUT", "foo", "application/merge-patch+json; charset=utf-8", "", `"a", ` + tag, `null`},
		{"PUT", "foo", "text/plain", "", "", `{"name":"x"}`},
		{"PUT", "é/x", "application/json", "", "", `{"name":"\ud800\"","size":-0.0e5}`},
		{"PUT", "foo", "application/json", "", "", `{"name":"x"} x`},
		{"PUT", "foo", "application/json", "", "", `{"size":"6","name":1,"size":[{"}":"]"}]}`},
		{"PUT", "foo", "application/json", "", "", "{\"name\":\"\xff\"}"},
		{"PUT", "foo", "application/json", "", "", `{"size":123456789012345678901234567890e-20}`},
		{"GET", "foo", "", "", tag, ""},
		{"GET", "foo", "", `"x"`, "", ""},
		{"HEAD", "bar", "", "", "*", ""},
		{"DELETE", "foo", "", tag, "", ""},
		{"DELETE", "nope", "", "*", "", ""},
		{"POST", "foo", "application/x-www-form-urlencoded", "", "", "name=x"},
		{"PUT", strings.Repeat("i", maxIDLen+1), "", "", "", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4], s[5])
	}
	f.Fuzz(func(t *testing.T, method, id, contentType, ifMatch, ifNoneMatch, body string) {
		store := NewStore(true)
		h := NewServer(store, slog.New(slog.DiscardHandler), testMaxBody, false)
		r, err := http.NewRequest(method, "http://itemsvc/items/"+url.PathEscape(id), strings.NewReader(body))
		if err != nil {
			return // not a method net/http would accept from the wire either
		}
		for k, v := range map[string]string{"Content-Type": contentType, "If-Match": ifMatch, "If-None-Match": ifNoneMatch} {
			if v != "" {
				r.Header.Set(k, v)
			}
		}
		before := contents(store)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		resp, got := w.Result(), w.Body.String()
		call := method + " /items/" + url.PathEscape(id)

		switch {
		case resp.StatusCode >= 500:
			t.Fatalf("%s: status %d: %s", call, resp.StatusCode, got)
		case resp.StatusCode >= 400:
			checkErrorBody(t, call, resp, got)
			if after := contents(store); !maps.Equal(after, before) {
				t.Fatalf("%s: refused with %d but the store changed: %v", call, resp.StatusCode, after)
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
		if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated {
			rg, _ := http.NewRequest("GET", r.URL.String(), nil)
			wg := httptest.NewRecorder()
			h.ServeHTTP(wg, rg)
			if wg.Code != http.StatusOK || wg.Body.String() != got {
				t.Fatalf("%s answered %s, but GET answers %d %s", call, got, wg.Code, wg.Body.String())
			}
		}
		want, accept, sure := referenceDecode([]byte(body))
		switch {
		case !sure:
		case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated:
			if !accept {
				t.Fatalf("%s %q: stored %s, but encoding/json says the body must be refused", call, body, got)
			}
			if !sameItem(got, want) {
				t.Fatalf("%s %q: stored %s, but encoding/json reads %s", call, body, got, want)
			}
		case resp.StatusCode == http.StatusUnprocessableEntity && strings.Contains(got, `"loc":["body"`):
			if accept {
				t.Fatalf("%s %q: refused with %s, but encoding/json reads it as %s", call, body, got, want)
			}
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

// referenceDecode reads a PUT body by the documented rules with plain
// encoding/json, for comparison with decodeItem. It returns the item's JSON
// and whether the body is acceptable; sure is false when the reference
// cannot decide (a number big.Rat refuses to expand).
func referenceDecode(body []byte) (item string, accept, sure bool) {
	var it struct {
		Name *string `json:"name"`
		Size *int64  `json:"size"`
	}
	if len(body) > 0 {
		if !utf8.Valid(body) {
			return "", false, true
		}
		var v any
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil || dec.More() || json.Unmarshal(body, new(any)) != nil {
			return "", false, true // malformed, or trailing data
		}
		if v != nil {
			obj, isObj := v.(map[string]any)
			if !isObj {
				return "", false, true
			}
			switch name := obj["name"].(type) {
			case nil:
			case string:
				it.Name = &name
			default:
				return "", false, true
			}
			switch size := obj["size"].(type) {
			case nil:
			case json.Number:
				r, ok := exactNumber(string(size))
				if !ok {
					return "", false, false
				}
				if !r.IsInt() || !r.Num().IsInt64() {
					return "", false, true
				}
				n := r.Num().Int64()
				it.Size = &n
			default:
				return "", false, true
			}
		}
	}
	b, _ := json.Marshal(it)
	return string(b), true, true
}

// sameItem reports whether two item JSON texts hold the same values.
func sameItem(a, b string) bool {
	type item struct {
		Name *string
		Size *int64
	}
	var x, y item
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return (x.Name == nil) == (y.Name == nil) && (x.Name == nil || *x.Name == *y.Name) &&
		(x.Size == nil) == (y.Size == nil) && (x.Size == nil || *x.Size == *y.Size)
}

// exactNumber returns the JSON number num as an exact rational, unless its
// exponent is so large that big.Rat would take seconds (or refuse) to
// expand it; TestParseJSONInt covers those.
func exactNumber(num string) (*big.Rat, bool) {
	if i := strings.IndexAny(num, "eE"); i >= 0 {
		if exp, err := strconv.Atoi(strings.TrimLeft(num[i+1:], "+")); err != nil || exp > 1000 || exp < -1000 {
			return nil, false
		}
	}
	return new(big.Rat).SetString(num)
}

// FuzzCleanPath checks isCleanPath against the mux it stands in front of:
// a path is clean exactly when a ServeMux serves it rather than redirecting.
func FuzzCleanPath(f *testing.F) {
	for _, p := range []string{"", "/", "//", "/items", "/items/", "/items//", "/items/foo",
		"/items/.", "/items/..", "/items/./foo", "/items/../foo", "/items/...", "/items/.x",
		"/items/foo/.", "items/foo", "*", "/a//b", "/./", "/../"} {
		f.Add(p)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(http.ResponseWriter, *http.Request) {})
	f.Fuzz(func(t *testing.T, p string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.URL.Path, r.URL.RawPath = p, ""
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		if served := w.Code == http.StatusOK; isCleanPath(p) != served {
			t.Fatalf("isCleanPath(%q) = %v, but the mux answers %d", p, isCleanPath(p), w.Code)
		}
	})
}
