package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// FullPolicy says what an enqueue does when the events would take the
// store past Options.MaxEvents or Options.MaxBytes.
type FullPolicy int

const (
	// FullReject refuses the events with ErrFull, writing nothing.
	FullReject FullPolicy = iota
	// FullDropOldest evicts events waiting (ready or scheduled, never
	// leased), the lowest priority first and among those the oldest, in
	// the enqueue's own transaction, until the events fit. When even
	// evicting every event waiting would not make room, it is ErrFull and
	// nothing changes.
	FullDropOldest
)

// DefaultMaxEvictionRecords bounds the eviction ledger when
// Options.MaxEvictionRecords is zero.
const DefaultMaxEvictionRecords = 10000

var (
	// bucketEvictable is the eviction index: (priority byte, sequence) of
	// every event waiting, the lowest priority first. It exists only while
	// the store is opened with FullDropOldest (see the package doc).
	bucketEvictable = []byte("evictable")
	// bucketEvicted is the eviction ledger: sequence → eviction record.
	// Its bucket sequence holds the number of records, so that bounding
	// it costs no count.
	bucketEvicted = []byte("evicted")
	// keyEvictable in meta says the eviction index holds every event
	// waiting. It is written by the batch that finishes building the
	// index and deleted with it.
	keyEvictable = []byte("evictable")
)

// evictKeyLen is the length of an eviction index key.
const evictKeyLen = 1 + 8

// evictPriority is priority p's byte in the eviction index: unlike the
// ready index, the least urgent sorts first, as it is evicted first.
func evictPriority(p int8) byte { return byte(priorityNormal + int(p)) }

func evictKey(p int8, seq uint64) []byte {
	k := make([]byte, 0, evictKeyLen)
	return binary.BigEndian.AppendUint64(append(k, evictPriority(p)), seq)
}

// evictKeyPriority is the priority of an eviction index key, and whether
// its byte is one a priority has.
func evictKeyPriority(k []byte) (int8, bool) {
	p := int8(int(k[0]) - priorityNormal)
	return p, len(k) == evictKeyLen && checkPriority(p) == nil
}

// indexWaiting puts a waiting event into the eviction index, when the
// store keeps one.
func (t *txn) indexWaiting(p int8, seq uint64) error {
	if t.evictable == nil {
		return nil
	}
	return t.evictable.Put(evictKey(p, seq), []byte{})
}

// unindexWaiting takes an event out of the eviction index, when the store
// keeps one: it was leased, or it leaves the queue.
func (t *txn) unindexWaiting(p int8, seq uint64) error {
	if t.evictable == nil {
		return nil
	}
	return t.cEvict.del(evictKey(p, seq))
}

// Eviction is one record of the eviction ledger: an event that
// FullDropOldest evicted to make room.
type Eviction struct {
	Seq         uint64
	Function    string
	Key         string
	Priority    int8
	PayloadSize int
	Enqueued    time.Time
	Evicted     time.Time // on the wall clock, as Enqueued
	Reason      string    // "full": evicted to make room for an enqueue
}

// evictionVersion is the first byte of a ledger record.
const evictionVersion = 1

// Reasons an event is evicted; the byte in a ledger record.
const reasonFull = 1

var reasons = map[byte]string{reasonFull: "full"}

