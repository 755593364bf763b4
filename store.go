package main

import (
	"slices"
	"strings"
	"sync"
)

// An Item is one stored item: its name and size as JSON values written
// back to back, name first: `"Fighters"6`, `null3`, `"x"null`. The name is a
// JSON string or null, so where it ends is never in doubt.
//
// Items are kept in this form because it is what readers need: GET copies it
// into the answer with no encoding work, and the entity tag is a hash of it.
// It is also small: an item and its id usually fit one 24-byte allocation,
// where the full JSON object would need 48.
type Item string

// appendItemJSON appends the JSON object of the item it, in Item's form, to b:
// {"name":<string or null>,"size":<integer or null>}.
func appendItemJSON[T Item | []byte](b []byte, it T) []byte {
	n := nameLen(it)
	b = append(b, `{"name":`...)
	b = append(b, it[:n]...)
	b = append(b, `,"size":`...)
	b = append(b, it[n:]...)
	return append(b, '}')
}

// nameLen returns the length of the name at the start of the item it.
func nameLen[T Item | []byte](it T) int {
	if it[0] == 'n' {
		return len("null")
	}
	for i := 1; i < len(it); i++ {
		switch it[i] {
		case '\\':
			i++ // an escaped character, perhaps a quote
		case '"':
			return i + 1
		}
	}
	return len(it) // not reached for a valid item
}

// A Precondition decides, inside the store's critical section, whether a
// write may go ahead given the current item (exists is false if there is
// none). A nil Precondition always allows the write.
type Precondition func(current Item, exists bool) bool

// Store is the in-memory item store. It is safe for concurrent use; every
// check-then-write happens under one lock, so no caller can observe or act on
// a half-done change.
//
// Items sit in a slice, and the map holds only an index into it: a map slot
// of a string and a uint32 takes half the memory of one of two strings, which
// for a million items saves more than the slice costs.
type Store struct {
	// mu guards the fields below.
	mu sync.Mutex
	// slots maps an id to the index of its item in items. Each id shares one
	// string allocation with its item (see Put).
	slots map[string]uint32
	// items holds the items; a free slot holds "".
	items []Item
	// free lists the free slots in items, for reuse.
	free []uint32
}

// seedItems are the items of FastAPI's "Additional Status Codes" example.
var seedItems = map[string]Item{
	"foo": `"Fighters"6`,
	"bar": `"Tenders"3`,
}

// NewStore returns a store holding the example's seed items, or an empty one
// if seed is false.
func NewStore(seed bool) *Store {
	s := &Store{slots: make(map[string]uint32)}
	if seed {
		for id, it := range seedItems {
			s.Put(id, []byte(it), nil)
		}
	}
	return s
}

// Get returns the item stored under id and whether there is one.
func (s *Store) Get(id string) (Item, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	slot, ok := s.slots[id]
	if !ok {
		return "", false
	}
	return s.items[slot], true
}

// Put stores it, an item in Item's form, under id, replacing any item there,
// if pre allows it. It reports whether the item is new and whether it was
// written. Put copies id and it, so the caller may reuse both.
func (s *Store) Put(id string, it []byte, pre Precondition) (created, written bool) {
	// One allocation holds both the id and the item: one allocation per
	// write, and no map key that pins a request's memory. Assigning to an
	// existing string key replaces the key too, so the old allocation is freed.
	var b strings.Builder
	b.Grow(len(id) + len(it))
	b.WriteString(id)
	b.Write(it)
	both := b.String()
	key, item := both[:len(id)], Item(both[len(id):])

	s.mu.Lock()
	defer s.mu.Unlock()
	slot, exists := s.slots[id]
	var current Item
	if exists {
		current = s.items[slot]
	}
	if pre != nil && !pre(current, exists) {
		return false, false
	}
	if !exists {
		slot = s.newSlot()
	}
	s.items[slot] = item
	s.slots[key] = slot
	return !exists, true
}

// newSlot returns a free index in s.items, growing it if there is none.
// s.mu must be held.
func (s *Store) newSlot() uint32 {
	if n := len(s.free); n > 0 {
		slot := s.free[n-1]
		s.free = s.free[:n-1]
		return slot
	}
	s.items = append(s.items, "")
	return uint32(len(s.items) - 1)
}

// Delete removes the item stored under id if there is one and pre allows it.
// It reports whether there was an item and whether it was removed; pre is not
// consulted when there is none.
func (s *Store) Delete(id string, pre Precondition) (found, deleted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	slot, exists := s.slots[id]
	if !exists {
		return false, false
	}
	if pre != nil && !pre(s.items[slot], true) {
		return true, false
	}
	delete(s.slots, id)
	s.items[slot] = ""
	s.free = append(s.free, slot)
	return true, true
}

// An Entry is an id with its item, as returned by All.
type Entry struct {
	ID   string
	Item Item
}

// All returns every stored item, sorted by id. The lock is held only to copy
// string headers; sorting happens outside it.
func (s *Store) All() []Entry {
	s.mu.Lock()
	entries := make([]Entry, 0, len(s.slots))
	for id, slot := range s.slots {
		entries = append(entries, Entry{id, s.items[slot]})
	}
	s.mu.Unlock()
	slices.SortFunc(entries, func(a, b Entry) int { return strings.Compare(a.ID, b.ID) })
	return entries
}
