package main

import (
	"bytes"
	"errors"
	"log/slog"
	"math"
	"os"
	"sync"
	"time"

	"itemsvc/internal/arena"
	"itemsvc/internal/journal"
)

// Store is the item store: a map from id to item under one mutex. Every
// check-then-write happens in one critical section, so no caller can observe
// or act on a half-done change. Items are opaque bytes to it (the handler
// keeps them in itemjson's stored form), and Store copies what it is given
// and what it returns, so that nobody shares its memory (Page lends it, for
// the length of a call).
//
// A store opened with OpenStore on a file also keeps a journal, with group
// commit: a writer decides under mu, against the changes still waiting for
// the disk (two racing creates still make one 201), adds its change to the
// next batch and waits for commitMu. The first of the batch's writers to get
// it appends and syncs the batch for all, while new writers fill the batch
// after it; then the batch's changes become visible, in journal order. A
// failed batch fails the batch after it too, since its changes were decided
// on top. A refusal that rests on a change still waiting (a 404 or 412)
// waits for it, then is decided again.
type Store struct {
	// mu guards items and the fields below that say so. It is never held
	// across I/O.
	mu sync.Mutex
	// items maps ids to items. It is a map[string][]byte in all but its
	// memory layout, which the garbage collector never has to scan. With a
	// journal, it holds only what is durable.
	items *arena.Map

	// The journal and its group commit; journal is nil in memory.
	journal *journal.Journal
	logger  *slog.Logger
	// commitMu is held by the goroutine that appends a batch and by
	// compaction when it reads or replaces the file, and guards the journal
	// and retryAt. It is taken before mu, never after.
	commitMu sync.Mutex
	retryAt  int64                    // the journal size a failed compaction waits for
	pending  map[string]pendingChange // mu: the latest change to each id waiting for its batch
	next     *batch                   // mu: the batch that writers add to
	live     int64                    // mu: the length of the live items' records
	// compacting is held by the compaction running, if any.
	compacting  sync.Mutex
	compactions sync.WaitGroup
}

// A batch is the changes that one append and sync of the journal makes
// durable.
type batch struct {
	records []byte
	changes []journal.Change
	// done is set once the batch is synced, or failed with err. commitMu
	// guards both.
	done bool
	err  error
}

// A pendingChange is a change that waits for its batch.
type pendingChange struct {
	item  []byte // nil for a deletion
	batch *batch
}

// Compaction: once the journal is over twice what the live items take, plus
// compactSlack, a goroutine rewrites it with only the live items.
const (
	// compactSlack keeps a small store from being rewritten every few writes.
	compactSlack = 1 << 20
	// compactStep is how many items compaction copies per hold of mu: a
	// tenth of a millisecond's work.
	compactStep = 1024
)

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
	s := &Store{items: arena.New()}
	if seed {
		for id, it := range seedItems {
			s.Put(id, []byte(it), nil)
		}
	}
	return s
}

// OpenStore returns a store kept in the journal at path, or in memory only if
// path is "". An existing journal is replayed; a new or empty one starts with
// the seed items, if seed, and is written. It fails if the journal is corrupt
// or in use.
func OpenStore(path string, seed bool, logger *slog.Logger) (*Store, error) {
	if path == "" {
		return NewStore(seed), nil
	}
	start := time.Now()
	s := &Store{items: arena.New(), logger: logger, pending: map[string]pendingChange{}, next: new(batch)}
	s.items.DeferOrder()
	j, err := journal.Open(path, logger, func(id string) bool { return checkID(id) == nil }, s.set)
	if err != nil {
		return nil, err
	}
	s.items.SortOrder()
	// In one pass at the end, not per record: a lookup in a big map costs more.
	s.items.Page("", math.MaxInt, func(id, it []byte) { s.live += journal.RecordSize(id, it) })
	s.journal = j
	if j.Size() == 0 { // new: written whole, as a compaction of the seed
		for id, it := range seedItems {
			if seed {
				s.apply(journal.Change{ID: id, Item: []byte(it)})
			}
		}
		if err := s.rewrite(); err != nil {
			return nil, errors.Join(err, j.Close())
		}
	}
	logger.Info("journal opened", "path", path, "items", s.items.Len(), "bytes", j.Size(), "duration", time.Since(start))
	return s, nil
}

// Get returns the item stored under id and whether there is one.
func (s *Store) Get(id string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.items.Get(id)
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

// Page calls fn with the ids and items that sort after after, in byte
// order, at most limit of them, and returns the last id if more follow, or
// "". It calls fn under the lock, which it holds for O(log n + limit); fn must
// not use the store, and the id and item are valid only during the call.
func (s *Store) Page(after string, limit int, fn func(id, it []byte)) (last string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.items.Page(after, limit, fn))
}

