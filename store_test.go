package main

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestStorePutGetDelete(t *testing.T) {
	s := NewStore(false)
	doc := []byte(`"a"1`)
	id := []byte("k")
	if created, written := s.Put(string(id), doc, nil); !created || !written {
		t.Fatalf("first Put = %v, %v; want created and written", created, written)
	}
	doc[1] = 'X' // the store must have copied it
	if it, ok := s.Get(nil, "k"); !ok || string(it) != `"a"1` {
		t.Errorf("Get(k) = %s, %v; want the item as put", it, ok)
	}
	if created, written := s.Put("k", []byte(`nullnull`), nil); created || !written {
		t.Errorf("second Put = %v, %v; want written, not created", created, written)
	}
	if found, deleted := s.Delete("k", nil); !found || !deleted {
		t.Errorf("Delete(k) = %v, %v; want found and deleted", found, deleted)
	}
	if _, ok := s.Get(nil, "k"); ok {
		t.Error("Get after Delete found the item")
	}
	if found, deleted := s.Delete("k", nil); found || deleted {
		t.Errorf("second Delete(k) = %v, %v; want neither", found, deleted)
	}
}

func TestStoreGetAppends(t *testing.T) {
	s := NewStore(true)
	if got, ok := s.Get([]byte("prefix:"), "foo"); !ok || string(got) != `prefix:"Fighters"6` {
		t.Errorf("Get(prefix:, foo) = %s, %v; want the item after the prefix", got, ok)
	}
}

func TestStorePreconditions(t *testing.T) {
	s := NewStore(true)
	refuse := func([]byte, bool) bool { return false }
	if created, written := s.Put("foo", []byte(`nullnull`), refuse); created || written {
		t.Errorf("refused Put = %v, %v; want neither", created, written)
	}
	if found, deleted := s.Delete("foo", refuse); !found || deleted {
		t.Errorf("refused Delete = %v, %v; want found, not deleted", found, deleted)
	}
	var saw string
	var sawExists bool
	s.Put("foo", []byte(`nullnull`), func(cur []byte, exists bool) bool {
		saw, sawExists = string(cur), exists
		return true
	})
	if saw != seedItems["foo"] || !sawExists {
		t.Errorf("precondition saw %q, %v; want the current item", saw, sawExists)
	}
	if it, _ := s.Get(nil, "foo"); string(it) != `nullnull` {
		t.Errorf("after an allowed Put, foo = %s", it)
	}
}

func TestStoreAllSorted(t *testing.T) {
	s := NewStore(true)
	s.Put("a", []byte(`nullnull`), nil)
	s.Put("zz", []byte(`nullnull`), nil)
	var ids []string
	for _, e := range s.All() {
		ids = append(ids, string(e.ID))
	}
	if want := []string{"a", "bar", "foo", "zz"}; !slices.Equal(ids, want) {
		t.Errorf("All ids = %v, want %v", ids, want)
	}
}

