package main

// This file holds the store's journal: with -data FILE, every change is
// appended to FILE and synced before anyone learns of it, and FILE is
// replayed at start-up.
//
// Why: without it, a restart loses every item.
//
// The format: one line per change, for standard tools to read. A line is the
// CRC-32C of the rest of it in 8 hex digits, a space, and a JSON object that
// maps the id to the item, or to null for a deletion. A file starts with the
// empty object, so that a journal of no items is not an empty file, which
// would be seeded again:
//
//	297bd0aa {}
//	14049bca {"foo":{"name":"Fighters","size":6}}
//	13046018 {"bar":null}
//
// A line cut short or failing its checksum is a torn write if it is the last
// one: it was never acknowledged, and is dropped. Anywhere else it is
// corruption, and the store refuses to open.
//
// Group commit: a writer decides under the store's mu, adds its change to
// the next batch and waits for syncMu; the first of the batch's writers to
// get it writes and syncs the batch for all, while new writers fill the batch
// after it. A batch's changes become visible, in journal order, once it is
// synced. Writers decide against the changes still waiting (two racing
// creates still make one 201), and a failed batch fails the batch after it
// too, since its changes were decided on top. A refusal that rests on a
// change still waiting (a 404 or 412) waits for it, then is decided again.
//
// Compaction: once the file is over twice what the live items take, plus
// compactSlack, a goroutine copies them a few at a time, while writers go on,
// and writes and syncs them to FILE.tmp. Then, under syncMu, it adds the
// records synced meanwhile (replayed on top, they bring every item up to
// date), syncs FILE.tmp again, renames it over FILE and syncs the directory.
// A crash leaves FILE old or new, and whole.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"itemsvc/internal/itemjson"
)

const (
	// compactSlack is how far past twice its live items a journal grows
	// before it is compacted, so that a small store is not rewritten every
	// few writes.
	compactSlack = 1 << 20
	// compactStep is how many items compaction copies per hold of the
	// store's lock: a tenth of a millisecond's work.
	compactStep = 1024
	// opening is the record that a journal file starts with.
	opening = "297bd0aa {}\n"
)

// A journal keeps a store's changes in a file.
type journal struct {
	path        string
	logger      *slog.Logger
	compactions sync.WaitGroup

	// syncMu is held by the goroutine that writes the file, and guards the
	// fields below it and the outcomes of batches.
	syncMu sync.Mutex
	file   journalFile
	size   int64 // the length of the file's valid, durable part
	// broken says that what follows size must be cut off before the next
	// write: a failed write's remains, or a torn record.
	broken  bool
	retryAt int64 // the size a failed compaction waits for
	// compacting is held by the compaction running, if any.
	compacting sync.Mutex

	// The store's mu guards the fields below.
	pending map[string]pendingChange // the latest change to each id that waits for its batch
	next    *batch
	live    int64 // the length of the live items' records
}

// A journalFile is the journal's file: an *os.File, but for tests, which wrap
// it to inject faults.
type journalFile interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Truncate(size int64) error
	Close() error
}

// A batch is the changes that one write and sync of the journal makes
// durable.
type batch struct {
	records []byte
	changes []change
	// done is set once the batch is synced, or failed with err. syncMu
	// guards both.
	done bool
	err  error
}

// A change puts item under id, or deletes id if item is nil.
type change struct {
	id   string
	item []byte
}

// A pendingChange is a change that waits for its batch.
type pendingChange struct {
	item  []byte // nil for a deletion
	batch *batch
}

// OpenStore returns a store kept in the journal at path, or in memory only if
// path is "". An existing journal is replayed; a missing or empty one starts
// with the seed items, if seed, and is written. It fails if the journal is
// corrupt or in use.
func OpenStore(path string, seed bool, logger *slog.Logger) (*Store, error) {
	if path == "" {
		return NewStore(seed), nil
	}
	start := time.Now()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	j := &journal{path: path, logger: logger, file: f, pending: map[string]pendingChange{}, next: new(batch)}
	s := &Store{items: newArenaMap(), journal: j}
	var data []byte
	if err = lock(f); err == nil {
		data, err = os.ReadFile(path)
	}
	if err == nil && len(data) == 0 { // new: written whole, as a compaction of the seed
		for id, it := range seedItems {
			if seed {
				s.apply(change{id, []byte(it)})
			}
		}
		err = s.rewrite()
	} else if err == nil {
		err = s.replay(data)
	}
	if err != nil {
		j.file.Close()
		return nil, err
	}
	logger.Info("journal opened", "path", path, "items", s.items.len(), "bytes", j.size, "duration", time.Since(start))
	return s, nil
}

// lock locks f for this process alone: two writers would corrupt a journal.
func lock(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return fmt.Errorf("%s is in use by another process", f.Name())
	}
	return err
}

