package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	bolt "go.etcd.io/bbolt"
)

// The function registry: one record per function the queue holds events
// of (or that is paused), so that leasing can take turns between
// functions and flow control can read a function's figures without
// walking its events. See the package doc for the buckets.

// fnRecordVersion is the first byte of a registry record.
const fnRecordVersion = 1

// fnPaused is bit 0 of a registry record's flags; the other bits are
// reserved and a record with one set does not decode, so that a later
// flag is never silently dropped by this version.
const fnPaused = 1 << 0

// fnRecord is a function's entry in bucket "functions".
type fnRecord struct {
	id     uint32 // its keys' prefix in fnready: unique among records
	paused bool
	events int64 // held in any state
	leased int64
	bytes  int64 // as Stats.Bytes counts them
}

// encode returns the binary form of r:
//
//	version byte (1), id u32 big-endian, flags byte (bit 0: paused),
//	varint events, leased, bytes,
//	CRC-32C u32 big-endian of every byte before it.
func (r fnRecord) encode() []byte {
	b := make([]byte, 0, 1+4+1+3*binary.MaxVarintLen64+4)
	b = append(b, fnRecordVersion)
	b = binary.BigEndian.AppendUint32(b, r.id)
	var flags byte
	if r.paused {
		flags |= fnPaused
	}
	b = append(b, flags)
	b = binary.AppendVarint(b, r.events)
	b = binary.AppendVarint(b, r.leased)
	b = binary.AppendVarint(b, r.bytes)
	return binary.BigEndian.AppendUint32(b, checksum(b))
}

// decodeFnRecord parses a registry record. Like decodeRecord it never
// panics and names the first thing wrong.
func decodeFnRecord(b []byte) (fnRecord, error) {
	var r fnRecord
	switch {
	case len(b) == 0:
		return r, errors.New("empty record")
	case b[0] != fnRecordVersion:
		return r, fmt.Errorf("unknown registry record version %d (this library reads %d)", b[0], fnRecordVersion)
	case len(b) < 1+4+1+3+recordSumSize:
		return r, errors.New("truncated")
	}
	n := len(b) - recordSumSize
	if checksum(b[:n]) != binary.BigEndian.Uint32(b[n:]) {
		return r, errors.New("record checksum mismatch")
	}
	d := decoder{b: b[1:n]}
	r.id = d.uint32("id")
	flags := d.byte("flags")
	r.events = d.varint("events")
	r.leased = d.varint("leased")
	r.bytes = d.varint("bytes")
	switch {
	case d.err != nil:
	case r.id == 0:
		d.fail("id", "zero")
	case flags&^fnPaused != 0:
		d.fail("flags", fmt.Sprintf("unknown bits %#x", flags&^fnPaused))
	case r.events < 0 || r.leased < 0 || r.bytes < 0 || r.leased > r.events:
		d.fail("counts", "negative or inconsistent")
	case len(d.b) != 0:
		d.fail("end", fmt.Sprintf("%d trailing bytes", len(d.b)))
	}
	r.paused = flags&fnPaused != 0
	return r, d.err
}

// fnInfo is a registry record with its function's name: the in-memory
// mirror's entries and a transaction's working copies.
type fnInfo struct {
	name string
	fnRecord
}

// checkFunction refuses a name that cannot be a registry key: bbolt takes
// no empty key and none past MaxKeySize.
func checkFunction(name string) error {
	if name == "" || len(name) > MaxKeySize {
		return fmt.Errorf("store: function name of %d bytes: want 1 to %d", len(name), MaxKeySize)
	}
	return nil
}

// loadFunctions reads the registry into the in-memory mirror.
func (s *Store) loadFunctions(tx *bolt.Tx) error {
	fns, names := map[string]fnInfo{}, map[uint32]string{}
	if b := tx.Bucket(bucketFunctions); b != nil {
		err := b.ForEach(func(k, v []byte) error {
			r, err := decodeFnRecord(v)
			if err != nil {
				return &CorruptError{What: fmt.Sprintf("function %q", k), Err: err}
			}
			if other, ok := names[r.id]; ok {
				return &CorruptError{What: fmt.Sprintf("function %q", k), Err: fmt.Errorf("id %d is %q's too", r.id, other)}
			}
			name := string(k)
			fns[name], names[r.id] = fnInfo{name: name, fnRecord: r}, name
			return nil
		})
		if err != nil {
			return err
		}
	}
	s.statMu.Lock()
	s.fns, s.fnNames = fns, names
	s.statMu.Unlock()
	return nil
}