func TestAppendItemJSON(t *testing.T) {
	tests := []struct{ item, want string }{
		{`"Fighters"6`, `{"name":"Fighters","size":6}`},
		{`null3`, `{"name":null,"size":3}`},
		{`"x"null`, `{"name":"x","size":null}`},
		{`nullnull`, `{"name":null,"size":null}`},
		{`"q\"uote\\"-9223372036854775808`, `{"name":"q\"uote\\","size":-9223372036854775808}`},
		{`""0`, `{"name":"","size":0}`},
	}
	for _, tt := range tests {
		if got := string(appendItemJSON(nil, tt.item)); got != tt.want {
			t.Errorf("appendItemJSON(%s) = %s, want %s", tt.item, got, tt.want)
		}
		if got := string(appendItemJSON(nil, []byte(tt.item))); got != tt.want {
			t.Errorf("appendItemJSON([]byte(%s)) = %s, want %s", tt.item, got, tt.want)
		}
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
	slots, chunks := len(s.slots), len(s.arena.chunks)
	for i := range 1000 {
		s.Delete(fmt.Sprint("a", i), nil)
	}
	for i := range 1000 {
		s.Put(fmt.Sprint("b", i), []byte(`"b"2`), nil)
	}
	if len(s.slots) != slots || len(s.arena.chunks) != chunks {
		t.Errorf("1000 items deleted, 1000 of the same size put: %d slots and %d chunks, want %d and %d",
			len(s.slots), len(s.arena.chunks), slots, chunks)
	}
	if got, ok := s.Get(nil, "b7"); !ok || string(got) != `"b"2` {
		t.Errorf("Get(b7) = %s, %v; want its item", got, ok)
	}
	if _, ok := s.Get(nil, "a7"); ok {
		t.Error("a deleted item is still found")
	}
}

// TestStoreUpdateInPlace checks that replacing an item with one of the same
// size class allocates nothing: the common update costs no garbage.
func TestStoreUpdateInPlace(t *testing.T) {
	s := NewStore(true)
	items := [][]byte{[]byte(`"Fighters"7`), []byte(`"Fighters"8`)}
	i := 0
	allocs := testing.AllocsPerRun(100, func() {
		i++
		s.Put("foo", items[i%2], nil)
	})
	if allocs != 0 {
		t.Errorf("an in-place update allocates %.1f times, want 0", allocs)
	}
	if got, _ := s.Get(nil, "foo"); string(got) != string(items[i%2]) {
		t.Errorf("after the updates foo = %s, want %s", got, items[i%2])
	}
}

// TestStoreCollisions walks ids that share one hash through every way in
// and out of the index and the collided map.
func TestStoreCollisions(t *testing.T) {
	s := NewStore(false)
	s.hash = func(string) uint64 { return 7 }
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
		switch st.op {
		case "put":
			s.Put(st.id, []byte(`"`+st.id+`"1`), nil)
		case "delete":
			if found, _ := s.Delete(st.id, nil); !found {
				t.Fatalf("step %d: Delete(%s) did not find it", i, st.id)
			}
		}
		for _, id := range []string{"a", "b", "c"} {
			got, ok := s.Get(nil, id)
			if w, exists := st.want[id]; ok != exists || string(got) != w {
				t.Fatalf("step %d (%s %s): Get(%s) = %s, %v; want %s, %v", i, st.op, st.id, id, got, ok, w, exists)
			}
		}
		compareAll(t, s, st.want)
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

// TestStoreMatchesMap runs random puts, deletes and gets, of items of every
// size from a few bytes to several arena chunks, against a store and a map,
// and compares them after every step. Weak hash functions force the
// collision paths that a real 64-bit hash almost never takes.
func TestStoreMatchesMap(t *testing.T) {
	hashes := map[string]func(string) uint64{
		"maphash":  nil, // NewStore's own
		"constant": func(string) uint64 { return 42 },
		"length":   func(id string) uint64 { return uint64(len(id) % 3) },
	}
	for name, hash := range hashes {
		t.Run(name, func(t *testing.T) {
			s := NewStore(false)
			if hash != nil {
				s.hash = hash
			}
			want := make(map[string]string)
			rng := rand.New(rand.NewPCG(1, 2))
			for step := range 3000 {
				id := fmt.Sprint("id", rng.IntN(150))
				switch op := rng.IntN(10); {
				case op < 6:
					it := randomItem(rng)
					_, exists := want[id]
					if created, _ := s.Put(id, []byte(it), nil); created == exists {
						t.Fatalf("step %d: Put(%s) created = %v, but the map had it: %v", step, id, created, exists)
					}
					want[id] = it
				case op < 9:
					_, exists := want[id]
					if found, _ := s.Delete(id, nil); found != exists {
						t.Fatalf("step %d: Delete(%s) found = %v, want %v", step, id, found, exists)
					}
					delete(want, id)
				default:
					got, ok := s.Get(nil, id)
					if w, exists := want[id]; ok != exists || string(got) != w {
						t.Fatalf("step %d: Get(%s) = %.40q, %v; want %.40q, %v", step, id, got, ok, w, exists)
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

// compareAll fails the test unless s.All holds exactly the items of want.
func compareAll(t *testing.T, s *Store, want map[string]string) {
	t.Helper()
	got := make(map[string]string)
	for _, e := range s.All() {
		got[string(e.ID)] = string(e.Item)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("All holds %d items, want %d, or they differ", len(got), len(want))
	}
}

// TestStoreHoldsNoPointersPerItem guards the layout that keeps the garbage
// collector from scanning items: nothing the store keeps per item (index
// entries, slots, free lists, arena bytes) contains a pointer.
func TestStoreHoldsNoPointersPerItem(t *testing.T) {
	var s Store
	perItem := map[string]reflect.Type{
		"index key":   reflect.TypeOf(s.index).Key(),
		"index value": reflect.TypeOf(s.index).Elem(),
		"slot":        reflect.TypeOf(s.slots).Elem(),
		"free slot":   reflect.TypeOf(s.free).Elem(),
		"arena byte":  reflect.TypeOf(s.arena.chunks).Elem().Elem(),
		"free block":  reflect.TypeOf(s.arena.free).Elem().Elem(),
	}
	for what, typ := range perItem {
		if hasPointers(typ) {
			t.Errorf("%s: %v holds a pointer", what, typ)
		}
	}
}

// hasPointers reports whether values of type t hold a pointer.
func hasPointers(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return false
	case reflect.Array:
		return t.Len() > 0 && hasPointers(t.Elem())
	case reflect.Struct:
		for f := range t.Fields() {
			if hasPointers(f.Type) {
				return true
			}
		}
		return false
	}
	return true
}