// replay applies the records in data, the whole journal, up to a torn last
// record, which the next write cuts off. Another goroutine parses the records
// while this one applies them: on two cores, a start takes about 60% as
// long as on one.
func (s *Store) replay(data []byte) (err error) {
	parsed := make(chan []change, 8)
	go func() {
		defer close(parsed)
		err = s.journal.parse(data, parsed)
	}()
	s.items.unordered = true
	for batch := range parsed {
		for _, c := range batch {
			s.set(c.id, c.item)
		}
	}
	s.items.sortOrder()
	// In one pass at the end, not per record: a lookup in a big map costs more.
	s.items.page("", math.MaxInt, func(id, it []byte) { s.journal.live += recordSize(id, it) })
	return err
}

// replayBatch is how many changes parse hands on at a time.
const replayBatch = 1024

// parse sends the changes in data to parsed, in batches, and moves j.size
// past each good record.
func (j *journal) parse(data []byte, parsed chan<- []change) error {
	batch := make([]change, 0, replayBatch)
	var items []byte // the batch's items, back to back
	defer func() { parsed <- batch }()
	for j.size < int64(len(data)) {
		line, rest, whole := bytes.Cut(data[j.size:], []byte("\n"))
		c, ok := parseRecord(line, items)
		if c.item != nil {
			items, c.item = c.item, c.item[len(items):]
		}
		if !ok || !whole {
			if len(rest) > 0 {
				return fmt.Errorf("%s: corrupt record at offset %d", j.path, j.size)
			}
			j.logger.Warn("journal: dropping a torn last record", "path", j.path, "offset", j.size, "bytes", int64(len(data))-j.size)
			j.broken = true
			return nil
		}
		if c.id != "" { // else the file's opening {}
			batch = append(batch, c)
		}
		if len(batch) == replayBatch {
			parsed <- batch
			batch, items = make([]change, 0, replayBatch), nil
		}
		j.size += int64(len(line)) + 1
	}
	return nil
}

// castagnoli is the CRC-32C table; CPUs compute it in hardware.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checksum returns the CRC-32C of payload in 8 hex digits. (fmt would
// allocate, and take a sixth of the replay's time.)
func checksum(payload []byte) (hex [8]byte) {
	crc := crc32.Checksum(payload, castagnoli)
	for i := range hex {
		hex[i] = "0123456789abcdef"[crc>>28]
		crc <<= 4
	}
	return hex
}

// appendRecord appends the journal line of a put of it, in stored form,
// under id, or of the deletion of id if it is nil.
func appendRecord[T string | []byte](b []byte, id T, it []byte) []byte {
	start := len(b)
	b = append(itemjson.AppendString(append(b, "checksum {"...), id), ':')
	if it == nil {
		b = append(b, "null"...)
	} else {
		b = itemjson.AppendObject(b, it)
	}
	b = append(b, '}')
	sum := checksum(b[start+len("checksum "):])
	copy(b[start:], sum[:])
	return append(b, '\n')
}

// recordSize is the length of appendRecord's line for a put of it under id.
func recordSize[T string | []byte](id T, it []byte) int64 {
	var buf [64]byte
	const rest = len("checksum {:}\n") + len(`{"name":,"size":}`)
	return int64(len(itemjson.AppendString(buf[:0], id)) + len(it) + rest)
}

// parseRecord returns the change in line, a record without its newline, with
// its item appended to dst, and whether it is well formed. The opening {} is
// a change with no id.
func parseRecord(line, dst []byte) (c change, ok bool) {
	if len(line) < len(opening)-1 || line[8] != ' ' || checksum(line[9:]) != [8]byte(line) {
		return c, false
	}
	p := line[9:] // {"<id>":<item or null>}, or {}
	if string(p) == "{}" {
		return c, true
	}
	end := 1 + itemjson.StringLen(p[1:]) // just past the id
	if p[0] != '{' || end == 1 || end >= len(p) || p[end] != ':' || p[len(p)-1] != '}' {
		return c, false
	}
	if id := p[1:end]; bytes.IndexByte(id, '\\') < 0 {
		c.id = string(id[1 : len(id)-1])
	} else if json.Unmarshal(id, &c.id) != nil {
		return c, false
	}
	if value := p[end+1 : len(p)-1]; string(value) != "null" {
		if c.item, ok = itemjson.ParseObject(dst, value); !ok {
			return c, false
		}
	}
	return c, checkID(c.id) == nil
}

// apply makes c, which is durable, visible. The store's mu must be held.
func (s *Store) apply(c change) {
	if old, ok := s.items.get(c.id); ok {
		s.journal.live -= recordSize(c.id, old)
	}
	if c.item != nil {
		s.journal.live += recordSize(c.id, c.item)
	}
	s.set(c.id, c.item)
}