// fnTouch is a function's working copy in one transaction. The writes of a
// transaction change it; putFunctions writes it once at the end, and the
// mirror takes it only after the commit succeeded, as with s.counts.
type fnTouch struct {
	fnInfo
	orig fnRecord // as the transaction found it, to skip unchanged records
	had  bool     // the file held a record when the transaction began
	gone bool     // putFunctions deleted it (or never wrote it)
}

// fnFew is how many functions a transaction tracks without a map: a batch
// of enqueues or acks nearly always concerns one or two.
const fnFew = 4

// fnLookup finds the working copy of function name in t, without
// creating one. name is a string or a []byte, so that an ack can look up
// the function its record aliases without copying it.
func fnLookup[S string | []byte](t *txn, name S) *fnTouch {
	if t.fnLast != nil && t.fnLast.name == string(name) {
		return t.fnLast
	}
	for i := range t.fnN {
		if f := &t.fnSmall[i]; f.name == string(name) {
			t.fnLast = f
			return f
		}
	}
	if f := t.fnMore[string(name)]; f != nil {
		t.fnLast = f
		return f
	}
	return nil
}

// fnEntry returns the working copy of function name, loading it from the
// mirror, or nil when the function has no record.
func fnEntry[S string | []byte](t *txn, name S) *fnTouch {
	if f := fnLookup(t, name); f != nil {
		return f
	}
	t.s.statMu.Lock()
	info, ok := t.s.fns[string(name)]
	t.s.statMu.Unlock()
	if !ok {
		return nil
	}
	return t.track(info, true)
}

// track adds a working copy to t.
func (t *txn) track(info fnInfo, had bool) *fnTouch {
	var f *fnTouch
	if t.fnN < fnFew {
		f = &t.fnSmall[t.fnN]
		t.fnN++
	} else {
		if t.fnMore == nil {
			t.fnMore = map[string]*fnTouch{}
		}
		f = &fnTouch{}
		t.fnMore[info.name] = f
	}
	*f = fnTouch{fnInfo: info, orig: info.fnRecord, had: had}
	t.fnLast = f
	return f
}

// fnFor returns the working copy of function name, registering the
// function under a new id if it has no record. The caller checked name
// with checkFunction.
func (t *txn) fnFor(name string) (*fnTouch, error) {
	if f := fnEntry(t, name); f != nil {
		return f, nil
	}
	id, err := t.newFunctionID()
	if err != nil {
		return nil, err
	}
	return t.track(fnInfo{name: name, fnRecord: fnRecord{id: id}}, false), nil
}

// fnByID returns the working copy of the function with id, or nil when no
// record has it.
func (t *txn) fnByID(id uint32) *fnTouch {
	if t.fnLast != nil && t.fnLast.id == id {
		return t.fnLast
	}
	t.s.statMu.Lock()
	name, ok := t.s.fnNames[id]
	t.s.statMu.Unlock()
	if ok {
		return fnEntry(t, name)
	}
	// Registered in this transaction: not in the mirror yet.
	var found *fnTouch
	t.eachFn(func(f *fnTouch) {
		if !f.had && f.id == id {
			found = f
		}
	})
	if found != nil {
		t.fnLast = found
	}
	return found
}

func (t *txn) eachFn(fn func(*fnTouch)) {
	for i := range t.fnN {
		fn(&t.fnSmall[i])
	}
	for _, f := range t.fnMore {
		fn(f)
	}
}

// newFunctionID takes the next id from the registry bucket's sequence.
// Ids are not reused until the sequence passes 2^32 (at a thousand new
// functions a second, after 136 years); then it starts again from 1,
// skipping the ids of records that exist. A record is deleted only once its
// function holds no event, so no index key carries a free id.
func (t *txn) newFunctionID() (uint32, error) {
	for wrapped := false; ; {
		seq, err := t.functions.NextSequence()
		if err != nil {
			return 0, err
		}
		if seq > math.MaxUint32 {
			if wrapped {
				return 0, errors.New("store: every function id is in use")
			}
			wrapped = true
			if err := t.functions.SetSequence(0); err != nil {
				return 0, err
			}
			continue
		}
		if id := uint32(seq); !t.idInUse(id) {
			return id, nil
		}
	}
}

