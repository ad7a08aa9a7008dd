package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"

	"github.com/lambdadispatch/dispatcher/internal/wal"
)

// An op is one caller's write, applied by the writer inside a transaction
// it shares with every other op waiting at the time.
//
// apply returns an error only when the transaction must not commit (bbolt
// failed, a sink refused a letter); an error that concerns this op alone
// (not leased, full) is set in op.err by apply after checking and before
// writing anything, so the other ops in the transaction still commit.
// apply may run twice: when a shared transaction fails, each op is run
// again in one of its own so that one bad op cannot fail its neighbours.
type op struct {
	apply func(t *txn) error
	// logApply, when not nil, admits the op into the write-ahead log
	// instead (see logRound); errUseTx sends it to apply after all.
	logApply func(l *logTxn) error
	err      error
	state    atomic.Int32
	done     chan struct{}
}

const (
	opPending int32 = iota
	opTaken
	opCancelled
)

// do submits apply to the writer and waits for its outcome. If ctx ends
// before the writer takes the op, the op is dropped and ctx's error
// returned: nothing was written. If it ends after, ctx's error is returned
// at once too, and the write may or may not commit: the caller was not told
// it did, which is what at-least-once needs. apply may then still be
// running: a caller must not read what apply writes unless do returned nil
// or an error apply set.
func (s *Store) do(ctx context.Context, apply func(t *txn) error) error {
	return s.submit(ctx, &op{apply: apply})
}

// doLogged is do for an op that may go to the write-ahead log instead of
// a transaction: logApply admits it there, or returns errUseTx.
func (s *Store) doLogged(ctx context.Context, apply func(t *txn) error, logApply func(l *logTxn) error) error {
	return s.submit(ctx, &op{apply: apply, logApply: logApply})
}

// doBackground is do for the store's own work, which no caller's context
// bounds.
func (s *Store) doBackground(apply func(t *txn) error) error {
	return s.do(context.Background(), apply)
}

