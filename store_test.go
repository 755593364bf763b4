package main

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestStoreCopies checks that the store shares no memory with its callers:
// it copies what Put is given and what Get returns. What its methods report
// is held to a map by TestStoreMatchesMap, and through HTTP by the handler's
// tests.
func TestStoreCopies(t *testing.T) {
	s := NewStore(false)
	it := []byte(`"a"1`)
	s.Put("k", it, nil)
	it[1] = 'X'
	got, _ := s.Get("k")
	got[1] = 'Y'
	if again, _ := s.Get("k"); string(again) != `"a"1` {
		t.Errorf("Get(k) after changing both what was put and what Get returned = %s, want %s", again, `"a"1`)
	}
}

// TestStoreMatchesMap holds the arena to the plain map[string][]byte it
// stands in for: random puts, deletes and gets, of items of every size from
// a few bytes to several arena chunks, go to a store and a map, which are
// compared after every step. Weak hash functions force the collision paths
// that a real 64-bit hash almost never takes.
func TestStoreMatchesMap(t *testing.T) {
	hashes := map[string]func(string) uint64{
		"maphash":  nil, // the store's own
		"constant": func(string) uint64 { return 42 },
		"length":   func(id string) uint64 { return uint64(len(id) % 3) },
	}
	for name, hash := range hashes {
		t.Run(name, func(t *testing.T) {
			s := NewStore(false)
			if hash != nil {
				s.items.hash = hash
			}
			want := make(map[string]string)
			rng := rand.New(rand.NewPCG(1, 2))
			for step := range 3000 {
				id := fmt.Sprint("id", rng.IntN(150))
				_, exists := want[id]
				switch op := rng.IntN(10); {
				case op < 6:
					it := randomItem(rng)
					if created, _, _ := s.Put(id, []byte(it), nil); created == exists {
						t.Fatalf("step %d: Put(%s) created = %v, but the map had it: %v", step, id, created, exists)
					}
					want[id] = it
				case op < 9:
					if found, _, _ := s.Delete(id, nil); found != exists {
						t.Fatalf("step %d: Delete(%s) found = %v, want %v", step, id, found, exists)
					}
					delete(want, id)
				default:
					if got, ok := s.Get(id); ok != exists || string(got) != want[id] {
						t.Fatalf("step %d: Get(%s) = %.40q, %v; want %.40q, %v", step, id, got, ok, want[id], exists)
					}
				}
				if step%100 == 0 {
					compareAll(t, s, want)
				}
			}
			compareAll(t, s, want)
		})
	}
}

// randomItem returns an item whose name is 0 bytes to a few arena chunks
// long, mostly short.
func randomItem(rng *rand.Rand) string {
	n := rng.IntN(64)
	switch rng.IntN(20) {
	case 0:
		n = maxBlock - 20 + rng.IntN(40) // either side of the largest class
	case 1:
		n = rng.IntN(3 * chunkSize)
	}
	return `"` + strings.Repeat(string(rune('a'+rng.IntN(26))), n) + `"` + fmt.Sprint(rng.IntN(1000))
}

// An entry is an id with its item, copied out of the store.
type entry struct {
	id, item []byte
}

// all returns every item of s, in one page.
func all(s *Store) (entries []entry) {
	s.Page("", math.MaxInt, func(id, it []byte) {
		entries = append(entries, entry{bytes.Clone(id), bytes.Clone(it)})
	})
	return entries
}

// compareAll fails the test unless s holds exactly the items of want, in id
// order.
func compareAll(t *testing.T, s *Store, want map[string]string) {
	t.Helper()
	got := make(map[string]string)
	for _, e := range all(s) {
		got[string(e.id)] = string(e.item)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("the store holds %d items, want %d, or they differ", len(got), len(want))
	}
	if !slices.IsSortedFunc(all(s), func(a, b entry) int { return strings.Compare(string(a.id), string(b.id)) }) {
		t.Fatal("the items are not sorted by id")
	}
}

