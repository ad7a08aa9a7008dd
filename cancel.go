package dispatcher

import (
	"context"
	"iter"
	"strconv"
	"time"

	"github.com/lambdadispatch/dispatcher/store"
)

// CancelOptions say how Cancel treats the events it cancels.
type CancelOptions struct {
	// KeepKey keeps a cancelled event's deduplication key held until its
	// window ends, so that the same event enqueued again is still refused
	// as a duplicate. By default the key is released.
	KeepKey bool
}

// cancelBatch bounds one cancel transaction, as redriveBatch does.
const cancelBatch = 500

// Cancel cancels the events with the given ids, atomically per batch of
// 500: a ready or scheduled event is removed at once; a leased one is
// marked, durably, and removed when its invocation returns, never
// retried, never dead-lettered (an invocation already under way may
// still reach the function). Ids that name no queued event are skipped.
// It returns how many were cancelled, counted in Stats.Cancelled.
func (e *Events) Cancel(ctx context.Context, ids []string, o CancelOptions) (int, error) {
	if err := e.writable(); err != nil {
		return 0, err
	}
	seqs := make([]uint64, 0, len(ids))
	for _, id := range ids {
		if seq, err := strconv.ParseUint(id, 10, 64); err == nil {
			seqs = append(seqs, seq)
		}
	}
	n := 0
	for len(seqs) > 0 {
		batch := seqs[:min(len(seqs), cancelBatch)]
		seqs = seqs[len(batch):]
		done, err := e.d.st.Cancel(ctx, batch, e.d.releaseKey(o))
		if err != nil {
			return n, translate(err)
		}
		n += len(done)
	}
	if n > 0 {
		e.d.log.Info("events cancelled", "events", n)
	}
	return n, nil
}

// CancelMatching cancels every queued event f selects, as Cancel does, and
// returns how many. An empty filter selects every event.
func (e *Events) CancelMatching(ctx context.Context, f EventFilter, o CancelOptions) (int, error) {
	if err := e.writable(); err != nil {
		return 0, err
	}
	var ids []string
	for q, err := range e.All(ctx, f) {
		if err != nil {
			return 0, err
		}
		ids = append(ids, q.ID)
	}
	return e.Cancel(ctx, ids, o)
}

func (e *Events) writable() error {
	switch {
	case e.d.closed.Load():
		return ErrClosed
	case e.d.opts.readOnly:
		return ErrReadOnly
	}
	return nil
}

// releaseKey is the store's callback for an event leaving the queue by
// cancel or eviction: its key goes with it, unless o says to keep it.
func (d *Dispatcher) releaseKey(o CancelOptions) func(tx *store.Tx, ev store.Event) error {
	return func(tx *store.Tx, ev store.Event) error {
		if ev.Key == "" || o.KeepKey {
			return nil
		}
		return d.keys.Release(tx, ev.Key, ev.Seq)
	}
}

// Eviction is the record an event evicted by WithFullPolicy(DropOldest)
// leaves in the file's eviction ledger: enough to know what was lost,
// without its payload.
type Eviction struct {
	ID       string
	Function string
	Key      string
	Enqueued time.Time
	Size     int64 // the payload's bytes
	Priority int
	Reason   string    // why: "full"
	Evicted  time.Time // when
}

// Evictions returns up to limit records of the eviction ledger, oldest
// first, after the record of id after ("" for the first), and the cursor
// of the next page ("" at the end).
func (e *Events) Evictions(ctx context.Context, after string, limit int) ([]Eviction, string, error) {
	if e.d.closed.Load() {
		return nil, "", ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	from, err := eventCursor(after)
	if err != nil {
		return nil, "", err
	}
	recs, next, err := e.d.st.Evictions(from, limit)
	if err != nil {
		return nil, "", translate(err)
	}
	out := make([]Eviction, len(recs))
	for i, r := range recs {
		out[i] = Eviction{ID: formatID(r.Seq), Function: r.Function, Key: r.Key, Enqueued: r.Enqueued, Size: int64(r.PayloadSize), Priority: int(r.Priority), Reason: r.Reason, Evicted: r.Evicted}
	}
	cursor := ""
	if next != 0 {
		cursor = formatID(next)
	}
	return out, cursor, nil
}

// AllEvictions yields every record of the eviction ledger, a page at a
// time; an error is yielded once and ends it.
func (e *Events) AllEvictions(ctx context.Context) iter.Seq2[Eviction, error] {
	return func(yield func(Eviction, error) bool) {
		after := ""
		for {
			page, next, err := e.Evictions(ctx, after, 1000)
			if err != nil {
				yield(Eviction{}, err)
				return
			}
			for _, ev := range page {
				if !yield(ev, nil) {
					return
				}
			}
			if next == "" {
				return
			}
			after = next
		}
	}
}

// WaitDrained returns nil once no event is queued (ready, scheduled or
// leased), or ctx's error if it ends first. Events of a paused function
// stay queued, so it waits for them too. It does not start Run.
func (d *Dispatcher) WaitDrained(ctx context.Context) error {
	for {
		if d.closed.Load() {
			return ErrClosed
		}
		// Armed before the check, so a commit between the two wakes us.
		changed := d.st.Changed()
		// The store's own count of events held, in every state: the
		// dispatcher's Stats would also read every function's figures at
		// each commit waited on.
		s, err := d.st.Stats()
		if err != nil {
			return translate(err)
		}
		if s.Events == 0 {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
