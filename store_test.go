package main

import (
	"slices"
	"testing"
)

func TestStorePutGetDelete(t *testing.T) {
	s := NewStore(false)
	doc := []byte(`{"name":"a","size":1}`)
	id := []byte("k")
	if created, written := s.Put(string(id), doc, nil); !created || !written {
		t.Fatalf("first Put = %v, %v; want created and written", created, written)
	}
	doc[10] = 'X' // the store must have copied it
	if it, ok := s.Get("k"); !ok || it != `{"name":"a","size":1}` {
		t.Errorf("Get(k) = %s, %v; want the item as put", it, ok)
	}
	if created, written := s.Put("k", []byte(`{"name":null,"size":null}`), nil); created || !written {
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
	if created, written := s.Put("foo", []byte(`{}`), refuse); created || written {
		t.Errorf("refused Put = %v, %v; want neither", created, written)
	}
	if found, deleted := s.Delete("foo", refuse); !found || deleted {
		t.Errorf("refused Delete = %v, %v; want found, not deleted", found, deleted)
	}
	var saw Item
	var sawExists bool
	s.Put("foo", []byte(`{"name":null,"size":null}`), func(cur Item, exists bool) bool {
		saw, sawExists = cur, exists
		return true
	})
	if saw != seedItems["foo"] || !sawExists {
		t.Errorf("precondition saw %q, %v; want the current item", saw, sawExists)
	}
	if it, _ := s.Get("foo"); it != `{"name":null,"size":null}` {
		t.Errorf("after an allowed Put, foo = %s", it)
	}
}

func TestStoreAllSorted(t *testing.T) {
	s := NewStore(true)
	s.Put("a", []byte(`{}`), nil)
	s.Put("zz", []byte(`{}`), nil)
	var ids []string
	for _, e := range s.All() {
		ids = append(ids, e.ID)
	}
	if want := []string{"a", "bar", "foo", "zz"}; !slices.Equal(ids, want) {
		t.Errorf("All ids = %v, want %v", ids, want)
	}
}