// change puts it under id, or deletes id if it is nil, if allow lets it. With
// a journal, it returns once the change is durable and visible, or has
// failed. It reports whether id had an item and whether the change was made.
func (s *Store) change(id string, it []byte, allow Precondition) (existed, written bool, err error) {
	if s.journal == nil && allow == nil && it != nil { // nothing to decide: items finds id once, not twice
		s.mu.Lock()
		defer s.mu.Unlock()
		return !s.items.Put(id, it), true, nil
	}
	for {
		s.mu.Lock()
		current, exists := s.items.Get(id)
		p, waiting := s.pending[id] // the change to id waiting for its batch, if any
		if waiting {
			current, exists = p.item, p.item != nil
		}
		if allow != nil && !allow(current, exists) {
			s.mu.Unlock()
			if !waiting {
				return exists, false, nil
			}
			_ = s.commit(p.batch) // the refusal rests on a change that may yet fail
			continue
		}
		if s.journal == nil {
			s.set(journal.Change{ID: id, Item: it})
			s.mu.Unlock()
			return exists, true, nil
		}
		b := s.next
		it = bytes.Clone(it)
		b.records = journal.AppendRecord(b.records, id, it)
		b.changes = append(b.changes, journal.Change{ID: id, Item: it})
		s.pending[id] = pendingChange{it, b}
		s.mu.Unlock()
		return exists, true, s.commit(b)
	}
}

// commit returns once batch b is durable and visible, or has failed. The
// first of its writers to get commitMu appends it for all, and starts a
// compaction if one is due.
func (s *Store) commit(b *batch) error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	if b.done {
		return b.err
	}
	s.mu.Lock()
	s.next = new(batch)
	s.mu.Unlock()
	err := s.journal.Append(b.records)
	s.mu.Lock()
	if err == nil {
		for _, c := range b.changes {
			s.apply(c)
			if s.pending[c.ID].batch == b {
				delete(s.pending, c.ID)
			}
		}
	} else {
		s.logger.Error("journal: write failed; the changes are refused", "err", err)
		clear(s.pending)
		s.next.done, s.next.err = true, err // decided on top of b
		s.next = new(batch)
	}
	size := s.journal.Size()
	due := err == nil && size > 2*s.live+compactSlack && size > s.retryAt
	s.mu.Unlock()
	b.done, b.err = true, err
	if due && s.compacting.TryLock() {
		s.compactions.Go(s.compact)
	}
	return err
}

// apply makes c, which is durable, visible, and counts its record in live.
// mu must be held, unless the store is not yet shared (OpenStore's seed).
func (s *Store) apply(c journal.Change) {
	if old, ok := s.items.Get(c.ID); ok {
		s.live -= journal.RecordSize(c.ID, old)
	}
	if c.Item != nil {
		s.live += journal.RecordSize(c.ID, c.Item)
	}
	s.set(c)
}

// set makes c in items. mu must be held.
func (s *Store) set(c journal.Change) {
	if c.Item == nil {
		s.items.Delete(c.ID)
	} else {
		s.items.Put(c.ID, c.Item)
	}
}

// compact rewrites the journal and logs how it went.
func (s *Store) compact() {
	defer s.compacting.Unlock()
	start := time.Now()
	err := s.rewrite()
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	switch {
	case err == nil:
		s.logger.Info("journal compacted", "bytes", s.journal.Size(), "duration", time.Since(start))
	case !errors.Is(err, os.ErrClosed): // else the store closed under it
		s.retryAt = s.journal.Size() + compactSlack
		s.logger.Error("journal: compaction failed; the journal goes on as it was", "err", err)
	}
}

// rewrite replaces the journal with the records of the live items, copied a
// few at a time while writers go on, and those synced meanwhile.
func (s *Store) rewrite() error {
	s.commitMu.Lock()
	from := s.journal.Size()
	s.commitMu.Unlock()
	var snapshot []byte
	for after, more := "", true; more; {
		s.mu.Lock()
		last := s.items.Page(after, compactStep, func(id, it []byte) { snapshot = journal.AppendRecord(snapshot, id, it) })
		after, more = string(last), last != nil
		s.mu.Unlock()
	}
	next, err := s.journal.Prepare(snapshot)
	if err != nil {
		return err
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	return s.journal.Replace(next, from)
}

// Close waits for the write in progress and closes the journal, so that
// writes after it fail. It then waits for a compaction running to stop. A
// store in memory has nothing to close.
func (s *Store) Close() error {
	if s.journal == nil {
		return nil
	}
	s.commitMu.Lock()
	err := s.journal.Close()
	s.commitMu.Unlock()
	s.compactions.Wait()
	return err
}
