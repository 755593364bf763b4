// Package arena is the store's memory: a map from id to item that keeps no
// pointer per item, and the ids in order, for pages.
//
// Why: a map[string][]byte holds two pointers per item, and the garbage
// collector follows every one of them on every cycle. With a million items
// stored, each cycle spent about 105 ms of CPU marking them, and the requests
// it ran beside waited.
//
// What it buys, at 1,000,000 items, measured against a plain
// map[string][]byte in the same store on the same routes (bench/README.md):
// peak RSS 1.58 times lower (167 vs 265 MiB); 0.65 ms of CPU per GC cycle
// instead of about 105 ms (GODEBUG=gctrace=1); p99 latency 2-5 ms instead of
// 12-14 ms; and creates into a growing store 10-20% faster.
//
// What it stands in for: map[string][]byte, with a sort of the keys for
// pages. TestMatchesMap holds a Map to one, through every path in and out,
// and TestSortOrder holds its order to a sort.
//
// How: each id and its item lie side by side in a block of an arena; a slot
// records where, and an index finds the slot by a keyed hash of the id. For
// pages, an order lists the slots by id, in runs of slot numbers.
package arena

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"math"
	"slices"
	"sort"
)

// A Map maps ids to items. It is not safe for concurrent use.
type Map struct {
	// index finds the slot of an id: a hash table, probed from the entry
	// that the id's hash picks to the first empty one. An entry holds the
	// low 32 bits of the hash above the slot number plus one, so that 0 is
	// empty and growing needs no id. It is never over 3/4 full. At a
	// million ids it holds 16 MiB, where a map[uint64]uint32 held 36
	// (bench/README.md).
	index []uint64
	// slots locate the items; a free slot is the zero slot.
	slots []slot
	// free lists the free slots, for reuse.
	free []uint32
	// order lists the used slots in id order, for pages: in runs of at most
	// maxRun, each sorted and before the next, so that an insert moves at
	// most maxRun numbers and the GC sees a pointer per run, not per item.
	order [][]uint32
	// lasts bounds the runs, so that finding a run reads this one small
	// array and not the arena: lasts[i] is at least the prefix of the last
	// id of run i, and at most that of the first id of run i+1. A split
	// sets it; inserts and deletes keep it true as it is.
	lasts []uint64
	// next is where the last insert into order would put the next id:
	// creates often come in id order or near it, and then nearHint finds
	// the next id's place there, or a few places from it, with a few
	// compares and not a search.
	next place
	// unordered says that order is left alone until SortOrder builds it:
	// a replay's million inserts would each search it.
	unordered bool
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

// New returns an empty map whose hash has a seed of its own.
func New() *Map {
	seed := maphash.MakeSeed() // random, so that no client can plan collisions
	return &Map{
		index: make([]uint64, 16), // a power of two, as the probes' mask needs
		hash:  func(id string) uint64 { return maphash.String(seed, id) },
	}
}

// Get returns the item stored under id, valid until the next change, and
// whether there is one.
func (m *Map) Get(id string) ([]byte, bool) {
	n, _, ok := m.find(id, uint32(m.hash(id)))
	if !ok {
		return nil, false
	}
	return m.entry(m.slots[n])[m.slots[n].idLen:], true
}

// Len returns the number of items.
func (m *Map) Len() int { return len(m.slots) - len(m.free) }

// Put stores a copy of it under id, replacing any item there, and reports
// whether the item is new.
func (m *Map) Put(id string, it []byte) (created bool) {
	if len(id) > math.MaxUint16 {
		panic("arena: id too long") // the service allows 1024 bytes
	}
	h := uint32(m.hash(id))
	n, at, exists := m.find(id, h)
	if !exists {
		if k := len(m.free); k > 0 {
			n, m.free = m.free[k-1], m.free[:k-1]
		} else {
			n = uint32(len(m.slots))
			m.slots = append(m.slots, slot{})
		}
		m.index[at] = uint64(h)<<32 | uint64(n+1)
		if m.Len()*4 > len(m.index)*3 {
			m.growIndex()
		}
		if !m.unordered {
			m.insertInOrder(n, id)
		}
	}
	m.write(n, id, it)
	return !exists
}

// maxRun bounds the runs of Map.order.
const maxRun = 1024

// A place in Map.order: a run, and a place in it.
type place struct{ run, at int }

// insertInOrder puts slot n, for id, in its place in order.
func (m *Map) insertInOrder(n uint32, id string) {
	if len(m.order) == 0 {
		m.order, m.lasts = append(m.order, newRun(nil)), append(m.lasts, 0)
	}
	p, ok := m.nearHint(id)
	if !ok {
		p.run, p.at = m.seek(id)
	}
	r := slices.Insert(m.order[p.run], p.at, n)
	m.next = place{p.run, p.at + 1}
	if len(r) > maxRun { // and the hint goes stale, for seek to replace
		m.order = slices.Insert(m.order, p.run+1, newRun(r[len(r)/2:]))
		m.lasts = slices.Insert(m.lasts, p.run+1, m.lasts[p.run])
		r = r[:len(r)/2]
		m.lasts[p.run] = prefix(m.id(r[len(r)-1]))
	}
	m.order[p.run] = r
}

// nearby is how many places from the hint nearHint looks, each way.
const nearby = 4

// nearHint returns where id, which is not in the map, goes if that is at the
// hint or within nearby places of it in its run, and whether it is. Creates
// often come in id order or near it (counters, timestamps), and those of
// many clients at once a little out of order: of wrk's creates on 32
// connections, 86% went just before the last insert, and 9% one place
// before that. Each compare reads an id through the arena, so none is made
// twice: two place an id in order, or just before the last insert. The
// walks check each place they pass, so a stale hint is safe.
func (m *Map) nearHint(id string) (place, bool) {
	p := m.next
	if p.run >= len(m.order) { // stale: runs were deleted
		return p, false
	}
	r := m.order[p.run]
	p.at = min(p.at, len(r))
	back := 0
	for ; p.at > 0 && id < string(m.id(r[p.at-1])); p.at-- {
		if back++; back > nearby {
			return p, false
		}
	}
	for ahead := 0; back == 0 && p.at < len(r) && string(m.id(r[p.at])) < id; p.at++ {
		if ahead++; ahead > nearby {
			return p, false
		}
	}
	// id goes at p in r, after the id before p and before the one at p. At
	// either end of r, it may belong to the run beside it instead: that is
	// left to seek, which keeps the fences true, unless it goes after every
	// id.
	return p, p.at > 0 && (p.at < len(r) || p.run == len(m.order)-1)
}

// newRun returns a run of order holding slots, with room for maxRun+1 so
// that it is never copied to grow: the copies would be garbage.
func newRun(slots []uint32) []uint32 {
	return append(make([]uint32, 0, maxRun+1), slots...)
}

// DeferOrder stops keeping the ids in order until SortOrder: a journal's
// replay of a million changes would otherwise search the order for each.
// Page must not be called in between.
func (m *Map) DeferOrder() { m.unordered = true }

// SortOrder builds the order from scratch, and keeps it from then on. It
// sorts the slots by their ids' first 8 bytes, held beside them, with a radix
// sort, then compares whole ids only where those bytes tie. Inserting one by
// one costs 30 times as much, and a comparison sort 8 times.
func (m *Map) SortOrder() {
	keys := make([]prefixedSlot, 0, m.Len())
	for n, sl := range m.slots {
		if sl.class != 0 {
			keys = append(keys, prefixedSlot{prefix(m.id(uint32(n))), uint32(n)})
		}
	}
	keys = radixSort(keys)
	for i, j := 0, 0; i < len(keys); i = j {
		for j = i + 1; j < len(keys) && keys[j].prefix == keys[i].prefix; j++ {
		}
		if j-i > 1 {
			slices.SortFunc(keys[i:j], func(a, b prefixedSlot) int { return bytes.Compare(m.id(a.slot), m.id(b.slot)) })
		}
	}
	m.order, m.lasts, m.unordered = nil, nil, false
	for chunk := range slices.Chunk(keys, maxRun/2) {
		r := newRun(nil)
		for _, k := range chunk {
			r = append(r, k.slot)
		}
		m.order, m.lasts = append(m.order, r), append(m.lasts, chunk[len(chunk)-1].prefix)
	}
}

// A prefixedSlot is a slot with the prefix of its id.
type prefixedSlot struct {
	prefix uint64
	slot   uint32
}

// prefix returns the first 8 bytes of id, big-endian and padded with
// zeros: where the prefixes of two ids differ, they order the ids.
func prefix[S string | []byte](id S) uint64 {
	var p [8]byte
	copy(p[:], id)
	return binary.BigEndian.Uint64(p[:])
}

// radixSort sorts keys by prefix, a byte at a time from the last, each pass
// keeping the order of the one before, and returns them sorted: in keys or
// in a buffer of its own.
func radixSort(keys []prefixedSlot) []prefixedSlot {
	buf := make([]prefixedSlot, len(keys))
	for shift := 0; shift < 64; shift += 8 {
		var start [257]int // start[b+1] counts, then start[b] places, the keys whose byte is b
		for _, k := range keys {
			start[k.prefix>>shift&0xff+1]++
		}
		if len(keys) == 0 || start[keys[0].prefix>>shift&0xff+1] == len(keys) {
			continue // one byte for all: the pass would change nothing
		}
		for b := 1; b < len(start); b++ {
			start[b] += start[b-1]
		}
		for _, k := range keys {
			b := k.prefix >> shift & 0xff
			buf[start[b]] = k
			start[b]++
		}
		keys, buf = buf, keys
	}
	return keys
}

// seek returns where id is, or would go, in order: the run and the place in
// it. An id after every id goes at the end of the last run.
func (m *Map) seek(id string) (run, at int) {
	if len(m.order) == 0 {
		return 0, 0
	}
	p := prefix(id)
	run = sort.Search(len(m.order)-1, func(i int) bool { // else the last run
		if m.lasts[i] != p {
			return m.lasts[i] > p
		}
		r := m.order[i]
		return string(m.id(r[len(r)-1])) >= id
	})
	at = sort.Search(len(m.order[run]), func(j int) bool { return string(m.id(m.order[run][j])) >= id })
	return run, at
}

// id returns the id in slot n. It does not go through entry, whose item
// bounds a search's compares have no use for.
func (m *Map) id(n uint32) []byte {
	sl := &m.slots[n]
	start := uint32(sl.block) // 0 for bigClass, whose block is a chunk
	return m.arena.chunks[sl.block>>32][start : start+uint32(sl.idLen)]
}

// Page calls fn with the ids and items that sort after after, in order, at
// most limit of them. The id and item are valid only during the call. If
// more follow, it returns the last id it gave fn, valid until the next
// change; else nil.
func (m *Map) Page(after string, limit int, fn func(id, it []byte)) (last []byte) {
	run, at := m.seek(after)
	if run < len(m.order) && at < len(m.order[run]) && string(m.id(m.order[run][at])) == after {
		at++
	}
	for ; run < len(m.order); run, at = run+1, 0 {
		for _, n := range m.order[run][at:] {
			if limit == 0 {
				return last
			}
			limit--
			b := m.entry(m.slots[n])
			last = b[:m.slots[n].idLen]
			fn(last, b[m.slots[n].idLen:])
		}
	}
	return nil
}

// Delete removes the item stored under id, and reports whether there was
// one.
func (m *Map) Delete(id string) (found bool) {
	n, at, found := m.find(id, uint32(m.hash(id)))
	if !found {
		return false
	}
	m.unindex(at)
	if !m.unordered {
		run, at := m.seek(id)
		m.order[run] = slices.Delete(m.order[run], at, at+1)
		if len(m.order[run]) == 0 {
			m.order, m.lasts = slices.Delete(m.order, run, run+1), slices.Delete(m.lasts, run, run+1)
		}
	}
	m.arena.release(m.slots[n].block, m.slots[n].class)
	m.slots[n] = slot{}
	m.free = append(m.free, n)
	return true
}

// find returns the slot of id, whose hash is h, and whether there is one;
// and the index entry that holds it, or that would.
func (m *Map) find(id string, h uint32) (n uint32, at int, found bool) {
	mask := len(m.index) - 1
	for at = int(h) & mask; m.index[at] != 0; at = (at + 1) & mask {
		if e := m.index[at]; uint32(e>>32) == h && string(m.id(uint32(e)-1)) == id {
			return uint32(e) - 1, at, true
		}
	}
	return 0, at, false
}

// growIndex doubles the index, placing each entry by the hash it holds.
func (m *Map) growIndex() {
	old := m.index
	m.index = make([]uint64, 2*len(old))
	mask := len(m.index) - 1
	for _, e := range old {
		if e == 0 {
			continue
		}
		at := int(e>>32) & mask
		for m.index[at] != 0 {
			at = (at + 1) & mask
		}
		m.index[at] = e
	}
}

// unindex empties index entry at, moving back into the gap each entry
// after it that a probe from its own hash would no longer reach.
func (m *Map) unindex(at int) {
	mask := len(m.index) - 1
	for next := (at + 1) & mask; m.index[next] != 0; next = (next + 1) & mask {
		if home := int(m.index[next]>>32) & mask; (next-home)&mask >= (next-at)&mask {
			m.index[at], at = m.index[next], next
		}
	}
	m.index[at] = 0
}

// write stores id and it in slot n: in place if they need a block of the
// class the slot has, else in a new block, freeing the old one.
func (m *Map) write(n uint32, id string, it []byte) {
	sl := &m.slots[n]
	size := len(id) + len(it)
	if class := sizeClass(size); class != sl.class || class == bigClass {
		if sl.class != 0 {
			m.arena.release(sl.block, sl.class)
		}
		*sl = slot{block: m.arena.alloc(size, class), class: class, idLen: uint16(len(id))}
	}
	sl.itemLen = uint32(len(it)) // perhaps truncated for bigClass, which does not use it
	b := m.entry(*sl)
	copy(b, id) // the same bytes again, if in place
	copy(b[len(id):], it)
}

// entry returns the id and item of sl, back to back.
func (m *Map) entry(sl slot) []byte {
	chunk := m.arena.chunks[sl.block>>32]
	if sl.class == bigClass {
		return chunk
	}
	start := uint32(sl.block)
	return chunk[start : start+uint32(sl.idLen)+sl.itemLen]
}

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
