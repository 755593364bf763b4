package main

import (
	"encoding/json"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
)

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
	newFoo := with(map[string]string{"foo": `{"name":"x","size":null}`})
	tests := []struct {
		name       string
		req        req
		wantStatus int
		wantStore  map[string]string
	}{
		// PUT
		{"create-only on a new id", req{"PUT", "/items/new", `{"name":"x"}`, cond("If-None-Match", "*")},
			201, with(map[string]string{"new": `{"name":"x","size":null}`})},
		{"create-only on an existing id", req{"PUT", "/items/foo", `{"name":"x"}`, cond("If-None-Match", "*")}, 412, seeded},
		{"update-only on an existing id", req{"PUT", "/items/foo", `{"name":"x"}`, cond("If-Match", "*")}, 200, newFoo},
		{"update-only on a new id", req{"PUT", "/items/new", `{"name":"x"}`, cond("If-Match", "*")}, 412, seeded},
		{"If-Match current tag", req{"PUT", "/items/foo", `{"name":"x"}`, cond("If-Match", "{foo}")}, 200, newFoo},
		{"If-Match stale tag", req{"PUT", "/items/foo", `{"name":"x"}`, cond("If-Match", `"stale"`)}, 412, seeded},
		{"If-Match list holding the tag", req{"PUT", "/items/foo", `{"name":"x"}`, cond("If-Match", `"a", {foo} ,"b"`)}, 200, newFoo},
		{"If-Match list of empty elements", req{"PUT", "/items/foo", `{"name":"x"}`, cond("If-Match", ` , ,`)}, 412, seeded},
		{"If-Match weak tag never matches", req{"PUT", "/items/foo", `{"name":"x"}`, cond("If-Match", "W/{foo}")}, 412, seeded},
		{"If-Match tag of a missing item", req{"PUT", "/items/new", `{"name":"x"}`, cond("If-Match", "{foo}")}, 412, seeded},
		{"If-None-Match current tag", req{"PUT", "/items/foo", `{"name":"x"}`, cond("If-None-Match", "{foo}")}, 412, seeded},
		{"If-None-Match weak form of current tag", req{"PUT", "/items/foo", `{"name":"x"}`, cond("If-None-Match", "W/{foo}")}, 412, seeded},
		{"If-None-Match other tag", req{"PUT", "/items/foo", `{"name":"x"}`, cond("If-None-Match", `"other"`)}, 200, newFoo},
		{"If-Match passes, If-None-Match fails", req{"PUT", "/items/foo", `{"name":"x"}`, cond("If-Match", "{foo}", "If-None-Match", "{foo}")}, 412, seeded},
		{"failed precondition wins over a bad body", req{"PUT", "/items/foo", `{"size":"x"}`, cond("If-Match", `"stale"`)}, 412, seeded},
		{"bad body with a passing precondition", req{"PUT", "/items/foo", `{"size":"x"}`, cond("If-Match", "{foo}")}, 422, seeded},
		{"unquoted tag", req{"PUT", "/items/foo", `{"name":"x"}`, cond("If-Match", "abc")}, 400, seeded},
		{"junk after a tag", req{"PUT", "/items/foo", `{"name":"x"}`, cond("If-Match", `"a" b`)}, 400, seeded},
		{"unterminated tag", req{"PUT", "/items/foo", `{"name":"x"}`, cond("If-None-Match", `"a`)}, 400, seeded},
		{"star in a list", req{"PUT", "/items/foo", `{"name":"x"}`, cond("If-None-Match", `*, "a"`)}, 400, seeded},
		{"space inside a tag", req{"PUT", "/items/foo", `{"name":"x"}`, cond("If-Match", `"a b"`)}, 400, seeded},
		// DELETE
		{"DELETE If-Match current tag", req{"DELETE", "/items/foo", "", cond("If-Match", "{foo}")}, 204, with(map[string]string{"foo": ""})},
		{"DELETE If-Match star", req{"DELETE", "/items/foo", "", cond("If-Match", "*")}, 204, with(map[string]string{"foo": ""})},
		{"DELETE If-Match stale tag", req{"DELETE", "/items/foo", "", cond("If-Match", `"stale"`)}, 412, seeded},
		{"DELETE missing item ignores conditions", req{"DELETE", "/items/new", "", cond("If-Match", "*")}, 404, seeded},
		{"DELETE malformed If-Match", req{"DELETE", "/items/foo", "", cond("If-Match", "W/")}, 400, seeded},
		// GET and HEAD
		{"GET If-None-Match current tag", req{"GET", "/items/foo", "", cond("If-None-Match", "{foo}")}, 304, seeded},
		{"GET If-None-Match weak form", req{"GET", "/items/foo", "", cond("If-None-Match", "W/{foo}")}, 304, seeded},
		{"GET If-None-Match star", req{"GET", "/items/foo", "", cond("If-None-Match", "*")}, 304, seeded},
		{"GET If-None-Match other tag", req{"GET", "/items/foo", "", cond("If-None-Match", `"other"`)}, 200, seeded},
		{"GET If-Match stale tag", req{"GET", "/items/foo", "", cond("If-Match", `"stale"`)}, 412, seeded},
		{"GET missing item ignores conditions", req{"GET", "/items/new", "", cond("If-None-Match", "*")}, 404, seeded},
		{"GET malformed If-None-Match", req{"GET", "/items/foo", "", cond("If-None-Match", "{foo}x")}, 400, seeded},
		{"HEAD If-None-Match current tag", req{"HEAD", "/items/foo", "", cond("If-None-Match", "{foo}")}, 304, seeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, store := newTestServer(t)
			resp, body := do(t, srv, tt.req)
			call := tt.req.method + " " + tt.req.path + " " + tt.req.body + " " + strings.Join(headerLines(tt.req.header), " ")
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("%s: status = %d, want %d (body %s)", call, resp.StatusCode, tt.wantStatus, body)
			}
			switch tt.wantStatus {
			case http.StatusNotModified:
				if body != "" || resp.Header.Get("ETag") != fooTag {
					t.Errorf("%s: 304 with body %q and ETag %q, want no body and ETag %s", call, body, resp.Header.Get("ETag"), fooTag)
				}
			case http.StatusPreconditionFailed:
				if body != `{"detail":"Precondition Failed"}` {
					t.Errorf("%s: body = %s, want {\"detail\":\"Precondition Failed\"}", call, body)
				}
			case http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusNotFound:
				checkErrorBody(t, call, resp, body)
			}
			if got := contents(store); !maps.Equal(got, tt.wantStore) {
				t.Errorf("%s: store = %v, want %v", call, got, tt.wantStore)
			}
		})
	}
}

