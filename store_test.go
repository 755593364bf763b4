package main

import (
	"slices"
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
	if it, ok := s.Get("k"); !ok || it != `"a"1` {
		t.Errorf("Get(k) = %s, %v; want the item as put", it, ok)
	}
	if created, written := s.Put("k", []byte(`nullnull`), nil); created || !written {
		t.Errorf("second Put = %v, %v; want written, not created", created, written)
	}
	if found, deleted := s.Delete("k", nil); !found || !deleted {
		t.Errorf("Delete(k) = %v, %v; want found and deleted", found, deleted)
	}
	if _, ok := s.Get("k"); ok {
		t.Error("Get after Delete found the item")
	}
	if found, deleted := s.Delete("k", nil); found || deleted {
		t.Errorf("second Delete(k) = %v, %v; want neither", found, deleted)
	}
}

func TestStorePreconditions(t *testing.T) {
	s := NewStore(true)
	refuse := func(Item, bool) bool { return false }
	if created, written := s.Put("foo", []byte(`nullnull`), refuse); created || written {
		t.Errorf("refused Put = %v, %v; want neither", created, written)
	}
	if found, deleted := s.Delete("foo", refuse); !found || deleted {
		t.Errorf("refused Delete = %v, %v; want found, not deleted", found, deleted)
	}
	var saw Item
	var sawExists bool
	s.Put("foo", []byte(`nullnull`), func(cur Item, exists bool) bool {
		saw, sawExists = cur, exists
		return true
	})
	if saw != seedItems["foo"] || !sawExists {
		t.Errorf("precondition saw %q, %v; want the current item", saw, sawExists)
	}
	if it, _ := s.Get("foo"); it != `nullnull` {
		t.Errorf("after an allowed Put, foo = %s", it)
	}
}

func TestStoreAllSorted(t *testing.T) {
	s := NewStore(true)
	s.Put("a", []byte(`nullnull`), nil)
	s.Put("zz", []byte(`nullnull`), nil)
	var ids []string
	for _, e := range s.All() {
		ids = append(ids, e.ID)
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
		if got := string(appendItemJSON(nil, Item(tt.item))); got != tt.want {
			t.Errorf("appendItemJSON(%s) = %s, want %s", tt.item, got, tt.want)
		}
		if got := string(appendItemJSON(nil, []byte(tt.item))); got != tt.want {
			t.Errorf("appendItemJSON([]byte(%s)) = %s, want %s", tt.item, got, tt.want)
		}
	}
}

// TestStoreReusesFreedSlots checks that deleted items' slots are reused, so
// that churn does not grow the store, and that reuse mixes nothing up.
func TestStoreReusesFreedSlots(t *testing.T) {
	s := NewStore(false)
	s.Put("a", []byte(`"a"1`), nil)
	s.Put("b", []byte(`"b"2`), nil)
	s.Delete("a", nil)
	s.Put("c", []byte(`"c"3`), nil)
	if len(s.items) != 2 {
		t.Errorf("after put a, b, delete a, put c: %d slots, want 2", len(s.items))
	}
	for id, want := range map[string]Item{"b": `"b"2`, "c": `"c"3`} {
		if got, ok := s.Get(id); !ok || got != want {
			t.Errorf("Get(%s) = %s, %v; want %s", id, got, ok, want)
		}
	}
	if _, ok := s.Get("a"); ok {
		t.Error("a deleted item is still found")
	}
}
