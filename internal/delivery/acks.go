package delivery

import (
	"context"
	"time"

	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/store"
)

// ackGather is how long delivered events wait for a lease transaction to
// carry their acks before they get one of their own.
const ackGather = 2 * time.Millisecond

// delivered queues an event's ack. Acks ride on the leaser's next lease
// transaction (or one of their own when none comes soon): a worker goes on
// to its next invocation instead of waiting for an fsync, and each commit
// costs bbolt a rewrite of every page it touches, so one commit that acks
// and leases costs far less than two. An ack lost in a crash means the
// event is sent again: at least once.
func (r *runner) delivered(seq uint64) {
	r.ackMu.Lock()
	r.pending = append(r.pending, seq)
	r.ackMu.Unlock()
}

func (r *runner) takeAcks() []uint64 {
	r.ackMu.Lock()
	defer r.ackMu.Unlock()
	acks := r.pending
	r.pending = nil
	return acks
}

func (r *runner) hasAcks() bool {
	r.ackMu.Lock()
	defer r.ackMu.Unlock()
	return len(r.pending) > 0
}

// markDelivered marks a delivered event's key in the ack's transaction.
func (r *runner) markDelivered(tx *store.Tx, seq uint64, key string) error {
	return r.cfg.Keys.Mark(tx, key, seq, idempotency.Delivered)
}

// alreadyDelivered reports whether ev's key is marked delivered, by this
// event or another, inside its window: then it is acked without an invoke.
func (r *runner) alreadyDelivered(ev store.Event) bool {
	if ev.Key == "" {
		return false
	}
	delivered, err := r.cfg.Keys.Delivered(ev.Key)
	if err != nil {
		r.log.Warn("could not read the key window; invoking", "id", formatID(ev.Seq), "error", err)
		return false
	}
	return delivered
}

// ackAndLease acks acks and leases up to n events into out. On failure the
// acks go back to be tried again.
func (r *runner) ackAndLease(ctx context.Context, acks []uint64, n int, out *[]store.Event) error {
	evs, notLeased, err := r.st.AckAndLease(ctx, acks, n, r.cfg.LeaseDuration, r.fns.quota, r.markDelivered)
	if err != nil {
		r.ackMu.Lock()
		r.pending = append(r.pending, acks...)
		r.ackMu.Unlock()
		return err
	}
	for _, seq := range notLeased {
		r.log.Warn("could not ack a delivered event: its lease was taken back; it will be sent again", "id", formatID(seq))
	}
	if out != nil {
		*out = evs
	}
	return nil
}

// waitFreed waits for an invocation to end. Acks waiting meanwhile get a
// commit of their own after ackGather, so that slow invocations holding
// the next lease back do not hold acks back too.
func (r *runner) waitFreed(ctx context.Context) bool {
	var flush <-chan time.Time
	if r.hasAcks() {
		r.flush.Reset(ackGather)
		defer r.flush.Stop()
		flush = r.flush.C
	}
	select {
	case <-r.freed:
	case <-flush:
		if err := r.ackAndLease(ctx, r.takeAcks(), 0, nil); err != nil && ctx.Err() == nil {
			r.log.Error("ack failed", "error", err)
		}
	case <-ctx.Done():
		return false
	}
	return true
}