func (t *txn) idInUse(id uint32) bool {
	t.s.statMu.Lock()
	_, ok := t.s.fnNames[id]
	t.s.statMu.Unlock()
	if ok {
		return true
	}
	var used bool
	t.eachFn(func(f *fnTouch) { used = used || f.id == id })
	return used
}

// putFunctions writes the record of every function the transaction
// changed, once, and deletes the record of a function left with no event
// that is not paused: names come from producers, and a registry that kept
// every name ever seen would grow without bound.
func (t *txn) putFunctions() error {
	var err error
	t.eachFn(func(f *fnTouch) {
		if err != nil {
			return
		}
		// Clamp what damage (a record set aside whose size could not be
		// read) could drive out of range: the decoder refuses it.
		f.events = max(f.events, 0)
		f.leased = min(max(f.leased, 0), f.events)
		if f.events == 0 {
			f.bytes = 0
		}
		f.bytes = max(f.bytes, 0)
		if f.events == 0 && !f.paused {
			f.gone = true
			if f.had {
				err = t.functions.Delete([]byte(f.name))
			}
			return
		}
		f.gone = false
		if f.had && f.fnRecord == f.orig {
			return
		}
		err = t.functions.Put([]byte(f.name), f.fnRecord.encode())
	})
	return err
}

// publishFunctions updates the mirror with what a committed transaction
// wrote. The caller holds statMu.
func (s *Store) publishFunctions(t *txn) {
	t.eachFn(func(f *fnTouch) {
		switch {
		case f.gone && f.had:
			delete(s.fns, f.name)
			delete(s.fnNames, f.id)
		case !f.gone:
			s.fns[f.name] = f.fnInfo
			s.fnNames[f.id] = f.name
		}
	})
}

// Quota says how many events of function a lease may take now; 0 or less
// skips the function. A nil Quota means no per-function cap.
type Quota func(function string) int

// FunctionStats are one function's figures, as Functions returns them.
type FunctionStats struct {
	Name      string
	Paused    bool
	Events    int64 // held: ready + scheduled + leased
	Leased    int64
	Bytes     int64 // as Stats.Bytes counts them
	Scheduled int64 // due later
	Ready     int64 // due now: Events - Leased - Scheduled
}

// Functions returns the figures of every function in the registry (those
// holding events, and those paused), sorted by name. Each costs a seek
// into its index from now on, plus one step per event it has scheduled.
func (s *Store) Functions() ([]FunctionStats, error) {
	if s.legacy {
		return s.legacyFunctions()
	}
	var out []FunctionStats
	err := s.view(func(tx *bolt.Tx) error {
		after := orderedTime(s.clock.now())
		cur := tx.Bucket(bucketFnReady).Cursor()
		// The registry's keys are the names: its order is the one wanted.
		return tx.Bucket(bucketFunctions).ForEach(func(k, v []byte) error {
			r, err := decodeFnRecord(v)
			if err != nil {
				return &CorruptError{What: fmt.Sprintf("function %q", k), Err: err}
			}
			fs := FunctionStats{Name: string(k), Paused: r.paused, Events: r.events, Leased: r.leased, Bytes: r.bytes}
			fs.Scheduled = countAfter(cur, r.id, after)
			// The record and the index are read in one transaction, but a
			// record set aside unread may leave them apart: clamp.
			fs.Ready = max(fs.Events-fs.Leased-fs.Scheduled, 0)
			out = append(out, fs)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Paused reports whether function is paused. It reads memory only.
func (s *Store) Paused(function string) bool {
	s.statMu.Lock()
	defer s.statMu.Unlock()
	return s.fns[function].paused
}

// SetPaused pauses or resumes function, durably once it returns. A paused
// function's events are never leased, and it does not count for NextDue;
// its leased events are left as they are, for the caller to release or
// let finish. A pause set before the function has events holds for the
// events that arrive later. Resuming wakes a consumer waiting on Ready.
func (s *Store) SetPaused(ctx context.Context, function string, paused bool) error {
	if err := checkFunction(function); err != nil {
		return err
	}
	return s.do(ctx, func(t *txn) error {
		f := fnEntry(t, function)
		if f == nil {
			if !paused {
				return nil
			}
			var err error
			if f, err = t.fnFor(function); err != nil {
				return err
			}
		}
		if f.paused && !paused && f.events > f.leased {
			t.readied = true
		}
		f.paused = paused
		return nil
	})
}
