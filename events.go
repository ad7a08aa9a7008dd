package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"time"

	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/store"
)

// Events returns the inspector of the events queued in the file: those
// waiting, scheduled for a retry, or in flight.
func (d *Dispatcher) Events() *Events { return &Events{d: d} }

// Events reads the queued events, as DeadLetters reads the dead letters:
// one by id, a page at a time with a cursor, or all through an iterator.
// Each read is a short read transaction, so inspecting a large queue never
// holds the file's growth back. After the Dispatcher's Close, every method
// returns ErrClosed without touching the file.
type Events struct {
	d *Dispatcher
}

// EventState says where a queued event stands. Its string forms are
// stable: the admin handler and dispatchctl print them.
type EventState string

// The states of a queued event.
const (
	// StateReady: due now, waiting for a worker.
	StateReady EventState = "ready"
	// StateScheduled: due later, as a retry waiting out its backoff is.
	StateScheduled EventState = "scheduled"
	// StateLeased: taken by a worker, its invoke in flight.
	StateLeased EventState = "leased"
)

// QueuedEvent is an event in the queue as the inspector shows it: what was
// enqueued, where it stands, and what its attempts met.
type QueuedEvent struct {
	// ID is the event's id, as Enqueue's Receipt gave it.
	ID string
	// Function, Qualifier, Key and Payload are the event as enqueued.
	Function  string
	Qualifier string
	Key       string
	Payload   []byte
	// State is ready, scheduled or leased, on the queue's clock.
	State EventState
	// Attempts counts the leases taken so far, each an attempt.
	Attempts int
	// Enqueued is when the event entered the queue.
	Enqueued time.Time
	// Due is when the event may next be leased, on the queue's clock.
	Due time.Time
	// FirstAttempt and LastAttempt bound the attempts; zero when none was
	// made.
	FirstAttempt time.Time
	LastAttempt  time.Time
	// LeaseUntil is when the lease of a leased event runs out; zero
	// otherwise.
	LeaseUntil time.Time
	// LastError is the answer to the latest failed attempt; zero if none.
	LastError deadletter.ErrorInfo
	// Size is the payload's length in bytes.
	Size int
	// Priority is the event's, MinPriority to MaxPriority.
	Priority int
}

// EventFilter selects queued events. Zero fields match everything.
type EventFilter struct {
	Function       string     // exactly as the event named it
	State          EventState // StateReady, StateScheduled or StateLeased
	Key            string     // the event's deduplication key
	EnqueuedAfter  time.Time  // enqueued at or after
	EnqueuedBefore time.Time  // enqueued before
}

func (f EventFilter) match(e QueuedEvent) bool {
	return (f.Function == "" || e.Function == f.Function) &&
		(f.State == "" || e.State == f.State) &&
		(f.Key == "" || e.Key == f.Key) &&
		(f.EnqueuedAfter.IsZero() || !e.Enqueued.Before(f.EnqueuedAfter)) &&
		(f.EnqueuedBefore.IsZero() || e.Enqueued.Before(f.EnqueuedBefore))
}

// Get returns the queued event with the given id, payload included. An id
// that names no queued event (delivered, dead-lettered, never given, or
// not a number) returns an error matching ErrNotFound.
func (e *Events) Get(id string) (QueuedEvent, error) {
	if e.d.closed.Load() {
		return QueuedEvent{}, ErrClosed
	}
	seq, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return QueuedEvent{}, notFound(fmt.Errorf("%w: id %q is not a number", store.ErrNotFound, id))
	}
	ev, err := e.d.st.Get(seq)
	if err != nil {
		return QueuedEvent{}, notFound(translate(err))
	}
	return e.d.queuedEvent(ev), nil
}

// Find returns up to limit events that f selects, in id order, starting
// after the cursor after ("" for the first), and the cursor to go on from
// ("" at the end), as DeadLetters.Find does.
func (e *Events) Find(ctx context.Context, f EventFilter, after string, limit int) ([]QueuedEvent, string, error) {
	if e.d.closed.Load() {
		return nil, "", ErrClosed
	}
	if limit < 1 {
		return nil, "", fmt.Errorf("dispatcher: find: limit %d, want at least 1", limit)
	}
	from, err := eventCursor(after)
	if err != nil {
		return nil, "", err
	}
	// One event past the page says whether there is a next page, so that
	// the last page's cursor is "" even when it is full.
	var out []QueuedEvent
	err = e.each(ctx, f, from, func(q QueuedEvent) bool {
		out = append(out, q)
		return len(out) <= limit
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].ID
	}
	return out, next, nil
}

// All returns an iterator over every event f selects, in id order, payloads
// included. It reads the queue in short read transactions, none held while
// the loop's body runs, so events enqueued or removed meanwhile may or may
// not be seen. Breaking out of the loop stops the reading. An error (ctx
// ending, Close, a record that cannot be read) is yielded once, with a
// zero QueuedEvent, and ends the iteration.
func (e *Events) All(ctx context.Context, f EventFilter) iter.Seq2[QueuedEvent, error] {
	return func(yield func(QueuedEvent, error) bool) {
		if e.d.closed.Load() {
			yield(QueuedEvent{}, ErrClosed)
			return
		}
		if err := e.each(ctx, f, 0, func(q QueuedEvent) bool { return yield(q, nil) }); err != nil {
			yield(QueuedEvent{}, err)
		}
	}
}

// errStopScan ends a store scan early; it never leaves this file.
var errStopScan = errors.New("dispatcher: stop scan")

// each calls fn for every event f selects after the sequence number from,
// until fn returns false. The store's scan calls back outside its read
// transactions, so fn may take its time.
func (e *Events) each(ctx context.Context, f EventFilter, from uint64, fn func(QueuedEvent) bool) error {
	err := e.d.st.ScanAfter(from, func(ev store.Event) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		q := e.d.queuedEvent(ev)
		if !f.match(q) {
			return nil
		}
		if !fn(q) {
			return errStopScan
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStopScan) {
		return translate(err)
	}
	return nil
}

// eventCursor parses a cursor of Find: "" or an event id.
func eventCursor(after string) (uint64, error) {
	if after == "" {
		return 0, nil
	}
	seq, err := strconv.ParseUint(after, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("dispatcher: find: cursor %q is not an event id", after)
	}
	return seq, nil
}

// queuedEvent is ev as the inspector shows it, its state on the queue's
// clock, which due times are on.
func (d *Dispatcher) queuedEvent(ev store.Event) QueuedEvent {
	state := StateReady
	switch {
	case ev.Leased:
		state = StateLeased
	case ev.Due.After(d.st.Now()):
		state = StateScheduled
	}
	return QueuedEvent{
		ID: formatID(ev.Seq), Function: ev.Function, Qualifier: ev.Qualifier, Key: ev.Key, Payload: ev.Payload,
		State: state, Attempts: ev.Attempts, Enqueued: ev.Enqueued, Due: ev.Due,
		FirstAttempt: ev.FirstAttempt, LastAttempt: ev.LastAttempt, LeaseUntil: ev.LeaseUntil,
		LastError: ev.LastError, Size: len(ev.Payload), Priority: int(ev.Priority),
	}
}
