package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"
)

// maxErrorMessage bounds the message kept with a failed attempt, so that a
// chatty error cannot grow a record without limit.
const maxErrorMessage = 1024

// pending is an event encoded by its caller, outside the writer, so that the
// writer's time goes to bbolt and nothing else.
type pending struct {
	rec      []byte
	payload  []byte
	function string
	due      int64
	size     int64
	priority int8
}

// Enqueue writes events in one transaction, all or nothing, and returns
// their sequence numbers once the transaction is durable. When the events
// would take the store past MaxEvents or MaxBytes it returns an error
// wrapping ErrFull, having written nothing; or, under FullDropOldest,
// evicts events waiting in the same transaction to make room (see
// FullPolicy). An event whose priority is out of range is an error, and
// nothing is written.
func (s *Store) Enqueue(ctx context.Context, evs []NewEvent) ([]uint64, error) {
	if len(evs) == 0 {
		return nil, nil
	}
	ps, size, err := s.prepare(evs)
	if err != nil {
		return nil, err
	}
	var seqs []uint64
	var full error
	err = s.doLogged(ctx, func(t *txn) error {
		seqs, full = nil, nil
		var err error
		if full, err = t.makeRoom(len(ps), size, nil); full != nil || err != nil {
			return err
		}
		seqs, err = t.put(ps, size)
		return err
	}, func(l *logTxn) error {
		seqs, full = nil, nil
		if err := l.room(len(ps), size); err != nil {
			if s.opts.Full == FullDropOldest {
				return errUseTx // eviction takes a transaction
			}
			return err
		}
		seqs = l.log(ps, nil, nil, size)
		return nil
	})
	if err == nil {
		err = full
	}
	if err != nil {
		return nil, err
	}
	return seqs, nil
}

// KeyWindow decides, inside the enqueue transaction, which keyed events
// are duplicates: package idempotency implements it in the same file.
type KeyWindow interface {
	// Held returns the sequence number of the event holding key at now.
	Held(tx *Tx, key string, now time.Time) (seq uint64, held bool, err error)
	// Hold gives key to the event seq until now+window.
	Hold(tx *Tx, key string, seq uint64, now time.Time, window time.Duration) error
}

// Result is the outcome of one event of EnqueueUnique.
type Result struct {
	Seq       uint64 // the event's; for a duplicate, the event holding its key
	Duplicate bool   // not written: its key is held
}

