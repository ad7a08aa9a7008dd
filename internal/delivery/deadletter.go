package delivery

import (
	"context"
	"errors"
	"math/rand/v2"

	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/retry"
	"github.com/lambdadispatch/dispatcher/store"
)

// deadLetter hands the event to the dead-letter sinks in order and removes
// it from the queue. A sink that shares the queue's file (the default)
// writes the letter in the transaction that removes the event; with
// another, the letter is put first, so a crash between the two can repeat
// a letter but never lose one. When a sink fails (down, or the letter is
// too large for it) the next is tried; the last is the queue's own file,
// so a letter is never lost and never holds up the queue. Only if that
// fails too does the event stay queued, its move retried with backoff; if
// Run ends first, the event returns to the queue.
func (r *runner) deadLetter(ctx context.Context, ev store.Event, reason deadletter.Reason, ie *retry.InvokeError) {
	letter := deadletter.Letter{
		ID: formatID(ev.Seq), Function: ev.Function, Qualifier: ev.Qualifier, Key: ev.Key,
		Payload: ev.Payload, Enqueued: ev.Enqueued, Reason: reason, Attempts: ev.Attempts,
		FirstAttempt: ev.FirstAttempt, LastAttempt: ev.LastAttempt, DeadLettered: r.cfg.Now(),
	}
	letter.LastError = errorInfo(ie)
	for n := 1; ; n++ {
		err := r.putLetter(ctx, ev, letter)
		if errors.Is(err, store.ErrNotFound) {
			return
		}
		if err == nil {
			// Logged before it is counted, so that whoever sees the count
			// finds the log line written.
			attrs := []any{"id", letter.ID, "function", ev.Function, "reason", string(reason), "attempts", ev.Attempts, "error", letter.LastError.Code}
			if r.cfg.LogSizes {
				attrs = append(attrs, "payload_bytes", len(ev.Payload))
			}
			r.log.Warn("dead-lettered an event", attrs...)
			r.cfg.Counters.deadLettered(reason)
			r.cfg.Counters.function(ev.Function).DeadLettered.Add(1)
			r.cfg.Metrics.DeadLettered(string(reason))
			r.cfg.Metrics.Dropped(ev.Function, string(reason))
			r.record(ctx, ev, idempotency.DeadLettered)
			return
		}
		r.log.Error("every dead-letter sink failed; the event stays queued", "id", letter.ID, "error", redacted(err))
		if !sleep(ctx, r.cfg.Policy.ProbeDelay(n, rand.Float64())) {
			r.settle(func(c context.Context) error { return r.st.Release(c, false, ev.Seq) })
			return
		}
	}
}

// putLetter tries the sinks in order until one takes the letter and the
// event is removed, and returns the last sink's error if none did, or
// store.ErrNotFound if the event was gone.
func (r *runner) putLetter(ctx context.Context, ev store.Event, letter deadletter.Letter) error {
	mark := func(tx *store.Tx, _ store.Event) error {
		if ev.Key == "" {
			return nil
		}
		return r.cfg.Keys.Mark(tx, ev.Key, ev.Seq, idempotency.DeadLettered)
	}
	var err error
	for i, sink := range r.cfg.Sinks {
		if ts, ok := sink.(deadletter.TxSink); ok {
			_, err = r.st.Remove(ctx, ev.Seq, func(tx *store.Tx, e store.Event) error {
				if err := ts.PutTx(tx, letter); err != nil {
					return err
				}
				return mark(tx, e)
			})
		} else if err = sink.Put(ctx, letter); err == nil {
			_, err = r.st.Remove(ctx, ev.Seq, mark)
		}
		if err == nil || errors.Is(err, store.ErrNotFound) {
			return err
		}
		if i < len(r.cfg.Sinks)-1 {
			r.log.Warn("dead-letter sink failed; trying the next", "id", letter.ID, "sink", i, "error", redacted(err))
		}
	}
	return err
}

// redacted is err's text for a log line, without the credentials an AWS
// service (a dead-letter queue) can quote back in it.
func redacted(err error) string { return retry.Redact(err.Error()) }
