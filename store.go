package main

import (
	"sort"
	"strings"
	"sync"
)

// An Item is one item in its canonical JSON encoding,
// {"name":<string or null>,"size":<integer or null>}.
//
// Items are kept encoded because that is what every reader needs: GET writes
// the bytes as they are, the entity tag is a hash of them, and each stored
// item costs one small immutable allocation instead of a struct and pointers.
type Item string

// A Precondition decides, inside the store's critical section, whether a
// write may go ahead given the current item (exists is false if there is
// none). A nil Precondition always allows the write.
type Precondition func(current Item, exists bool) bool

// Store is the in-memory item store. It is safe for concurrent use; every
// check-then-write happens under one lock, so no caller can observe or act on
// a half-done change.
type Store struct {
	// mu guards items.
	mu sync.Mutex
	// items maps an id to its item. Each key and value are slices of one
	// string allocation (see Put).
	items map[string]Item
}

// seedItems are the items of FastAPI's "Additional Status Codes" example.
var seedItems = map[string]Item{
	"foo": `{"name":"Fighters","size":6}`,
	"bar": `{"name":"Tenders","size":3}`,
}

// NewStore returns a store holding the example's seed items, or an empty one
// if seed is false.
func NewStore(seed bool) *Store {
	s := &Store{items: make(map[string]Item)}
	if seed {
		for id, it := range seedItems {
			s.items[id] = it
		}
	}
	return s
}

// Get returns the item stored under id and whether there is one.
func (s *Store) Get(id string) (Item, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.items[id]
	return it, ok
}

// Put stores the item encoded in doc under id, replacing any item there, if
// pre allows it. It reports whether the item is new and whether it was
// written. Put copies id and doc, so the caller may reuse both.
func (s *Store) Put(id string, doc []byte, pre Precondition) (created, written bool) {
	// One allocation holds both the key and the value: half the allocations
	// per write, and no key that pins a request's memory. Assigning to an
	// existing string key replaces the key too, so the old allocation is freed.
	var b strings.Builder
	b.Grow(len(id) + len(doc))
	b.WriteString(id)
	b.Write(doc)
	both := b.String()
	key, it := both[:len(id)], Item(both[len(id):])

	s.mu.Lock()
	defer s.mu.Unlock()
	current, exists := s.items[id]
	if pre != nil && !pre(current, exists) {
		return false, false
	}
	s.items[key] = it
	return !exists, true
}

// Delete removes the item stored under id if there is one and pre allows it.
// It reports whether there was an item and whether it was removed; pre is not
// consulted when there is none.
func (s *Store) Delete(id string, pre Precondition) (found, deleted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	current, exists := s.items[id]
	if !exists {
		return false, false
	}
	if pre != nil && !pre(current, true) {
		return true, false
	}
	delete(s.items, id)
	return true, true
}

// An Entry is an id with its item, as returned by All.
type Entry struct {
	ID   string
	Item Item
}

// All returns every stored item, sorted by id. The lock is held only to copy
// the map's string headers; sorting happens outside it.
func (s *Store) All() []Entry {
	s.mu.Lock()
	entries := make([]Entry, 0, len(s.items))
	for id, it := range s.items {
		entries = append(entries, Entry{id, it})
	}
	s.mu.Unlock()
	sort.Slice(entries, func(i, j int) bool { return entries[i].ID < entries[j].ID })
	return entries
}

// Len returns the number of stored items.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}
