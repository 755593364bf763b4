package main

import (
	"bytes"
	"hash/maphash"
	"math"
	"slices"
	"sync"
)

// Items are stored, passed around and hashed in one compact form: the name
// and size as JSON values written back to back, name first: `"Fighters"6`,
// `null3`, `"x"null`. The name is a JSON string or null, so where it ends is
// never in doubt. It is what readers need: GET copies it into the answer with
// no encoding work, and the entity tag is a hash of it.

// appendItemJSON appends the JSON object of the item it, in stored form, to b:
// {"name":<string or null>,"size":<integer or null>}.
func appendItemJSON[T string | []byte](b []byte, it T) []byte {
	n := nameLen(it)
	b = append(b, `{"name":`...)
	b = append(b, it[:n]...)
	b = append(b, `,"size":`...)
	b = append(b, it[n:]...)
	return append(b, '}')
}

// nameLen returns the length of the name at the start of the item it.
func nameLen[T string | []byte](it T) int {
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
// none). current is only valid during the call. A nil Precondition always
// allows the write.
type Precondition func(current []byte, exists bool) bool

// Store is the in-memory item store. It is safe for concurrent use; every
// check-then-write happens under one lock, so no caller can observe or act on
// a half-done change.
//
// Nothing it keeps per item holds a pointer, so the garbage collector has
// nothing to scan however many items there are: with a million stored as
// strings in a map, each collection spent ~80 ms of CPU marking them. Each id
// and its item lie side by side in a block of an arena; a slot records where,
// and an index maps a hash of the id to its slot.
type Store struct {
	// mu guards the fields below.
	mu sync.Mutex
	// index maps the hash of an id to its slot. Of several ids with one
	// hash, only the first to arrive is here; the others are in collided.
	index map[uint64]uint32
	// collided maps ids whose hash was already in index to their slots.
	// With 64-bit keyed hashes it stays empty in practice, but a store that
	// relied on that would lose an item in the rare case.
	collided map[string]uint32
	// slots locate the items; a free slot is the zero slot.
	slots []slot
	// free lists the free slots, for reuse.
	free []uint32
	// arena holds the ids and items.
	arena arena
	// hash hashes ids for index. Tests replace it to force collisions.
	hash func(id string) uint64
}

// A slot locates one id and its item, stored back to back in an arena
// block.
type slot struct {
	block   uint64 // the arena block
	class   uint16 // its size class; 0 if the slot is free
	idLen   uint16
	itemLen uint32 // unused for bigClass, whose item fills the rest of the chunk
}

// seedItems are the items of FastAPI's "Additional Status Codes" example.
var seedItems = map[string]string{
	"foo": `"Fighters"6`,
	"bar": `"Tenders"3`,
}

// NewStore returns a store holding the example's seed items, or an empty one
// if seed is false.
func NewStore(seed bool) *Store {
	hashSeed := maphash.MakeSeed() // random, so that no client can plan collisions
	s := &Store{
		index: make(map[uint64]uint32),
		hash:  func(id string) uint64 { return maphash.String(hashSeed, id) },
	}
	if seed {
		for id, it := range seedItems {
			s.Put(id, []byte(it), nil)
		}
	}
	return s
}

// Get appends the item stored under id to dst and reports whether there is
// one.
func (s *Store) Get(dst []byte, id string) ([]byte, bool) {
	h := s.hash(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.find(id, h)
	if !ok {
		return dst, false
	}
	return append(dst, s.item(n)...), true
}

// Put stores it, an item in stored form, under id, replacing any item there,
// if pre allows it. It reports whether the item is new and whether it was
// written. Put copies id and it, so the caller may reuse both. An id may be
// at most 65535 bytes long.
func (s *Store) Put(id string, it []byte, pre Precondition) (created, written bool) {
	if len(id) > math.MaxUint16 {
		panic("store: id too long") // the handler allows maxIDLen bytes
	}
	h := s.hash(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	n, exists := s.find(id, h)
	var current []byte
	if exists {
		current = s.item(n)
	}
	if pre != nil && !pre(current, exists) {
		return false, false
	}
	if !exists {
		n = s.newSlot()
		if _, taken := s.index[h]; taken {
			if s.collided == nil {
				s.collided = make(map[string]uint32)
			}
			s.collided[id] = n
		} else {
			s.index[h] = n
		}
	}
	s.write(n, id, it)
	return !exists, true
}

// Delete removes the item stored under id if there is one and pre allows it.
// It reports whether there was an item and whether it was removed; pre is not
// consulted when there is none.
func (s *Store) Delete(id string, pre Precondition) (found, deleted bool) {
	h := s.hash(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	n, found := s.find(id, h)
	if !found {
		return false, false
	}
	if pre != nil && !pre(s.item(n), true) {
		return true, false
	}
	if m, ok := s.index[h]; ok && m == n {
		delete(s.index, h)
	} else {
		delete(s.collided, id)
	}
	s.arena.release(s.slots[n].block, s.slots[n].class)
	s.slots[n] = slot{}
	s.free = append(s.free, n)
	return true, true
}

// An Entry is an id with its item, as returned by All.
type Entry struct {
	ID, Item []byte
}

// All returns every stored item, sorted by id. The lock is held only to copy
// the ids and items into one buffer; sorting happens outside it.
func (s *Store) All() []Entry {
	s.mu.Lock()
	size := 0
	for _, sl := range s.slots {
		size += len(s.entry(sl))
	}
	buf := make([]byte, 0, size)
	entries := make([]Entry, 0, len(s.slots)-len(s.free))
	for _, sl := range s.slots {
		if sl.class == 0 {
			continue // free
		}
		start := len(buf)
		buf = append(buf, s.entry(sl)...)
		idEnd := start + int(sl.idLen)
		entries = append(entries, Entry{ID: buf[start:idEnd:idEnd], Item: buf[idEnd:len(buf):len(buf)]})
	}
	s.mu.Unlock()
	slices.SortFunc(entries, func(a, b Entry) int { return bytes.Compare(a.ID, b.ID) })
	return entries
}

// find returns the slot of id, whose hash is h, and whether there is one.
// s.mu must be held.
func (s *Store) find(id string, h uint64) (uint32, bool) {
	if n, ok := s.index[h]; ok && string(s.id(n)) == id {
		return n, true
	}
	if len(s.collided) == 0 {
		return 0, false
	}
	n, ok := s.collided[id]
	return n, ok
}

// newSlot returns a free slot, growing s.slots if there is none. s.mu must
// be held.
func (s *Store) newSlot() uint32 {
	if n := len(s.free); n > 0 {
		slot := s.free[n-1]
		s.free = s.free[:n-1]
		return slot
	}
	s.slots = append(s.slots, slot{})
	return uint32(len(s.slots) - 1)
}

// write stores id and it in slot n: in place if they need a block of the
// class the slot has, else in a new block, freeing the old one. s.mu must be
// held.
func (s *Store) write(n uint32, id string, it []byte) {
	sl := &s.slots[n]
	size := len(id) + len(it)
	if class := sizeClass(size); class != sl.class || class == bigClass {
		if sl.class != 0 {
			s.arena.release(sl.block, sl.class)
		}
		*sl = slot{block: s.arena.alloc(size, class), class: class, idLen: uint16(len(id))}
	}
	sl.itemLen = uint32(len(it)) // perhaps truncated for bigClass, which does not use it
	b := s.entry(*sl)
	copy(b, id) // the same bytes again, if in place
	copy(b[len(id):], it)
}

// entry returns the id and item of sl, back to back. s.mu must be held.
func (s *Store) entry(sl slot) []byte {
	if sl.class == 0 {
		return nil
	}
	chunk := s.arena.chunks[sl.block>>32]
	if sl.class == bigClass {
		return chunk
	}
	start := uint32(sl.block)
	return chunk[start : start+uint32(sl.idLen)+sl.itemLen]
}

// id returns the id in slot n. s.mu must be held.
func (s *Store) id(n uint32) []byte { return s.entry(s.slots[n])[:s.slots[n].idLen] }

// item returns the item in slot n. s.mu must be held.
func (s *Store) item(n uint32) []byte { return s.entry(s.slots[n])[s.slots[n].idLen:] }

// Arena blocks come in size classes, multiples of blockUnit bytes up to
// maxBlock, and bigClass for anything bigger. Rounding up to 16 bytes wastes
// about as much as Go's own allocator would, and keeps the number of free
// lists small.
const (
	blockUnit = 16
	maxBlock  = 4 << 10
	chunkSize = 64 << 10
	bigClass  = math.MaxUint16
)

// sizeClass returns the class of a block for size bytes: size rounded up to
// a multiple of blockUnit, in units, or bigClass if size is over maxBlock.
func sizeClass(size int) uint16 {
	if size > maxBlock {
		return bigClass
	}
	return uint16(max(1, (size+blockUnit-1)/blockUnit))
}

// An arena hands out blocks of bytes, addressed as chunk index << 32 |
// offset, so that those who keep them hold no pointers. Small blocks are
// carved from shared chunks of chunkSize bytes; a freed one goes on the free
// list of its class, for the next block of that class. A block over maxBlock
// is a chunk of its own, dropped when it is freed. Memory freed in one class
// is not reused by another: a store is expected to hold items of much the
// same sizes over its life.
type arena struct {
	chunks [][]byte
	// current is the index of the chunk being carved, and room how many
	// bytes are left at its end.
	current uint32
	room    int
	// unused lists the indexes of dropped chunks, for reuse.
	unused []uint32
	// free lists the free blocks of each class.
	free [maxBlock/blockUnit + 1][]uint64
}

// alloc returns a block of size bytes, whose class is class.
func (a *arena) alloc(size int, class uint16) uint64 {
	if class == bigClass {
		return uint64(a.newChunk(size)) << 32
	}
	if list := a.free[class]; len(list) > 0 {
		a.free[class] = list[:len(list)-1]
		return list[len(list)-1]
	}
	blockSize := int(class) * blockUnit
	if a.room < blockSize {
		if rest := a.room; rest > 0 {
			// Sizes are multiples of blockUnit, so the rest of the
			// chunk is a free block of a smaller class.
			a.release(a.carve(rest), uint16(rest/blockUnit))
		}
		a.current, a.room = a.newChunk(chunkSize), chunkSize
	}
	return a.carve(blockSize)
}

// carve cuts a block of size bytes from the rest of the current chunk.
func (a *arena) carve(size int) uint64 {
	block := uint64(a.current)<<32 | uint64(chunkSize-a.room)
	a.room -= size
	return block
}

// newChunk allocates a chunk of size bytes and returns its index.
func (a *arena) newChunk(size int) uint32 {
	chunk := make([]byte, size)
	if n := len(a.unused); n > 0 {
		i := a.unused[n-1]
		a.unused = a.unused[:n-1]
		a.chunks[i] = chunk
		return i
	}
	a.chunks = append(a.chunks, chunk)
	return uint32(len(a.chunks) - 1)
}

// release frees block, whose class is class.
func (a *arena) release(block uint64, class uint16) {
	if class == bigClass {
		i := uint32(block >> 32)
		a.chunks[i] = nil
		a.unused = append(a.unused, i)
		return
	}
	a.free[class] = append(a.free[class], block)
}
