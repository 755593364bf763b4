package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
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
				srv := newTestServer(t, NewServer(kind.open(t), quiet, testMaxBody, false, nil))
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
			srv := newTestServer(t, NewServer(kind.open(t), quiet, testMaxBody, false, nil))
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