// EnqueueUnique is Enqueue with deduplication by key, in one transaction:
// an event whose key w holds, or whose key an earlier event of the same
// call has, is not written and comes back as a Duplicate with the holder's
// sequence number; every other keyed event claims its key as it is
// written. Concurrent calls with the same key are serialised by the writer,
// so exactly one wins. The caps count only the events written; under
// FullDropOldest the events holding the keys of its duplicates are not
// evicted to make room, so that no duplicate names an event gone.
func (s *Store) EnqueueUnique(ctx context.Context, evs []NewEvent, w KeyWindow) ([]Result, error) {
	if len(evs) == 0 {
		return nil, nil
	}
	ps, _, err := s.prepare(evs)
	if err != nil {
		return nil, err
	}
	var results []Result
	var full error
	apply := func(t *txn) error {
		results, full = make([]Result, len(evs)), nil
		now := time.Unix(0, t.wall)
		first := map[string]int{} // key → the event of this call that claims it
		dupOf := map[int]int{}
		var holders map[uint64]bool
		var fresh []pending
		var freshIdx []int
		var size int64
		for i, e := range evs {
			if e.Key != "" {
				if j, ok := first[e.Key]; ok {
					dupOf[i] = j
					continue
				}
				seq, held, err := w.Held(t.pub(), e.Key, now)
				if err != nil {
					return err
				}
				if held {
					results[i] = Result{Seq: seq, Duplicate: true}
					if holders == nil {
						holders = map[uint64]bool{}
					}
					holders[seq] = true
					continue
				}
				first[e.Key] = i
			}
			fresh = append(fresh, ps[i])
			freshIdx = append(freshIdx, i)
			size += ps[i].size
		}
		if len(fresh) > 0 {
			var err error
			if full, err = t.makeRoom(len(fresh), size, holders); full != nil || err != nil {
				return err
			}
			seqs, err := t.put(fresh, size)
			if err != nil {
				return err
			}
			for n, i := range freshIdx {
				results[i] = Result{Seq: seqs[n]}
				if k := evs[i].Key; k != "" {
					if err := w.Hold(t.pub(), k, seqs[n], now, evs[i].Window); err != nil {
						return err
					}
				}
			}
		}
		for i, j := range dupOf {
			results[i] = Result{Seq: results[j].Seq, Duplicate: true}
		}
		return nil
	}
	var logApply func(l *logTxn) error
	if w != nil && w == s.window {
		// The log can hold the keys of this window only: a replay after
		// a crash holds them in s.window.
		logApply = func(l *logTxn) error {
			results, full = make([]Result, len(evs)), nil
			first := map[string]int{}
			dupOf := map[int]int{}
			var fresh []pending
			var freshIdx []int
			var keys []string
			var windows []time.Duration
			var size int64
			for i, e := range evs {
				if e.Key != "" {
					if j, ok := first[e.Key]; ok {
						dupOf[i] = j
						continue
					}
					seq, held, err := l.held(w, e.Key)
					if err != nil {
						return err
					}
					if held {
						results[i] = Result{Seq: seq, Duplicate: true}
						continue
					}
					first[e.Key] = i
				}
				fresh = append(fresh, ps[i])
				freshIdx = append(freshIdx, i)
				keys = append(keys, e.Key)
				windows = append(windows, e.Window)
				size += ps[i].size
			}
			if len(fresh) > 0 {
				if err := l.room(len(fresh), size); err != nil {
					if s.opts.Full == FullDropOldest {
						return errUseTx // eviction takes a transaction
					}
					full = err
					return nil
				}
				seqs := l.log(fresh, keys, windows, size)
				for n, i := range freshIdx {
					results[i] = Result{Seq: seqs[n]}
				}
			}
			for i, j := range dupOf {
				results[i] = Result{Seq: results[j].Seq, Duplicate: true}
			}
			return nil
		}
	}
	err = s.doLogged(ctx, apply, logApply)
	if err == nil {
		err = full
	}
	if err != nil {
		return nil, err
	}
	return results, nil
}

// prepare encodes events outside the writer where it can, so that the
// writer's time goes to bbolt and nothing else.
func (s *Store) prepare(evs []NewEvent) ([]pending, int64, error) {
	wall, now := s.now().UnixNano(), s.clock.now()
	ps := make([]pending, len(evs))
	var size int64
	for i, e := range evs {
		if len(e.Payload) > maxPayloadLen {
			return nil, 0, fmt.Errorf("store: payload of %d bytes is over %d", len(e.Payload), maxPayloadLen)
		}
		if err := checkFunction(e.Function); err != nil {
			return nil, 0, err
		}
		if err := checkPriority(e.Priority); err != nil {
			return nil, 0, err
		}
		// The payload is copied: bbolt keeps the slice until the commit, and
		// a caller whose context ends may reuse its own before then.
		payload := append([]byte(nil), e.Payload...)
		due := now
		if !e.Due.IsZero() {
			// On the queue's clock, as Store.Now and Reschedule's due:
			// a time the caller read from Now stays what it meant.
			due = max(e.Due.UnixNano(), now)
		}
		r := record{
			state: stateReady, priority: e.Priority, enqueued: wall, due: due,
			function: e.Function, qualifier: e.Qualifier, key: e.Key,
			payloadLen: uint32(len(payload)), payloadCRC: checksum(payload),
		}
		ps[i] = pending{rec: r.encode(nil), payload: payload, function: e.Function, due: due, size: r.size(), priority: e.Priority}
		size += ps[i].size
	}
	return ps, size, nil
}