func (s *Store) submit(ctx context.Context, o *op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o.done = make(chan struct{})
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	if s.ops == nil {
		s.mu.RUnlock()
		return ErrReadOnly
	}
	select {
	case s.ops <- o:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	select {
	case <-o.done:
		return o.err
	case <-ctx.Done():
		o.state.CompareAndSwap(opPending, opCancelled)
		return ctx.Err()
	}
}

// writer owns every write transaction. It takes the first op waiting, every
// other op already waiting (up to MaxBatch), and commits them together.
func (s *Store) writer() {
	defer s.writerW.Done()
	batch := make([]*op, 0, s.opts.MaxBatch)
	for {
		var first *op
		select {
		case o, ok := <-s.ops:
			if !ok {
				return
			}
			first = o
		case <-s.wal.timerC():
			s.checkpoint()
			continue
		}
		batch = append(batch[:0], first)
	fill:
		for len(batch) < s.opts.MaxBatch {
			select {
			case o, ok := <-s.ops:
				if !ok {
					break fill
				}
				batch = append(batch, o)
			default:
				break fill
			}
		}
		s.run(batch)
		clear(batch)
		if s.wal != nil && s.wal.checkpointDue() {
			s.checkpoint()
		}
	}
}

// checkpoint applies what the write-ahead log holds to the file.
func (s *Store) checkpoint() {
	if err := s.commit(nil); err != nil {
		s.log.Error("write-ahead log: checkpoint failed; the events stay in the log and the next write transaction tries again", "path", s.path, "error", err)
	}
}

func (s *Store) run(batch []*op) {
	live := batch[:0]
	for _, o := range batch {
		if o.state.CompareAndSwap(opPending, opTaken) {
			live = append(live, o)
		}
	}
	if s.wal != nil {
		var logged []*op
		live, logged = s.logRound(live)
		for _, o := range logged {
			close(o.done)
		}
	}
	if len(live) == 0 {
		return
	}
	if err := s.commit(live); err != nil {
		if len(live) == 1 {
			live[0].err = err
		} else {
			for _, o := range live {
				if err := s.commit([]*op{o}); err != nil {
					o.err = err
				}
			}
		}
	}
	for _, o := range live {
		close(o.done)
	}
}

// commit applies ops in one transaction. The in-memory counts change only
// once bbolt reports the commit durable.
func (s *Store) commit(ops []*op) error {
	var t *txn
	err := s.db.Update(func(tx *bolt.Tx) error {
		t = s.newTxn(tx)
		if err := t.applyLog(); err != nil {
			return err
		}
		for _, o := range ops {
			o.err = nil
			if err := o.apply(t); err != nil {
				return err
			}
		}
		if err := t.putFunctions(); err != nil {
			return err
		}
		if err := t.putCounts(); err != nil {
			return err
		}
		if s.wal != nil {
			var err error
			t.logPin, err = logPinOf(t.inlog)
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	t.tot.commits++
	s.logCommitted(t)
	s.statMu.Lock()
	s.counts = t.c
	s.totals.add(t.tot)
	s.publishFunctions(t)
	changed := s.changed
	s.changed = nil
	s.statMu.Unlock()
	if changed != nil {
		close(changed)
	}
	if cb := s.opts.EvictionsCommitted; cb != nil && len(t.evictedFns) > 0 {
		cb(t.evictedFns)
	}
	if t.readied {
		select {
		case s.ready <- struct{}{}:
		default:
		}
	}
	return nil
}

// txn is the state one write transaction carries between ops.
type txn struct {
	s         *Store
	tx        *bolt.Tx
	meta      *bolt.Bucket
	events    *bolt.Bucket
	payloads  *bolt.Bucket
	functions *bolt.Bucket
	fnready   *bolt.Bucket
	leases    *bolt.Bucket
	corrupt   *bolt.Bucket
	// inlog holds, for each event whose payload the file reads from the
	// write-ahead log, the payload's position there.
	inlog *bolt.Bucket
	// evictable is the eviction index, nil unless the store keeps it
	// (FullDropOldest); ledger, the eviction ledger once an eviction
	// needed it.
	evictable *bolt.Bucket
	ledger    *bolt.Bucket
	public    *Tx   // tx as other packages' callbacks see it; see pub
	now       int64 // queue time (Store.Now)
	wall      int64 // wall clock, for enqueue times and key windows
	// Cursors reused by the hot paths: see reused.
	cEvents, cPayloads, cReady, cLeases, cEvict, cInLog reused
	c                                                   counts // working copy, published on commit
	tot                                                 totals
	readied                                             bool     // an event became ready: wake consumers
	evictedFns                                          []string // the function of each event evicted
	// logApplied counts the write-ahead log's entries applied first;
	// logPos is the log position the transaction records.
	logApplied int
	logPos     wal.Position
	// logPin is the oldest payload position the file reads from the log
	// once the transaction commits (see logPinOf).
	logPin wal.Position

	// The working copies of the functions the transaction touched (see
	// fnTouch): the first few in place, the rest in a map, and the last
	// one found, since runs of one function are the rule.
	fnSmall [fnFew]fnTouch
	fnN     int
	fnMore  map[string]*fnTouch
	fnLast  *fnTouch
}

func (s *Store) newTxn(tx *bolt.Tx) *txn {
	s.statMu.Lock()
	c := s.counts
	s.statMu.Unlock()
	t := &txn{
		s: s, tx: tx, now: s.clock.now(), wall: s.now().UnixNano(), c: c,
		meta:      tx.Bucket(bucketMeta),
		events:    tx.Bucket(bucketEvents),
		payloads:  tx.Bucket(bucketPayloads),
		functions: tx.Bucket(bucketFunctions),
		fnready:   tx.Bucket(bucketFnReady),
		leases:    tx.Bucket(bucketLeases),
		corrupt:   tx.Bucket(bucketCorrupt),
		inlog:     tx.Bucket(bucketInLog),
	}
	// Keys only ever grow in these buckets, so full pages waste nothing;
	// bbolt's default of half-full pages made the file a third larger.
	// In fnready they grow within each function's range rather than at
	// the end, but a split of a full page there leaves a full page and
	// the tail the next keys of that function fill, as at the end.
	t.payloads.FillPercent = 1.0
	t.events.FillPercent = eventsFill
	t.fnready.FillPercent = 1.0
	t.cEvents.b, t.cPayloads.b, t.cReady.b, t.cLeases.b = t.events, t.payloads, t.fnready, t.leases
	if t.inlog != nil {
		t.inlog.FillPercent = 1.0
		t.cInLog.b = t.inlog
	}
	if s.evictOn {
		t.evictable = tx.Bucket(bucketEvictable)
		// Keys grow at the end of each priority's range, as in fnready.
		t.evictable.FillPercent = 1.0
		t.cEvict.b = t.evictable
	}
	return t
}

// eventsFill leaves room in the pages of "events" for records to grow as
// they are leased and rescheduled, without splitting a page each time.
const eventsFill = 0.9

// reused is one cursor of a bucket, reused for every lookup and delete of
// a transaction: bbolt's Bucket.Get and Bucket.Delete allocate a cursor
// each, and the worker cycle (lease, then ack) makes ten such calls per
// event. A Seek starts afresh, so writes in between do not matter.
type reused struct {
	b *bolt.Bucket
	c *bolt.Cursor
}

func (r *reused) cursor() *bolt.Cursor {
	if r.c == nil {
		r.c = r.b.Cursor()
	}
	return r.c
}

// get is Bucket.Get.
func (r *reused) get(k []byte) []byte {
	ck, v := r.cursor().Seek(k)
	if !bytes.Equal(ck, k) {
		return nil
	}
	return v
}

// del is Bucket.Delete: deleting a key that is not there does nothing.
func (r *reused) del(k []byte) error {
	c := r.cursor()
	if ck, _ := c.Seek(k); !bytes.Equal(ck, k) {
		return nil
	}
	return c.Delete()
}

func (t *txn) putCounts() error {
	t.c.clock = max(t.c.clock, t.now)
	return t.meta.Put(keyCounters, t.c.encode())
}

func putUint64(b *bolt.Bucket, k []byte, v int64) error {
	return b.Put(k, binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(v)))
}