// change puts it under id, or deletes id if it is nil, if allow lets it. With
// a journal, it returns once the change is durable and visible, or has
// failed. It reports whether id had an item and whether the change was made.
func (s *Store) change(id string, it []byte, allow Precondition) (existed, written bool, err error) {
	j := s.journal
	for {
		s.mu.Lock()
		current, exists := s.items.get(id)
		var p pendingChange // the change to id waiting for its batch, if any
		var waiting bool
		if j != nil {
			if p, waiting = j.pending[id]; waiting {
				current, exists = p.item, p.item != nil
			}
		}
		if allow != nil && !allow(current, exists) {
			s.mu.Unlock()
			if !waiting {
				return exists, false, nil
			}
			_ = s.commit(p.batch) // the refusal rests on a change that may yet fail
			continue
		}
		if j == nil {
			s.set(id, it)
			s.mu.Unlock()
			return exists, true, nil
		}
		b := j.next
		it = bytes.Clone(it)
		b.records = appendRecord(b.records, id, it)
		b.changes = append(b.changes, change{id, it})
		j.pending[id] = pendingChange{it, b}
		s.mu.Unlock()
		return exists, true, s.commit(b)
	}
}

// commit returns once batch b is durable and visible, or has failed. The
// first of its writers to get syncMu writes it for all, and starts a
// compaction if one is due.
func (s *Store) commit(b *batch) error {
	j := s.journal
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	if b.done {
		return b.err
	}
	s.mu.Lock()
	j.next = new(batch)
	s.mu.Unlock()
	err := j.write(b.records)
	s.mu.Lock()
	if err == nil {
		for _, c := range b.changes {
			s.apply(c)
			if j.pending[c.id].batch == b {
				delete(j.pending, c.id)
			}
		}
	} else {
		j.logger.Error("journal: write failed; the changes are refused", "path", j.path, "err", err)
		clear(j.pending)
		j.next.done, j.next.err = true, err // decided on top of b
		j.next = new(batch)
	}
	due := err == nil && j.size > 2*j.live+compactSlack && j.size > j.retryAt
	s.mu.Unlock()
	b.done, b.err = true, err
	if due && j.compacting.TryLock() {
		j.compactions.Go(s.compact)
	}
	return err
}

// write appends records to the file and syncs it, after cutting off what
// follows the durable part if that is broken: a crash could otherwise bring
// back a refused change.
func (j *journal) write(records []byte) (err error) {
	if j.broken {
		err = errors.Join(j.file.Truncate(j.size), j.file.Sync(), syncDir(j.path))
	}
	if err == nil && len(records) > 0 {
		if _, err = j.file.WriteAt(records, j.size); err == nil {
			err = j.file.Sync()
		}
	}
	j.broken = err != nil
	if err == nil {
		j.size += int64(len(records))
	}
	return err
}

// syncDir syncs the directory that holds path, so that a new name there is
// durable.
func syncDir(path string) error {
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// compact compacts the journal (see the file comment) and logs how it went.
func (s *Store) compact() {
	j := s.journal
	defer j.compacting.Unlock()
	start := time.Now()
	err := s.rewrite()
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	switch {
	case err == nil:
		j.logger.Info("journal compacted", "path", j.path, "bytes", j.size, "duration", time.Since(start))
	case !errors.Is(err, os.ErrClosed): // else the store closed under it
		j.retryAt = j.size + compactSlack
		j.logger.Error("journal: compaction failed; the journal goes on as it was", "path", j.path, "err", err)
	}
}

// rewrite writes the live items to a new file and, under syncMu, the records
// synced since it began, and renames the file over the journal.
func (s *Store) rewrite() (err error) {
	j := s.journal
	j.syncMu.Lock()
	from := j.size
	j.syncMu.Unlock()
	tmp, err := os.Create(j.path + ".tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	snapshot := []byte(opening)
	for after, more := "", true; more; {
		s.mu.Lock()
		last := s.items.page(after, compactStep, func(id, it []byte) { snapshot = appendRecord(snapshot, id, it) })
		after, more = string(last), last != nil
		s.mu.Unlock()
	}
	if err := lock(tmp); err != nil {
		return err
	}
	if err := writeSynced(tmp, snapshot); err != nil {
		return err
	}

	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	tail := make([]byte, j.size-from)
	if _, err := j.file.ReadAt(tail, from); err != nil {
		return err
	}
	if err := writeSynced(tmp, tail); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), j.path); err != nil {
		return err
	}
	j.file.Close()
	j.file, j.size = tmp, int64(len(snapshot)+len(tail))
	j.broken = syncDir(j.path) != nil // if so, the next write syncs it again
	return nil
}

// writeSynced writes b to f and syncs it.
func writeSynced(f *os.File, b []byte) error {
	_, err := f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	return err
}

// Close waits for the write in progress and closes the journal, so that
// writes after it fail. It then waits for a compaction running to stop. A
// store in memory has nothing to close.
func (s *Store) Close() error {
	j := s.journal
	if j == nil {
		return nil
	}
	j.syncMu.Lock()
	err := j.file.Close()
	j.syncMu.Unlock()
	j.compactions.Wait()
	return err
}