// checkRoom says why n more events of size bytes would not fit, or nil.
func (t *txn) checkRoom(n int, size int64) error {
	if max := t.s.opts.MaxEvents; max > 0 && t.c.events+int64(n) > max {
		return fmt.Errorf("%w: %d events held, %d more would pass the cap of %d", ErrFull, t.c.events, n, max)
	}
	if max := t.s.opts.MaxBytes; max > 0 && t.c.bytes+size > max {
		return fmt.Errorf("%w: %d bytes held, %d more would pass the cap of %d", ErrFull, t.c.bytes, size, max)
	}
	return nil
}

// put writes prepared events and returns their sequence numbers.
func (t *txn) put(ps []pending, size int64) ([]uint64, error) {
	seqs := make([]uint64, len(ps))
	for i := range ps {
		seq := t.c.nextSeq + 1
		k := seqKey(seq)
		if err := t.payloads.Put(k, ps[i].payload); err != nil {
			return nil, err
		}
		if err := t.events.Put(k, ps[i].rec); err != nil {
			return nil, err
		}
		f, err := t.fnFor(ps[i].function)
		if err != nil {
			return nil, err
		}
		if err := t.fnready.Put(fnReadyKey(f.id, ps[i].priority, ps[i].due, seq), []byte{}); err != nil {
			return nil, err
		}
		if err := t.indexWaiting(ps[i].priority, seq); err != nil {
			return nil, err
		}
		f.events++
		f.bytes += ps[i].size
		t.c.nextSeq = seq
		seqs[i] = seq
	}
	t.c.events += int64(len(ps))
	t.c.bytes += size
	t.tot.enqueued += uint64(len(ps))
	t.readied = true
	return seqs, nil
}