// TestStoreCollisions walks ids that share one hash through every way in
// and out of the index and the collided map.
func TestStoreCollisions(t *testing.T) {
	s := NewStore(false)
	s.items.hash = func(string) uint64 { return 7 }
	steps := []struct {
		op, id string
		want   map[string]string // every item expected after the step
	}{
		{"put", "a", map[string]string{"a": `"a"1`}},
		{"put", "b", map[string]string{"a": `"a"1`, "b": `"b"1`}}, // collides with a
		{"put", "b", map[string]string{"a": `"a"1`, "b": `"b"1`}}, // replaces b, found in collided
		{"delete", "a", map[string]string{"b": `"b"1`}},           // b stays reachable
		{"put", "c", map[string]string{"b": `"b"1`, "c": `"c"1`}}, // takes the index entry a left
		{"delete", "b", map[string]string{"c": `"c"1`}},
		{"delete", "c", map[string]string{}},
	}
	for i, st := range steps {
		if st.op == "put" {
			s.Put(st.id, []byte(`"`+st.id+`"1`), nil)
		} else if found, _, _ := s.Delete(st.id, nil); !found {
			t.Fatalf("step %d: Delete(%s) did not find it", i, st.id)
		}
		for _, id := range []string{"a", "b", "c"} {
			if got, ok := s.Get(id); string(got) != st.want[id] || ok != (st.want[id] != "") {
				t.Fatalf("step %d (%s %s): Get(%s) = %s, %v; want %s", i, st.op, st.id, id, got, ok, st.want[id])
			}
		}
		compareAll(t, s, st.want)
	}
}

// TestStoreReusesFreedSlots checks that deleted items' slots and blocks are
// reused, so that churn does not grow the store, and that reuse mixes
// nothing up.
func TestStoreReusesFreedSlots(t *testing.T) {
	s := NewStore(false)
	for i := range 1000 {
		s.Put(fmt.Sprint("a", i), []byte(`"a"1`), nil)
	}
	slots, chunks := len(s.items.slots), len(s.items.arena.chunks)
	for i := range 1000 {
		s.Delete(fmt.Sprint("a", i), nil)
	}
	for i := range 1000 {
		s.Put(fmt.Sprint("b", i), []byte(`"b"2`), nil)
	}
	if len(s.items.slots) != slots || len(s.items.arena.chunks) != chunks {
		t.Errorf("1000 items deleted, 1000 of the same size put: %d slots and %d chunks, want %d and %d",
			len(s.items.slots), len(s.items.arena.chunks), slots, chunks)
	}
	if got, ok := s.Get("b7"); !ok || string(got) != `"b"2` {
		t.Errorf("Get(b7) = %s, %v; want its item", got, ok)
	}
	if _, ok := s.Get("a7"); ok {
		t.Error("a deleted item is still found")
	}
}

// TestStoreUpdateInPlace checks that replacing an item with one of the same
// size class allocates nothing: the common update costs no garbage.
func TestStoreUpdateInPlace(t *testing.T) {
	s := NewStore(true)
	items := [][]byte{[]byte(`"Fighters"7`), []byte(`"Fighters"8`)}
	i := 0
	if allocs := testing.AllocsPerRun(100, func() { i++; s.Put("foo", items[i%2], nil) }); allocs != 0 {
		t.Errorf("an in-place update allocates %.1f times, want 0", allocs)
	}
	if got, _ := s.Get("foo"); string(got) != string(items[i%2]) {
		t.Errorf("after the updates foo = %s, want %s", got, items[i%2])
	}
}