// headerLines lists the headers of h other than Content-Type, for messages.
func headerLines(h map[string]string) []string {
	var lines []string
	for k, v := range h {
		if k != "Content-Type" {
			lines = append(lines, k+": "+v)
		}
	}
	return lines
}

// TestETag checks what the entity tag is tied to: the item's stored
// representation, and nothing else.
func TestETag(t *testing.T) {
	srv, _ := newTestServer(t)
	get := func() string {
		t.Helper()
		resp, _ := do(t, srv, req{"GET", "/items/foo", "", nil})
		tag := resp.Header.Get("ETag")
		if _, ok := matchTag(tag, tag, false); !ok || strings.HasPrefix(tag, "W/") {
			t.Fatalf("GET /items/foo: ETag %q is not a strong entity tag", tag)
		}
		return tag
	}
	first := get()
	if first != fooTag {
		t.Errorf("ETag of foo = %s, want %s", first, fooTag)
	}
	put := func(body string) {
		t.Helper()
		resp, _ := do(t, srv, req{"PUT", "/items/foo", body, jsonCT})
		if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") != "" {
			t.Fatalf("PUT /items/foo %s: status %d, ETag %q; want 200 and no ETag", body, resp.StatusCode, resp.Header.Get("ETag"))
		}
	}
	put(`{"name":"Fighters","size":7}`)
	if changed := get(); changed == first {
		t.Errorf("ETag stayed %s after foo changed", changed)
	}
	put(` { "size" : 6, "name" : "Fighters" } `)
	if back := get(); back != first {
		t.Errorf("ETag = %s after foo got its first representation back, want %s", back, first)
	}
	resp, _ := do(t, srv, req{"HEAD", "/items/foo", "", nil})
	if got := resp.Header.Get("ETag"); got != first {
		t.Errorf("HEAD /items/foo: ETag = %q, want %s", got, first)
	}
}

// TestCreateOnlyRace has many clients create one id with If-None-Match: *
// at once: exactly one wins.
func TestCreateOnlyRace(t *testing.T) {
	srv, store := newTestServer(t)
	const clients = 50
	counts := concurrentPUTs(t, srv, "/items/once", clients, map[string]string{"If-None-Match": "*"})
	if counts[http.StatusCreated] != 1 || counts[http.StatusPreconditionFailed] != clients-1 {
		t.Errorf("%d create-only PUTs of one id: statuses %v, want one 201 and %d 412", clients, counts, clients-1)
	}
	if _, ok := store.Get(nil, "once"); !ok {
		t.Error("the item is not stored")
	}
}

// TestNoLostUpdates has many clients increment one item's size by
// read-modify-write with If-Match, retrying on 412: every increment counts.
func TestNoLostUpdates(t *testing.T) {
	srv, store := newTestServer(t)
	const clients, increments = 8, 25
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range increments {
				if err := increment(srv.Client(), srv.URL+"/items/foo"); err != "" {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	want := `"Fighters"` + strconv.Itoa(6+clients*increments)
	if got, _ := store.Get(nil, "foo"); string(got) != want {
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
		resp, err = c.Do(r)
		if err != nil {
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