// Insert writes the events that fn returns in the transaction fn runs in:
// a redrive reads and removes dead letters there, so that each is either
// back in the queue or still a letter, never both and never neither. The
// caps apply as in Enqueue: past them nothing is written and the error
// wraps ErrFull, or under FullDropOldest events waiting are evicted to
// make room. fn may run more than once and must not keep state.
//
// With w not nil, every keyed event written claims its key in w for its
// Window, replacing whoever held it: a redrive sends the event again under
// the key it had.
func (s *Store) Insert(ctx context.Context, fn func(tx *Tx) ([]NewEvent, error), w KeyWindow) ([]uint64, error) {
	var seqs []uint64
	var full error
	err := s.do(ctx, func(t *txn) error {
		seqs, full = nil, nil
		evs, err := fn(t.pub())
		if err != nil {
			return err
		}
		ps, size, err := t.s.prepare(evs)
		if err != nil {
			return err
		}
		if full, err = t.makeRoom(len(ps), size, nil); full != nil {
			return errRollback
		}
		if err != nil {
			return err
		}
		seqs, err = t.put(ps, size)
		if err != nil || w == nil {
			return err
		}
		now := time.Unix(0, t.wall)
		for i, e := range evs {
			if e.Key != "" {
				if err := w.Hold(t.pub(), e.Key, seqs[i], now, e.Window); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if errors.Is(err, errRollback) {
		err = full
	}
	if err != nil {
		return nil, err
	}
	return seqs, nil
}

// errRollback aborts an Insert whose fn already wrote but whose events do
// not fit: unlike Enqueue's, its writes must not commit.
var errRollback = errors.New("store: rolled back")

// Lease takes up to n events that are due, taking turns between functions
// as AckAndLease does (with no quota), marks them leased until now+d,
// counts an attempt on each, and returns them with their payloads. It
// returns an empty slice when nothing is due.
func (s *Store) Lease(ctx context.Context, n int, d time.Duration) ([]Event, error) {
	if n <= 0 {
		return nil, nil
	}
	var out []Event
	err := s.do(ctx, func(t *txn) error {
		var err error
		out, err = t.lease(n, d, nil)
		return err
	})
	if err != nil {
		return nil, err // out may still be written by the writer: never read it
	}
	return out, nil
}

// AckAndLease acks the delivered events in acks and leases up to n more,
// in one transaction: a worker loop that settles and refills at once pays
// for one commit instead of two. Unlike Ack it is not all or nothing: it
// acks every event of acks that is still leased, skips those already gone
// (acked before), and returns in notLeased those whose lease was taken
// back, which will therefore be sent again.
//
// Leasing is fair between functions: a backlog of one does not hold back
// the events of another. It takes turns in passes over the functions that
// have events due and are not paused, each pass giving each of them up to
// an equal share of what is left to take, and each lease starting with the
// function after the one the previous lease started with. quota, when not
// nil, caps what each function may take in this lease. Within a function,
// events go by due time, then first in first out. The events come back in
// turns too (one of each function, then the next of each), so that a
// consumer working through them in order serves no function's share
// before another's first event.
//
// onAck, when not nil, runs in the same transaction for each acked event
// that has a key, so that marking the key delivered commits with the ack;
// not for an event cancelled while leased, whose key Cancel handed back.
func (s *Store) AckAndLease(ctx context.Context, acks []uint64, n int, d time.Duration, quota Quota, onAck func(tx *Tx, seq uint64, key string) error) ([]Event, []uint64, error) {
	var leased []Event
	var notLeased []uint64
	err := s.do(ctx, func(t *txn) error {
		leased, notLeased = nil, nil
		for _, seq := range acks {
			h, err := t.leasedHead(seq)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				notLeased = append(notLeased, seq)
				continue
			}
			// A cancelled event's key was handed back when it was
			// cancelled: marking it delivered would claim it again.
			if onAck != nil && len(h.key) > 0 && !h.cancelled {
				if err := onAck(t.pub(), seq, string(h.key)); err != nil {
					return err
				}
			}
			if err := t.remove(seq, h); err != nil {
				return err
			}
			t.tot.acked++
		}
		if n <= 0 {
			return nil
		}
		var err error
		leased, err = t.lease(n, d, quota)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return leased, notLeased, nil
}

// leaseOne leases the event of index key k, which the lease found in the
// range of function f.
func (t *txn) leaseOne(k []byte, f *fnTouch, d time.Duration) (Event, bool, error) {
	if err := t.cReady.del(k); err != nil {
		return Event{}, false, err
	}
	if len(k) != fnReadyKeyLen {
		return Event{}, false, t.setAside(0, fmt.Sprintf("ready index key of %d bytes", len(k)), nil, nil)
	}
	seq := fnKeySeq(k)
	sk := seqKey(seq)
	raw := t.cEvents.get(sk)
	if raw == nil {
		t.s.log.Warn("dropped a ready-index entry without its event", "seq", seq)
		return Event{}, false, nil
	}
	r, err := decodeRecord(raw)
	if err != nil {
		return Event{}, false, t.setAside(seq, err.Error(), raw, f)
	}
	if r.state != stateReady {
		// An index key left for an event already leased: leasing it again
		// would hand one event to two workers and count its lease twice.
		// The key is gone now; the event keeps its lease.
		t.s.log.Warn("dropped a ready-index entry of an event already leased", "seq", seq)
		return Event{}, false, nil
	}
	if f == nil || r.function != f.name {
		// The key is in another function's range than its record's, or
		// in none: damage. Leasing it here would charge the wrong
		// function's quota; it goes where its record says, for a lease of
		// its own function to take.
		return Event{}, false, t.reindex(seq, &r)
	}
	payload, err := t.payloadOf(sk, seq, &r)
	if errors.Is(err, ErrClosed) {
		return Event{}, false, err
	}
	if err != nil {
		return Event{}, false, t.setAside(seq, err.Error(), raw, f)
	}
	if err := t.unindexWaiting(r.priority, seq); err != nil {
		return Event{}, false, err
	}
	r.state = stateLeased
	if r.attempts < math.MaxUint32 {
		r.attempts++
	}
	if r.firstAttempt == 0 {
		r.firstAttempt = t.now
	}
	prev := r.lastAttempt
	r.lastAttempt = t.now
	r.leaseUntil = t.now + int64(d)
	if err := t.events.Put(sk, r.encode(nil)); err != nil {
		return Event{}, false, err
	}
	if err := putUint64(t.leases, sk, r.leaseUntil); err != nil {
		return Event{}, false, err
	}
	t.c.leased++
	f.leased++
	t.tot.leases++
	ev := r.event(seq, payload)
	ev.PrevAttempt = fromUnixNano(prev)
	return ev, true, nil
}

// reindex puts a ready event whose index key was found out of place (and
// already deleted) back under its function's id. A function without a
// record is registered, the event counted: no record, nothing counted it.
func (t *txn) reindex(seq uint64, r *record) error {
	t.s.log.Warn("moved a ready-index entry found under another function's id", "seq", seq, "function", r.function)
	if r.state != stateReady {
		return nil
	}
	if err := checkFunction(r.function); err != nil {
		return t.setAside(seq, err.Error(), r.encode(nil), nil)
	}
	f := fnEntry(t, r.function)
	if f == nil {
		var err error
		if f, err = t.fnFor(r.function); err != nil {
			return err
		}
		f.events++
		f.bytes += r.size()
	}
	return t.fnready.Put(fnReadyKey(f.id, r.priority, r.due, seq), []byte{})
}

// setAside moves an unreadable event out of the queue into the corrupt
// bucket, so that one bad record cannot stop every lease behind it. f is
// the function whose index range held it, when known; otherwise the
// function the damaged record names is charged, if it has a record, as a
// best guess. Either way the counts lose the size the record claims.
func (t *txn) setAside(seq uint64, why string, raw []byte, f *fnTouch) error {
	t.s.log.Error("set aside an unreadable event", "seq", seq, "error", why)
	k := seqKey(seq)
	v := append([]byte(why+"\x00"), raw...)
	if err := t.corrupt.Put(k, v); err != nil {
		return err
	}
	if seq == 0 {
		return nil
	}
	h, herr := skimLenient(raw)
	if f == nil && herr == nil {
		f = fnEntry(t, h.function)
	}
	if err := t.events.Delete(k); err != nil {
		return err
	}
	if err := t.payloads.Delete(k); err != nil {
		return err
	}
	if t.inlog != nil {
		if err := t.inlog.Delete(k); err != nil {
			return err
		}
	}
	if t.evictable != nil {
		// Its priority may be what is damaged: every level's key goes.
		for p := int8(MinPriority); p <= MaxPriority; p++ {
			if err := t.unindexWaiting(p, seq); err != nil {
				return err
			}
		}
	}
	if t.leases.Get(k) != nil {
		if err := t.leases.Delete(k); err != nil {
			return err
		}
		t.c.leased--
		if f != nil {
			f.leased--
		}
	}
	t.c.events--
	t.c.corrupt++
	if f != nil {
		f.events--
	}
	if herr == nil {
		t.c.bytes = max(t.c.bytes-h.size, 0)
		if f != nil {
			f.bytes -= h.size
		}
	}
	return nil
}

// leased reads the record of a leased event, or says why it cannot.
func (t *txn) leased(seq uint64) (record, error) {
	k := seqKey(seq)
	if t.leases.Get(k) == nil {
		if t.events.Get(k) == nil {
			return record{}, fmt.Errorf("%w: %d", ErrNotFound, seq)
		}
		return record{}, fmt.Errorf("%w: %d", ErrNotLeased, seq)
	}
	r, err := decodeRecord(t.events.Get(k))
	if err != nil {
		return record{}, &CorruptError{What: fmt.Sprintf("event %d", seq), Err: err}
	}
	return r, nil
}

// leasedHead is leased for callers that only remove the event.
func (t *txn) leasedHead(seq uint64) (recordHead, error) {
	k := seqKey(seq)
	raw := t.cEvents.get(k)
	if t.cLeases.get(k) == nil {
		if raw == nil {
			return recordHead{}, fmt.Errorf("%w: %d", ErrNotFound, seq)
		}
		return recordHead{}, fmt.Errorf("%w: %d", ErrNotLeased, seq)
	}
	h, err := skimRecord(raw)
	if err != nil {
		return recordHead{}, &CorruptError{What: fmt.Sprintf("event %d", seq), Err: err}
	}
	return h, nil
}

// Ack removes leased events that were delivered. It is all or nothing: if
// one of seqs is not leased, none is removed and the error says which.
func (s *Store) Ack(ctx context.Context, seqs ...uint64) error {
	var bad error
	err := s.do(ctx, func(t *txn) error {
		bad = nil
		heads := make([]recordHead, len(seqs))
		for i, seq := range seqs {
			h, err := t.leasedHead(seq)
			if err != nil {
				bad = err
				return nil
			}
			heads[i] = h
		}
		for i, seq := range seqs {
			if err := t.remove(seq, heads[i]); err != nil {
				return err
			}
		}
		t.tot.acked += uint64(len(seqs))
		return nil
	})
	if err != nil {
		return err
	}
	return bad
}

// delete removes an event from every bucket that holds it.
func (t *txn) delete(seq uint64, r *record) error {
	return t.remove(seq, recordHead{state: r.state, priority: r.priority, due: r.due, size: r.size(), function: []byte(r.function)})
}

func (t *txn) remove(seq uint64, r recordHead) error {
	k := seqKey(seq)
	// A function without a record (damage) leaves its key, if any, for a
	// lease to drop: without the id there is no finding it.
	f := fnEntry(t, r.function)
	if f != nil {
		f.events--
		f.bytes -= r.size
	}
	if r.state == stateLeased {
		if err := t.cLeases.del(k); err != nil {
			return err
		}
		t.c.leased--
		if f != nil {
			f.leased--
		}
	} else {
		if f != nil {
			if err := t.cReady.del(fnReadyKey(f.id, r.priority, r.due, seq)); err != nil {
				return err
			}
		}
		if err := t.unindexWaiting(r.priority, seq); err != nil {
			return err
		}
	}
	if err := t.cEvents.del(k); err != nil {
		return err
	}
	if err := t.cPayloads.del(k); err != nil {
		return err
	}
	if t.inlog != nil {
		if err := t.cInLog.del(k); err != nil {
			return err
		}
	}
	t.c.events--
	t.c.bytes -= r.size
	return nil
}

// Reschedule returns a leased event to the ready index, due at due, with
// the error of its failed attempt recorded. The attempt stays counted. An
// event cancelled while leased is removed instead.
func (s *Store) Reschedule(ctx context.Context, seq uint64, due time.Time, lastErr ErrorInfo) error {
	if len(lastErr.Message) > maxErrorMessage {
		lastErr.Message = lastErr.Message[:maxErrorMessage]
	}
	var bad error
	err := s.do(ctx, func(t *txn) error {
		r, err := t.leased(seq)
		if bad = err; bad != nil {
			return nil
		}
		if r.cancelled {
			return t.delete(seq, &r)
		}
		r.lastErr = lastErr
		t.tot.rescheduled++
		return t.unlease(seq, &r, due.UnixNano())
	})
	if err != nil {
		return err
	}
	return bad
}

// Release returns leased events to the ready index at their old place in
// line. With refund, the attempt their lease counted is given back: the
// dispatcher does so when the fault was its own (Lambda unreachable, bad
// credentials) and not the event's. Events cancelled while leased are
// removed instead.
func (s *Store) Release(ctx context.Context, refund bool, seqs ...uint64) error {
	var bad error
	err := s.do(ctx, func(t *txn) error {
		bad = nil
		recs := make([]record, len(seqs))
		for i, seq := range seqs {
			r, err := t.leased(seq)
			if err != nil {
				bad = err
				return nil
			}
			recs[i] = r
		}
		var released uint64
		for i, seq := range seqs {
			r := &recs[i]
			if r.cancelled {
				if err := t.delete(seq, r); err != nil {
					return err
				}
				continue
			}
			released++
			if refund && r.attempts > 0 {
				r.attempts--
				if r.attempts == 0 {
					// Never tried after all: an event's age for the retry
					// policy runs from its first real attempt.
					r.firstAttempt, r.lastAttempt = 0, 0
				}
			}
			if err := t.unlease(seq, r, r.due); err != nil {
				return err
			}
		}
		t.tot.released += released
		return nil
	})
	if err != nil {
		return err
	}
	return bad
}

func (t *txn) unlease(seq uint64, r *record, due int64) error {
	k := seqKey(seq)
	f := fnEntry(t, r.function)
	if f == nil {
		// Held but counted nowhere (damage): register and count it, so
		// that it can be indexed and is counted from now on.
		if err := checkFunction(r.function); err != nil {
			return t.setAside(seq, err.Error(), t.events.Get(k), nil)
		}
		var err error
		if f, err = t.fnFor(r.function); err != nil {
			return err
		}
		t.s.log.Warn("registered the function of a leased event it did not count", "seq", seq, "function", r.function)
		f.events, f.leased, f.bytes = f.events+1, f.leased+1, f.bytes+r.size()
	}
	r.state = stateReady
	r.leaseUntil = 0
	r.due = due
	if err := t.events.Put(k, r.encode(nil)); err != nil {
		return err
	}
	if err := t.leases.Delete(k); err != nil {
		return err
	}
	if err := t.fnready.Put(fnReadyKey(f.id, r.priority, due, seq), []byte{}); err != nil {
		return err
	}
	if err := t.indexWaiting(r.priority, seq); err != nil {
		return err
	}
	t.c.leased--
	f.leased--
	t.readied = true
	return nil
}

// Remove takes an event out of the queue whatever its state, for dead
// lettering. move, when not nil, runs in the same transaction with the
// event as it was, so a letter written there and the removal commit
// together or not at all. If move fails, the event stays queued and the
// error is returned. An event cancelled while leased is removed without
// move (it is not a dead letter): the event returned says Cancelled.
func (s *Store) Remove(ctx context.Context, seq uint64, move func(tx *Tx, ev Event) error) (Event, error) {
	var ev Event
	var bad error
	err := s.do(ctx, func(t *txn) error {
		ev, bad = Event{}, nil
		k := seqKey(seq)
		raw := t.events.Get(k)
		if raw == nil {
			bad = fmt.Errorf("%w: %d", ErrNotFound, seq)
			return nil
		}
		r, err := decodeRecord(raw)
		if err != nil {
			bad = &CorruptError{What: fmt.Sprintf("event %d", seq), Err: err}
			return nil
		}
		payload, err := t.payloadOf(k, seq, &r)
		if err != nil {
			bad = err
			return nil
		}
		ev = r.event(seq, payload)
		if r.cancelled && r.state == stateLeased {
			return t.delete(seq, &r)
		}
		if move != nil {
			if err := move(t.pub(), ev); err != nil {
				return fmt.Errorf("store: moving event %d: %w", seq, err)
			}
		}
		if err := t.delete(seq, &r); err != nil {
			return err
		}
		t.tot.removed++
		return nil
	})
	if err == nil {
		err = bad
	}
	if err != nil {
		return Event{}, err
	}
	return ev, nil
}

// Reclaim returns to the ready index every lease that expired before now,
// attempts kept, and reports how many it returned. A worker that hung past
// its lease thereby loses the event to another, which at-least-once allows.
// An expired lease of an event cancelled meanwhile removes the event.
func (s *Store) Reclaim(ctx context.Context) (int, error) {
	var n int
	err := s.do(ctx, func(t *txn) error {
		var err error
		n, err = t.returnLeases(func(until int64) bool { return until < t.now })
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// ReleaseAll returns every lease to the ready index, attempts kept, and
// removes the events cancelled while leased. The dispatcher calls it when
// Run ends: it holds the file alone, so a lease still held then was taken
// by a lease call whose caller had already given up on it.
func (s *Store) ReleaseAll(ctx context.Context) (int, error) {
	var n int
	err := s.do(ctx, func(t *txn) error {
		var err error
		n, err = t.returnLeases(func(int64) bool { return true })
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// returnLeases puts back every lease for which expired says so, and
// removes the events of those that were cancelled. It returns how many it
// put back (a stale lease entry counts as one, as it always did).
func (t *txn) returnLeases(expired func(until int64) bool) (int, error) {
	var seqs []uint64
	cur := t.leases.Cursor()
	for k, v := cur.First(); k != nil; k, v = cur.Next() {
		if len(k) != 8 || len(v) != 8 {
			return 0, &CorruptError{What: "lease index", Err: fmt.Errorf("entry of %d/%d bytes", len(k), len(v))}
		}
		if expired(int64(binary.BigEndian.Uint64(v))) {
			seqs = append(seqs, binary.BigEndian.Uint64(k))
		}
	}
	returned := len(seqs)
	for _, seq := range seqs {
		r, err := t.leased(seq)
		if errors.Is(err, ErrNotFound) {
			// A lease whose event is gone: drop the stale entry.
			if err := t.leases.Delete(seqKey(seq)); err != nil {
				return 0, err
			}
			t.c.leased--
			continue
		}
		var ce *CorruptError
		if errors.As(err, &ce) {
			if err := t.setAside(seq, ce.Err.Error(), t.events.Get(seqKey(seq)), nil); err != nil {
				return 0, err
			}
			continue
		}
		if err != nil {
			return 0, err
		}
		if r.cancelled {
			if err := t.delete(seq, &r); err != nil {
				return 0, err
			}
			returned--
			continue
		}
		if err := t.unlease(seq, &r, r.due); err != nil {
			return 0, err
		}
	}
	t.tot.recovered += uint64(returned)
	return returned, nil
}

// Cancel cancels the events seqs name, in one transaction, and returns
// those it cancelled. An event ready or scheduled is removed now. A leased
// event is marked cancelled in its record, durably, and removed when its
// lease ends: Ack removes it as usual, and Reschedule, Release and Remove
// remove it rather than keep it (Remove without calling its move), as do
// Reclaim, ReleaseAll and the recovery of leases at Open. Its delivery
// may still be under way: Cancel cannot call it back.
//
// keep, when not nil, runs in the transaction for each event cancelled,
// with the event as it was (without its payload), so that its caller's
// record of the event (its key) goes in the same commit; an error from
// it cancels nothing and is returned. Sequence numbers that name no event,
// or an event already cancelled, are skipped, as are records that cannot
// be read: a lease sets those aside. Each event cancelled counts in
// Stats.Cancelled.
func (s *Store) Cancel(ctx context.Context, seqs []uint64, keep func(tx *Tx, ev Event) error) ([]uint64, error) {
	var cancelled []uint64
	err := s.do(ctx, func(t *txn) error {
		cancelled = nil
		for _, seq := range seqs {
			k := seqKey(seq)
			r, err := decodeRecord(t.events.Get(k))
			if err != nil || r.cancelled {
				continue
			}
			if keep != nil {
				if err := keep(t.pub(), r.event(seq, nil)); err != nil {
					return fmt.Errorf("store: cancelling event %d: %w", seq, err)
				}
			}
			if r.state == stateLeased {
				r.cancelled = true
				if err := t.events.Put(k, r.encode(nil)); err != nil {
					return err
				}
			} else if err := t.delete(seq, &r); err != nil {
				return err
			}
			t.c.cancelled++
			cancelled = append(cancelled, seq)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return cancelled, nil
}

// Update runs fn in a write transaction of the writer, shared with other
// calls waiting at the time, for packages that keep their own buckets in
// the file (dead letters, keys). fn must touch only those buckets, and may
// run more than once; an error from it rolls back the transaction and is
// returned. If ctx ends after the writer took the call, Update returns at
// once while fn may still run: read what fn writes only after a nil error
// (or an error fn returned).
func (s *Store) Update(ctx context.Context, fn func(tx *Tx) error) error {
	return s.do(ctx, func(t *txn) error { return fn(t.pub()) })
}

// View runs fn in a read transaction, for the packages that keep buckets
// in the file (see [BucketName]).
func (s *Store) View(fn func(tx *Tx) error) error {
	return s.view(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
}

// pub is the transaction as the callbacks of other packages see it.
func (t *txn) pub() *Tx {
	if t.public == nil {
		t.public = &Tx{tx: t.tx}
	}
	return t.public
}
