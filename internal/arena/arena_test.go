package arena

import (
	"bytes"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestMatchesMap holds the arena to the plain map[string][]byte it
// stands in for: random puts, deletes and gets, of items of every size from
// a few bytes to several arena chunks, go to a Map and a map, which are
// compared after every step. Weak hash functions force what a real hash
// seldom does: long probes past equal hashes, and probes that wrap past the
// index's end.
func TestMatchesMap(t *testing.T) {
	hashes := map[string]func(string) uint64{
		"maphash":  nil, // the store's own
		"constant": func(string) uint64 { return 42 },
		"length":   func(id string) uint64 { return uint64(len(id) % 3) },
		"wrapping": func(string) uint64 { return math.MaxUint32 }, // the last entry of any index
	}
	for name, hash := range hashes {
		t.Run(name, func(t *testing.T) {
			m := New()
			if hash != nil {
				m.hash = hash
			}
			want := make(map[string]string)
			rng := rand.New(rand.NewPCG(1, 2))
			for step := range 3000 {
				id := fmt.Sprint("id", rng.IntN(150))
				_, exists := want[id]
				switch op := rng.IntN(10); {
				case op < 6:
					it := randomItem(rng)
					if created := m.Put(id, []byte(it)); created == exists {
						t.Fatalf("step %d: Put(%s) created = %v, but the map had it: %v", step, id, created, exists)
					}
					want[id] = it
				case op < 9:
					if found := m.Delete(id); found != exists {
						t.Fatalf("step %d: Delete(%s) found = %v, want %v", step, id, found, exists)
					}
					delete(want, id)
				default:
					if got, ok := m.Get(id); ok != exists || string(got) != want[id] {
						t.Fatalf("step %d: Get(%s) = %.40q, %v; want %.40q, %v", step, id, got, ok, want[id], exists)
					}
				}
				if step%100 == 0 {
					compareAll(t, m, want)
				}
			}
			compareAll(t, m, want)
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

// all returns every item of m, in one page.
func all(m *Map) (entries []entry) {
	m.Page("", math.MaxInt, func(id, it []byte) {
		entries = append(entries, entry{bytes.Clone(id), bytes.Clone(it)})
	})
	return entries
}

// compareAll fails the test unless m holds exactly the items of want, in id
// order.
func compareAll(t *testing.T, m *Map, want map[string]string) {
	t.Helper()
	got := make(map[string]string)
	for _, e := range all(m) {
		got[string(e.id)] = string(e.item)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("the store holds %d items, want %d, or they differ", len(got), len(want))
	}
	if !slices.IsSortedFunc(all(m), func(a, b entry) int { return strings.Compare(string(a.id), string(b.id)) }) {
		t.Fatal("the items are not sorted by id")
	}
}

// TestOrderRuns fills the order with several runs and empties it again, in
// random order, with ids whose first 8 bytes often tie: runs split, lose
// their last ids and vanish, and the run each id goes in must still be found.
func TestOrderRuns(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	m, want := New(), map[string]string{}
	ids := make([]string, 4*maxRun)
	for i := range ids {
		ids[i] = []string{"item-000", "a", "item-0001"}[i%3] + fmt.Sprint(i)
	}
	for _, put := range []bool{true, false} {
		rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		for i, id := range ids {
			if put {
				m.Put(id, []byte(`"x"1`))
				want[id] = `"x"1`
			} else {
				m.Delete(id)
				delete(want, id)
			}
			if i%(maxRun/2) == 0 {
				compareAll(t, m, want)
			}
		}
		compareAll(t, m, want)
	}
	if len(m.order) != 0 || len(m.lasts) != 0 {
		t.Errorf("an empty map keeps %d runs and %d last ids", len(m.order), len(m.lasts))
	}
}

// TestCollisions walks ids that share one hash through every way in
// and out of the index: each probes past the others, and a delete must
// leave those after it reachable.
func TestCollisions(t *testing.T) {
	m := New()
	m.hash = func(string) uint64 { return 7 }
	steps := []struct {
		op, id string
		want   map[string]string // every item expected after the step
	}{
		{"put", "a", map[string]string{"a": `"a"1`}},
		{"put", "b", map[string]string{"a": `"a"1`, "b": `"b"1`}}, // collides with a
		{"put", "b", map[string]string{"a": `"a"1`, "b": `"b"1`}}, // replaces b, found past a
		{"delete", "a", map[string]string{"b": `"b"1`}},           // b stays reachable
		{"put", "c", map[string]string{"b": `"b"1`, "c": `"c"1`}}, // takes the entry b moved back from
		{"delete", "b", map[string]string{"c": `"c"1`}},
		{"delete", "c", map[string]string{}},
	}
	for i, st := range steps {
		if st.op == "put" {
			m.Put(st.id, []byte(`"`+st.id+`"1`))
		} else if found := m.Delete(st.id); !found {
			t.Fatalf("step %d: Delete(%s) did not find it", i, st.id)
		}
		for _, id := range []string{"a", "b", "c"} {
			if got, ok := m.Get(id); string(got) != st.want[id] || ok != (st.want[id] != "") {
				t.Fatalf("step %d (%s %s): Get(%s) = %s, %v; want %s", i, st.op, st.id, id, got, ok, st.want[id])
			}
		}
		compareAll(t, m, st.want)
	}
}

// TestReusesFreedSlots checks that deleted items' slots and blocks are
// reused, so that churn does not grow the store, and that reuse mixes
// nothing up.
func TestReusesFreedSlots(t *testing.T) {
	m := New()
	for i := range 1000 {
		m.Put(fmt.Sprint("a", i), []byte(`"a"1`))
	}
	slots, chunks := len(m.slots), len(m.arena.chunks)
	for i := range 1000 {
		m.Delete(fmt.Sprint("a", i))
	}
	for i := range 1000 {
		m.Put(fmt.Sprint("b", i), []byte(`"b"2`))
	}
	if len(m.slots) != slots || len(m.arena.chunks) != chunks {
		t.Errorf("1000 items deleted, 1000 of the same size put: %d slots and %d chunks, want %d and %d",
			len(m.slots), len(m.arena.chunks), slots, chunks)
	}
	if got, ok := m.Get("b7"); !ok || string(got) != `"b"2` {
		t.Errorf("Get(b7) = %s, %v; want its item", got, ok)
	}
	if _, ok := m.Get("a7"); ok {
		t.Error("a deleted item is still found")
	}
}

// TestUpdateInPlace checks that replacing an item with one of the same
// size class allocates nothing: the common update costs no garbage.
func TestUpdateInPlace(t *testing.T) {
	m := New()
	m.Put("foo", []byte(`"Fighters"6`))
	items := [][]byte{[]byte(`"Fighters"7`), []byte(`"Fighters"8`)}
	i := 0
	if allocs := testing.AllocsPerRun(100, func() { i++; m.Put("foo", items[i%2]) }); allocs != 0 {
		t.Errorf("an in-place update allocates %.1f times, want 0", allocs)
	}
	if got, _ := m.Get("foo"); string(got) != string(items[i%2]) {
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

// TestHoldsNoPointersPerItem guards the layout that keeps the garbage
// collector from scanning items: nothing the store keeps per item (index
// entries, slots, free lists, arena bytes) contains a pointer.
func TestHoldsNoPointersPerItem(t *testing.T) {
	m := New()
	perItem := map[string]reflect.Type{
		"index entry": reflect.TypeOf(m.index).Elem(),
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

// TestSortOrder holds the order that SortOrder builds, as a replay does, to
// a sort: random ids, many sharing their first 8 bytes or shorter than 8, put
// and deleted with the order deferred, must come out sorted, and stay so
// under puts and deletes afterwards.
func TestSortOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	parts := []string{"", "a", "ab", "abcdefg", "item-000", "é", "\u00ff", "\x01", "0"}
	for range 10 {
		m, want := New(), map[string]string{}
		m.DeferOrder()
		for range rng.IntN(3 * maxRun) {
			id := parts[rng.IntN(len(parts))] + parts[rng.IntN(len(parts))] + fmt.Sprint(rng.IntN(500))
			m.Put(id, []byte(`"x"1`))
			want[id] = `"x"1`
			if rng.IntN(4) == 0 {
				m.Delete(id)
				delete(want, id)
			}
		}
		m.SortOrder()
		compareAll(t, m, want)
		for i := range 200 {
			id := fmt.Sprint(parts[rng.IntN(len(parts))], i)
			if rng.IntN(2) == 0 {
				m.Put(id, []byte(`"y"2`))
				want[id] = `"y"2`
			} else {
				m.Delete(id)
				delete(want, id)
			}
		}
		compareAll(t, m, want)
	}
}

// TestInsertHint puts ids in the orders that creates often come in, with
// deletes between: wherever nearHint places an id, seek must put it there
// too, and nearHint must place most of them.
func TestInsertHint(t *testing.T) {
	for name, id := range map[string]func(int) string{
		"counter":   func(i int) string { return "k" + strconv.Itoa(i) },
		"timestamp": func(i int) string { return fmt.Sprintf("2026-12-03T%09d", i) },
		// as many clients' creates come: in batches, each a little out of order
		"batches": func(i int) string { return fmt.Sprintf("b%06d", i/8*8+[8]int{7, 5, 6, 3, 4, 2, 0, 1}[i%8]) },
	} {
		m, want, hits := New(), map[string]string{}, 0
		for i := range 4 * maxRun {
			if p, ok := m.nearHint(id(i)); ok {
				hits++
				if run, at := m.seek(id(i)); (place{run, at}) != p {
					t.Fatalf("%s: nearHint puts %s at %v, seek at %v", name, id(i), p, place{run, at})
				}
			}
			m.Put(id(i), []byte(`"x"1`))
			want[id(i)] = `"x"1`
			if i%7 == 0 {
				m.Delete(id(i / 2))
				delete(want, id(i/2))
			}
		}
		if hits < 3*maxRun {
			t.Errorf("%s: nearHint placed %d of %d inserts", name, hits, 4*maxRun)
		}
		// A hint at the end of a run that is not the last: an id after the
		// run's last but before its fence goes there, and then one after
		// every id must not.
		r := m.order[0]
		last, before := string(m.id(r[len(r)-1])), string(m.id(r[len(r)-2]))
		m.Delete(last)
		delete(want, last)
		for _, id := range []string{before + "\x00", "\xff"} {
			m.Put(id, []byte(`"x"1`))
			want[id] = `"x"1`
		}
		compareAll(t, m, want)
	}
}