// encodeEviction returns the ledger record of e:
//
//	version byte (1), reason byte, priority byte (int8),
//	varint enqueued, evicted (unix nanoseconds, 0: none),
//	uvarint payload size, string function, key,
//	CRC-32C u32 big-endian of every byte before it.
func encodeEviction(e Eviction, reason byte) []byte {
	b := make([]byte, 0, 3+3*binary.MaxVarintLen64+len(e.Function)+len(e.Key)+4+recordSumSize)
	b = append(b, evictionVersion, reason, byte(e.Priority))
	b = binary.AppendVarint(b, unixNano(e.Enqueued))
	b = binary.AppendVarint(b, unixNano(e.Evicted))
	b = binary.AppendUvarint(b, uint64(e.PayloadSize))
	b = appendString(b, e.Function)
	b = appendString(b, e.Key)
	return binary.BigEndian.AppendUint32(b, checksum(b))
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// decodeEviction parses a ledger record; like decodeRecord it never
// panics and names the first thing wrong.
func decodeEviction(seq uint64, b []byte) (Eviction, error) {
	e := Eviction{Seq: seq}
	switch {
	case len(b) == 0:
		return e, errors.New("empty record")
	case b[0] != evictionVersion:
		return e, fmt.Errorf("unknown eviction record version %d (this library reads %d)", b[0], evictionVersion)
	case len(b) < 3+recordSumSize:
		return e, errors.New("truncated")
	}
	n := len(b) - recordSumSize
	if checksum(b[:n]) != binary.BigEndian.Uint32(b[n:]) {
		return e, errors.New("record checksum mismatch")
	}
	d := decoder{b: b[1:n]}
	reason := d.byte("reason")
	e.Priority = int8(d.byte("priority"))
	e.Enqueued = fromUnixNano(d.varint("enqueue time"))
	e.Evicted = fromUnixNano(d.varint("eviction time"))
	e.PayloadSize = int(d.uvarint("payload size", maxPayloadLen))
	e.Function = d.string("function")
	e.Key = d.string("key")
	switch {
	case d.err != nil:
	case reasons[reason] == "":
		d.fail("reason", fmt.Sprintf("unknown reason %d", reason))
	case checkPriority(e.Priority) != nil:
		d.fail("priority", fmt.Sprintf("%d is out of range", e.Priority))
	case len(d.b) != 0:
		d.fail("end", fmt.Sprintf("%d trailing bytes", len(d.b)))
	}
	e.Reason = reasons[reason]
	return e, d.err
}

// victim is an event chosen for eviction, its record read.
type victim struct {
	seq uint64
	r   record
}

// makeRoom checks that n more events of size bytes fit and, under
// FullDropOldest, evicts what they need. full says why they cannot fit
// (ErrFull), having changed nothing; err fails the transaction. spare
// are events not to evict: those the batch's duplicates name.
func (t *txn) makeRoom(n int, size int64, spare map[uint64]bool) (full, err error) {
	full = t.checkRoom(n, size)
	if full == nil || t.s.opts.Full != FullDropOldest || t.evictable == nil {
		return full, nil
	}
	maxEvents, maxBytes := t.s.opts.MaxEvents, t.s.opts.MaxBytes
	if maxEvents > 0 && int64(n) > maxEvents || maxBytes > 0 && size > maxBytes {
		return fmt.Errorf("%w: %d events of %d bytes are more than the store holds", ErrFull, n, size), nil
	}
	var needEvents, needBytes int64
	if maxEvents > 0 {
		needEvents = t.c.events + int64(n) - maxEvents
	}
	if maxBytes > 0 {
		needBytes = t.c.bytes + size - maxBytes
	}
	// Choose first, evict after: if the events waiting are not enough,
	// nothing is evicted. The index is only read meanwhile.
	var victims []victim
	cur := t.evictable.Cursor()
	for k, _ := cur.First(); k != nil && (needEvents > 0 || needBytes > 0); k, _ = cur.Next() {
		p, ok := evictKeyPriority(k)
		if !ok {
			continue // damage, which Check reports; not a reason to evict
		}
		seq := binary.BigEndian.Uint64(k[1:])
		if spare[seq] {
			continue
		}
		r, err := decodeRecord(t.cEvents.get(seqKey(seq)))
		if err != nil || r.state != stateReady || r.priority != p {
			// An unreadable record is set aside by its lease, not
			// evicted: the key the ledger would name is unknown. A key
			// of an event gone, leased or of another priority is stale
			// (Check reports it): the record is the truth, and an event
			// is evicted only as it says it is, waiting.
			continue
		}
		victims = append(victims, victim{seq: seq, r: r})
		needEvents--
		needBytes -= r.size()
	}
	if needEvents > 0 || needBytes > 0 {
		return fmt.Errorf("%w: evicting every event waiting would not make room for %d more", full, n), nil
	}
	for i := range victims {
		if err := t.evict(victims[i].seq, &victims[i].r); err != nil {
			return nil, err
		}
		if evictHook != nil {
			evictHook(victims[i].seq)
		}
	}
	return nil, nil
}

// evictHook, nil outside tests, runs in the transaction after each event
// it evicts, before the commit: a crash test stops there.
var evictHook func(seq uint64)

// evict removes a waiting event to make room, tells Options.Evicted, and
// writes its ledger record.
func (t *txn) evict(seq uint64, r *record) error {
	ev := r.event(seq, nil)
	if cb := t.s.opts.Evicted; cb != nil {
		if err := cb(t.pub(), ev); err != nil {
			return fmt.Errorf("store: evicting event %d: %w", seq, err)
		}
	}
	if err := t.delete(seq, r); err != nil {
		return err
	}
	t.c.evicted++
	t.evictedFns = append(t.evictedFns, r.function)
	return t.record(Eviction{
		Seq: seq, Function: r.function, Key: r.key, Priority: r.priority, PayloadSize: int(r.payloadLen),
		Enqueued: fromUnixNano(r.enqueued), Evicted: time.Unix(0, t.wall),
	}, reasonFull)
}

// record writes e to the ledger and drops its oldest records past the
// bound. Keys are sequence numbers, so the oldest are the records of the
// events enqueued first.
func (t *txn) record(e Eviction, reason byte) error {
	limit := t.s.opts.MaxEvictionRecords
	if limit == 0 {
		limit = DefaultMaxEvictionRecords
	}
	if limit < 0 {
		return nil
	}
	if t.ledger == nil {
		var err error
		if t.ledger, err = t.tx.CreateBucketIfNotExists(bucketEvicted); err != nil {
			return err
		}
		t.ledger.FillPercent = 1.0
	}
	k := seqKey(e.Seq)
	held := t.ledger.Sequence()
	if t.ledger.Get(k) == nil {
		held++
	}
	if err := t.ledger.Put(k, encodeEviction(e, reason)); err != nil {
		return err
	}
	if held > uint64(limit) {
		var drop [][]byte
		cur := t.ledger.Cursor()
		for k, _ := cur.First(); k != nil && held-uint64(len(drop)) > uint64(limit); k, _ = cur.Next() {
			drop = append(drop, clone(k))
		}
		for _, k := range drop {
			if err := t.ledger.Delete(k); err != nil {
				return err
			}
		}
		held -= uint64(len(drop))
	}
	return t.ledger.SetSequence(held)
}

// Evictions returns up to limit records of the eviction ledger (100 when
// limit is 0 or less), in sequence order, of the events after sequence
// number after; and the cursor for the next page: the last sequence
// number returned, or 0 when there is no more.
func (s *Store) Evictions(after uint64, limit int) ([]Eviction, uint64, error) {
	if limit <= 0 {
		limit = 100
	}
	var out []Eviction
	var next uint64
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvicted)
		if b == nil {
			return nil
		}
		cur := b.Cursor()
		k, v := cur.Seek(seqKey(after + 1))
		if after == math.MaxUint64 {
			k = nil
		}
		for ; k != nil && len(out) < limit; k, v = cur.Next() {
			if len(k) != 8 {
				continue
			}
			seq := binary.BigEndian.Uint64(k)
			e, err := decodeEviction(seq, v)
			if err != nil {
				return &CorruptError{What: fmt.Sprintf("eviction record %d", seq), Err: err}
			}
			out = append(out, e)
		}
		if k != nil && len(out) > 0 {
			next = out[len(out)-1].Seq
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return out, next, nil
}

// evictBuildBatch bounds the events one transaction of the index build
// reads.
var evictBuildBatch = 4096

// evictBuildHook, nil outside tests, runs after each batch of the build
// commits; an error stops the build there, as a crash would.
var evictBuildHook func(batch int) error

// buildEvictable builds the eviction index at Open, in batches of a
// transaction each, before the writer starts: nothing else writes
// meanwhile, so a batch never misses a change. The last batch marks the
// index complete. A build cut short leaves no mark, and the next Open
// starts it again from an empty bucket.
func (s *Store) buildEvictable() error {
	var after uint64
	for batch := 1; ; batch++ {
		var done bool
		err := s.db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(bucketEvictable)
			if err != nil {
				return err
			}
			b.FillPercent = 1.0
			var keys [][]byte
			cur := tx.Bucket(bucketEvents).Cursor()
			k, v := cur.Seek(seqKey(after + 1))
			for ; k != nil && len(keys) < evictBuildBatch; k, v = cur.Next() {
				if len(k) != 8 {
					continue
				}
				after = binary.BigEndian.Uint64(k)
				// An unreadable record stays out: it is set aside by its
				// lease, never evicted.
				if h, err := skimRecord(v); err == nil && h.state == stateReady {
					keys = append(keys, evictKey(h.priority, after))
				}
			}
			// Written once the walk is done: the cursor is another
			// bucket's, but nothing is written under a live one.
			for _, k := range keys {
				if err := b.Put(k, []byte{}); err != nil {
					return err
				}
			}
			if done = k == nil; done {
				return tx.Bucket(bucketMeta).Put(keyEvictable, []byte{1})
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("building the eviction index: %w", err)
		}
		if evictBuildHook != nil {
			if err := evictBuildHook(batch); err != nil {
				return err
			}
		}
		if done {
			return nil
		}
	}
}

// dropEvictable deletes the eviction index and its mark: a store opened
// without FullDropOldest does not keep it, and one left behind would be
// stale by the next Open that wants it.
func dropEvictable(tx *bolt.Tx) error {
	if err := tx.DeleteBucket(bucketEvictable); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
		return err
	}
	return tx.Bucket(bucketMeta).Delete(keyEvictable)
}
