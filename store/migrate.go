package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Format 1 kept one ready index for all functions, bucket "ready", keyed
// by due time then sequence. Format 2 replaced it by the registry and the
// per-function index. Open migrates a format 1 file it opens for writing;
// see the package doc for why the steps below are safe to cut short.

// bucketReadyV1 is format 1's ready index.
var bucketReadyV1 = []byte("ready")

// keyMigrating holds, while a migration is under way, the sequence number
// of the last event moved: a migration cut short resumes after it.
var keyMigrating = []byte("migrating")

// migrateBatch bounds the events one transaction of the migration moves,
// so that no transaction holds a large backlog's pages dirty at once.
var migrateBatch = 4096

// migrateHook, nil outside tests, runs in each batch's transaction before
// it commits (committed false) and after it did (true); an error stops the
// migration there, as a crash would.
var migrateHook func(batch int, committed bool) error

// tally is what a function's record counts.
type tally struct{ events, leased, bytes int64 }

func (c *tally) add(state byte, size int64) {
	c.events++
	c.bytes += size
	if state == stateLeased {
		c.leased++
	}
}

// migrate moves a format 1 file to format 2 in batches of events, each its
// own transaction: for each event, its function gets a registry record
// (with an id) and, if the event is ready, its key moves from "ready" to
// "fnready". Leased events keep their lease: Open returns them afterwards,
// to the new index. The batch that reaches the end writes the counts of
// every function, drops what is left of "ready" and marks the file
// format 2, all at once, so the marker says 2 only of a file that is.
//
// Counts are never persisted half done: they are summed in memory as the
// batches commit and, when a migration resumes after being cut short, the
// events moved before the cut are counted again from the file.
func (s *Store) migrate() error {
	began := time.Now()
	sums := map[string]*tally{}
	var after uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keyMigrating)
		if len(v) != 8 {
			return nil
		}
		after = binary.BigEndian.Uint64(v)
		cur := tx.Bucket(bucketEvents).Cursor()
		for k, v := cur.First(); k != nil; k, v = cur.Next() {
			if len(k) != 8 {
				continue // not an event: left where it is
			}
			if binary.BigEndian.Uint64(k) > after {
				break
			}
			// Every record here decoded when its batch moved it: one that
			// did not was set aside then.
			if h, err := skimRecord(v); err == nil {
				tallyOf(sums, h.function).add(h.state, h.size)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	ids := map[string]uint32{}
	var moved int
	for batch := 1; ; batch++ {
		var t *txn
		var done bool
		local := map[string]*tally{}
		err := s.db.Update(func(tx *bolt.Tx) error {
			t = s.newTxn(tx)
			clear(local)
			var err error
			after, done, err = t.migrateBatch(after, ids, local)
			if err != nil {
				return err
			}
			if done {
				if err := t.finishMigration(sums, local); err != nil {
					return err
				}
			}
			if err := t.putCounts(); err != nil {
				return err
			}
			if migrateHook != nil {
				return migrateHook(batch, false)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("migrating to format %d: %w", formatVersion, err)
		}
		s.counts = t.c
		for name, c := range local {
			moved += int(c.events)
			sum := tallyOf(sums, []byte(name))
			sum.events, sum.leased, sum.bytes = sum.events+c.events, sum.leased+c.leased, sum.bytes+c.bytes
		}
		if migrateHook != nil {
			if err := migrateHook(batch, true); err != nil {
				return err
			}
		}
		if done {
			break
		}
	}
	s.log.Info("migrated the queue file to format 2", "path", s.path, "events", moved, "functions", len(sums), "took", time.Since(began))
	return nil
}

func tallyOf(sums map[string]*tally, name []byte) *tally {
	c := sums[string(name)]
	if c == nil {
		c = &tally{}
		sums[string(name)] = c
	}
	return c
}

// migrateBatch moves the events after seq after, up to migrateBatch of
// them, and returns the last one moved and whether none is left.
func (t *txn) migrateBatch(after uint64, ids map[string]uint32, local map[string]*tally) (uint64, bool, error) {
	type moving struct {
		seq uint64
		raw []byte
	}
	var batch []moving
	cur := t.events.Cursor()
	k, v := cur.Seek(seqKey(after + 1))
	for ; k != nil && len(batch) < migrateBatch; k, v = cur.Next() {
		if len(k) == 8 {
			// Copied: the writes below may move what bbolt's slices
			// point to.
			batch = append(batch, moving{binary.BigEndian.Uint64(k), clone(v)})
		}
	}
	done := k == nil
	old := t.tx.Bucket(bucketReadyV1)
	for _, m := range batch {
		after = m.seq
		r, err := decodeRecord(m.raw)
		if err == nil {
			err = checkFunction(r.function)
		}
		if err != nil {
			// Unreadable, its function unknown: set aside now, as its
			// next lease would have.
			if err := t.setAside(m.seq, err.Error(), m.raw, nil); err != nil {
				return 0, false, err
			}
			continue
		}
		id, err := t.migrationID(r.function, ids)
		if err != nil {
			return 0, false, err
		}
		if r.state == stateReady {
			if old != nil {
				if err := old.Delete(readyKey(r.due, m.seq)); err != nil {
					return 0, false, err
				}
			}
			if err := t.fnready.Put(fnReadyKey(id, r.priority, r.due, m.seq), []byte{}); err != nil {
				return 0, false, err
			}
		}
		tallyOf(local, []byte(r.function)).add(r.state, r.size())
	}
	if !done {
		return after, false, t.meta.Put(keyMigrating, seqKey(after))
	}
	return after, true, nil
}

// migrationID returns the id of function name, registering it with a
// record that counts nothing yet: the last batch writes the counts.
func (t *txn) migrationID(name string, ids map[string]uint32) (uint32, error) {
	if id, ok := ids[name]; ok {
		return id, nil
	}
	if v := t.functions.Get([]byte(name)); v != nil {
		// Registered by a batch before a cut.
		r, err := decodeFnRecord(v)
		if err != nil {
			return 0, &CorruptError{What: fmt.Sprintf("function %q", name), Err: err}
		}
		ids[name] = r.id
		return r.id, nil
	}
	// The id must be unique among the records written so far, which the
	// mirror (empty during a migration) does not know: the sequence
	// alone hands out ids never given before.
	id, err := t.functions.NextSequence()
	switch {
	case err != nil:
		return 0, err
	case id > 1<<32-1:
		return 0, errors.New("store: every function id is in use")
	}
	if err := t.functions.Put([]byte(name), fnRecord{id: uint32(id)}.encode()); err != nil {
		return 0, err
	}
	ids[name] = uint32(id)
	return uint32(id), nil
}

// finishMigration writes every function's counts (those of the batches
// committed before, sums, and of this one, local), drops the rest of
// format 1's index and marks the file format 2.
func (t *txn) finishMigration(sums, local map[string]*tally) error {
	var events, size int64
	var stale [][]byte
	err := t.functions.ForEach(func(k, v []byte) error {
		r, err := decodeFnRecord(v)
		if err != nil {
			return &CorruptError{What: fmt.Sprintf("function %q", k), Err: err}
		}
		var c tally
		for _, m := range []map[string]*tally{sums, local} {
			if x := m[string(k)]; x != nil {
				c.events, c.leased, c.bytes = c.events+x.events, c.leased+x.leased, c.bytes+x.bytes
			}
		}
		if c.events == 0 {
			stale = append(stale, clone(k))
			return nil
		}
		events, size = events+c.events, size+c.bytes
		r.events, r.leased, r.bytes = c.events, c.leased, c.bytes
		return t.functions.Put(clone(k), r.encode())
	})
	if err != nil {
		return err
	}
	for _, k := range stale {
		if err := t.functions.Delete(k); err != nil {
			return err
		}
	}
	if events != t.c.events || size != t.c.bytes {
		// Format 1 let bytes drift when a record was set aside: the
		// walk just made is the truth.
		t.s.log.Info("recounted while migrating", "events", events, "counted", t.c.events, "bytes", size, "counted_bytes", t.c.bytes)
		t.c.events, t.c.bytes = events, size
	}
	if err := t.tx.DeleteBucket(bucketReadyV1); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
		return err
	}
	if err := t.meta.Delete(keyMigrating); err != nil {
		return err
	}
	return t.meta.Put(keyFormat, []byte{formatVersion})
}

// The read-only calls on a format 1 file (or one whose migration was cut
// short), which has no usable per-function index: they walk the events.
// Read-only opens of old files are rare, and a walk reads every file the
// same, whichever index it has.

func legacyScheduled(tx *bolt.Tx, after uint64) (int64, error) {
	var n int64
	err := tx.Bucket(bucketEvents).ForEach(func(_, v []byte) error {
		if h, err := skimRecord(v); err == nil && h.state == stateReady && orderedTime(h.due) > after {
			n++
		}
		return nil
	})
	return n, err
}

func legacyNextDue(tx *bolt.Tx) (uint64, bool) {
	var due uint64
	var ok bool
	_ = tx.Bucket(bucketEvents).ForEach(func(_, v []byte) error {
		if h, err := skimRecord(v); err == nil && h.state == stateReady && (!ok || orderedTime(h.due) < due) {
			due, ok = orderedTime(h.due), true
		}
		return nil
	})
	return due, ok
}

func (s *Store) legacyFunctions() ([]FunctionStats, error) {
	byName := map[string]*FunctionStats{}
	err := s.view(func(tx *bolt.Tx) error {
		after := orderedTime(s.clock.now())
		return tx.Bucket(bucketEvents).ForEach(func(_, v []byte) error {
			h, err := skimRecord(v)
			if err != nil {
				return nil
			}
			fs := byName[string(h.function)]
			if fs == nil {
				fs = &FunctionStats{Name: string(h.function)}
				byName[fs.Name] = fs
			}
			fs.Events++
			fs.Bytes += h.size
			switch {
			case h.state == stateLeased:
				fs.Leased++
			case orderedTime(h.due) > after:
				fs.Scheduled++
			default:
				fs.Ready++
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	out := make([]FunctionStats, 0, len(byName))
	for _, fs := range byName {
		out = append(out, *fs)
	}
	slices.SortFunc(out, func(a, b FunctionStats) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