// TestArenaReusesChunkTail checks that the end of a chunk too small for the
// next block is not lost: it becomes a free block of its own size.
func TestArenaReusesChunkTail(t *testing.T) {
	var a arena
	for range chunkSize/maxBlock - 1 {
		a.alloc(maxBlock, sizeClass(maxBlock))
	}
	a.alloc(100, sizeClass(100)) // 112 bytes: 3984 left in chunk 0
	const tailSize = maxBlock - 112
	if next := a.alloc(maxBlock, sizeClass(maxBlock)); next>>32 != 1 {
		t.Fatalf("a block that does not fit chunk 0's rest went to chunk %d, want 1", next>>32)
	}
	want := uint64(chunkSize - tailSize) // chunk 0, at the tail
	if got := a.alloc(tailSize, sizeClass(tailSize)); got != want {
		t.Errorf("a block of the tail's size is at %#x, want the tail at %#x", got, want)
	}
}

// TestStoreHoldsNoPointersPerItem guards the layout that keeps the garbage
// collector from scanning items: nothing the store keeps per item (index
// entries, slots, free lists, arena bytes) contains a pointer.
func TestStoreHoldsNoPointersPerItem(t *testing.T) {
	m := newArenaMap()
	perItem := map[string]reflect.Type{
		"index key":   reflect.TypeOf(m.index).Key(),
		"index value": reflect.TypeOf(m.index).Elem(),
		"slot":        reflect.TypeOf(m.slots).Elem(),
		"free slot":   reflect.TypeOf(m.free).Elem(),
		"arena byte":  reflect.TypeOf(m.arena.chunks).Elem().Elem(),
		"free block":  reflect.TypeOf(m.arena.free).Elem().Elem(),
	}
	for what, typ := range perItem {
		if hasPointers(typ) {
			t.Errorf("%s: %v holds a pointer", what, typ)
		}
	}
}

// hasPointers reports whether values of type t hold a pointer.
func hasPointers(t reflect.Type) bool {
	switch k := t.Kind(); {
	case k == reflect.Array:
		return t.Len() > 0 && hasPointers(t.Elem())
	case k == reflect.Struct:
		for f := range t.Fields() {
			if hasPointers(f.Type) {
				return true
			}
		}
		return false
	default: // the kinds from Bool to Complex128 are booleans and numbers
		return k < reflect.Bool || k > reflect.Complex128
	}
}

// TestOpenStore checks what a journal starts with, and that it keeps it.
func TestOpenStore(t *testing.T) {
	seeded := maps.Clone(seedItems)
	tests := []struct {
		name string
		file []byte // nil: no file
		seed bool
		want map[string]string
	}{
		{"no file", nil, true, seeded},
		{"no file, -seed=false", nil, false, map[string]string{}},
		{"empty file", []byte{}, true, seeded},
		{"a journal is never seeded again", journalOf("foo", `"Fighters"6`, "bar", `null1`, "foo", ""), true, map[string]string{"bar": "null1"}},
		{"every kind of id and item", journalOf("a\nb\"c\\ d", `"é\"\u0001"null`, "%2F", `null-9223372036854775808`), true,
			map[string]string{"a\nb\"c\\ d": `"é\"\u0001"null`, "%2F": `null-9223372036854775808`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "data")
			if tt.file != nil {
				if err := os.WriteFile(path, tt.file, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			s, logs := openTestStore(t, path, tt.seed)
			if got := contents(s); !maps.Equal(got, tt.want) {
				t.Errorf("opened: %v, want %v", got, tt.want)
			}
			if !strings.Contains(logs.String(), fmt.Sprintf("items=%d", len(tt.want))) {
				t.Errorf("the log does not give the number of items, %d:\n%s", len(tt.want), logs)
			}
			if got := contents(reopen(t, s)); !maps.Equal(got, tt.want) {
				t.Errorf("reopened: %v, want %v", got, tt.want)
			}
		})
	}
}

// TestJournalInUse checks that a second store cannot open a journal in use.
func TestJournalInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data")
	openTestStore(t, path, true)
	if _, err := OpenStore(path, true, quiet); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second OpenStore = %v, want an error saying it is in use", err)
	}
	if _, err := OpenStore(filepath.Join(t.TempDir(), "no", "dir"), true, quiet); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenStore in a missing directory = %v, want it not to exist", err)
	}
}
