package main

import (
	"bytes"
	"sync"
)

// Store is the item store: a map from id to item under one mutex. Every
// check-then-write happens in one critical section, so no caller can observe
// or act on a half-done change. Items are opaque bytes to it (the handler
// keeps them in the stored form of jsonscan.go), and Store copies what it is
// given and what it returns, so that nobody shares its memory (Page lends
// it, for the length of a call).
//
// A store opened with OpenStore on a file also keeps a journal: a write is
// decided under mu as in memory, but becomes visible only once the journal
// has it on disk. mu guards the items and the changes waiting for the disk,
// and is never held across I/O. The journal's syncMu is held by the one
// goroutine that writes and syncs the file, and is taken before mu, never
// after.
type Store struct {
	// mu guards items, and the journal's fields that say so.
	mu sync.Mutex
	// items maps ids to items. It is a map[string][]byte in all but its
	// memory layout, which the garbage collector never has to scan
	// (arena.go). With a journal, it holds only what is durable.
	items *arenaMap
	// journal keeps the items in a file (journal.go); nil in memory.
	journal *journal
}

// A Precondition decides, inside the store's critical section, whether a
// write may go ahead given the current item (exists is false if there is
// none). current is only valid during the call. A nil Precondition always
// allows the write.
type Precondition func(current []byte, exists bool) bool

// seedItems are the items of FastAPI's "Additional Status Codes" example, in
// stored form.
var seedItems = map[string]string{
	"foo": `"Fighters"6`,
	"bar": `"Tenders"3`,
}

// NewStore returns a store in memory, holding the example's seed items, or
// an empty one if seed is false.
func NewStore(seed bool) *Store {
	s := &Store{items: newArenaMap()}
	if seed {
		for id, it := range seedItems {
			s.Put(id, []byte(it), nil)
		}
	}
	return s
}

// Get returns the item stored under id and whether there is one.
func (s *Store) Get(id string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.items.get(id)
	return bytes.Clone(it), ok
}

// Put stores it under id, replacing any item there, if pre allows it. It
// reports whether the item is new and whether it was written; an error means
// it was not, because the journal failed. An id may be at most 65535 bytes
// long.
func (s *Store) Put(id string, it []byte, pre Precondition) (created, written bool, err error) {
	existed, written, err := s.change(id, it, pre)
	return !existed, written, err
}

// Delete removes the item stored under id if there is one and pre allows it.
// It reports whether there was an item and whether it was removed; pre is not
// consulted when there is none. An error means that nothing was removed,
// because the journal failed.
func (s *Store) Delete(id string, pre Precondition) (found, deleted bool, err error) {
	return s.change(id, nil, func(current []byte, exists bool) bool {
		return exists && (pre == nil || pre(current, true))
	})
}

// set stores it under id, or deletes id if it is nil. mu must be held.
func (s *Store) set(id string, it []byte) {
	if it == nil {
		s.items.delete(id)
	} else {
		s.items.put(id, it)
	}
}

// Page calls fn with the ids and items that sort after after, in byte
// order, at most limit of them, and returns the last id if more follow, or
// "". It calls fn under the lock, which it holds for O(log n + limit); fn must
// not use the store, and the id and item are valid only during the call.
func (s *Store) Page(after string, limit int, fn func(id, it []byte)) (last string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.items.page(after, limit, fn))
}
