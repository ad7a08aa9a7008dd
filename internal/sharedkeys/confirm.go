package sharedkeys

import (
	"context"
	"errors"
	"fmt"

	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/store"
)

// confirmClaim confirms the pending claim of event seq, if it has one. It
// returns the holder elsewhere when the claim was lost to it; then, if
// remove is set, the event is taken out of the queue as the duplicate it
// turned out to be. An error leaves the claim pending.
//
// Concurrent confirms of one event (Enqueue's, delivery's, the background
// loop's) share one attempt and its outcome.
func (k *Keys) confirmClaim(ctx context.Context, seq uint64, remove bool) (*idempotency.Holder, error) {
	k.mu.Lock()
	pc, ok := k.unconfirmed[seq]
	if !ok {
		k.mu.Unlock()
		return nil, nil
	}
	if c := k.confirming[seq]; c != nil {
		k.mu.Unlock()
		select {
		case <-c.done:
			return c.holder, c.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c := &confirmCall{done: make(chan struct{})}
	k.confirming[seq] = c
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		delete(k.confirming, seq)
		k.mu.Unlock()
		close(c.done)
	}()
	c.holder, c.err = k.tryConfirm(ctx, seq, pc, remove)
	return c.holder, c.err
}

// confirmCall is one confirm of an event's claim under way.
type confirmCall struct {
	done   chan struct{}
	holder *idempotency.Holder
	err    error
}

// tryConfirm confirms pc, the claim of event seq. It keeps the invariant
// that exactly one event holds a key: if the claim was lost, it is taken
// again only when nobody else holds the key; when somebody does, this
// event is the duplicate (dropDuplicate).
func (k *Keys) tryConfirm(ctx context.Context, seq uint64, pc pendingClaim, remove bool) (*idempotency.Holder, error) {
	w := k.cfg.Window
	// The event may be gone from the file already, delivered while the
	// window was too slow to confirm before the invoke: its claim is
	// confirmed all the same, or another dispatcher would take the key
	// over once the lease passed and deliver it a second time.
	ref := idempotency.Ref{Key: pc.key, Owner: k.owner, Token: pc.token, ID: formatID(seq)}
	for tries := 0; ; tries++ {
		err := w.Confirm(ctx, ref)
		if err == nil {
			k.finish(seq)
			return nil, nil
		}
		if !errors.Is(err, idempotency.ErrLost) {
			k.noteUnavailable(err)
			return nil, err
		}
		now := k.cfg.Now()
		if !pc.expires.After(now) {
			// The window is over: the key deduplicates nothing any more.
			k.finish(seq)
			return nil, nil
		}
		// Our claim is gone. If nobody holds the key, this event is still
		// its only one: claim it again. Otherwise the key's event is
		// elsewhere and this one is the duplicate.
		h, claimed, err := w.Claim(ctx, idempotency.Claim{Key: pc.key, Owner: k.owner, Token: pc.token, Window: pc.expires.Sub(now), Lease: k.cfg.Lease}, now)
		if err != nil {
			k.noteUnavailable(err)
			return nil, err
		}
		if claimed {
			if tries < 3 {
				continue
			}
			return nil, fmt.Errorf("dispatcher: key %q: claimed again but the confirm keeps failing", pc.key)
		}
		if h.Owner == k.owner && h.ID == ref.ID {
			// Confirmed already, by a concurrent confirm of the same
			// event, and perhaps delivered since.
			k.finish(seq)
			return nil, nil
		}
		if h.State == idempotency.Claimed && h.Lease.After(now) {
			return nil, fmt.Errorf("dispatcher: key %q: claimed by %s, not yet committed", pc.key, h.Owner)
		}
		return k.dropDuplicate(ctx, seq, pc, h, remove)
	}
}

// dropDuplicate finishes event seq, whose claim h took over: the key's
// event is h's, and this one, if remove is set, leaves the queue with its
// pending record in one transaction, counted once as a duplicate.
func (k *Keys) dropDuplicate(ctx context.Context, seq uint64, pc pendingClaim, h idempotency.Holder, remove bool) (*idempotency.Holder, error) {
	k.count.Lost.Add(1)
	k.log.Warn("a key claim was taken over before it was confirmed: the event is a duplicate", "id", formatID(seq), "key", pc.key, "holder", h.Owner, "holder_id", h.ID)
	if remove {
		ev, err := k.cfg.Queue.Remove(ctx, seq, func(tx *store.Tx, _ store.Event) error {
			return deletePending(tx, seq)
		})
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		if err == nil && ev.Leased {
			// Delivery holds the event: its BeforeInvoke must not send it.
			// Recorded before finish, so that a BeforeInvoke that finds the
			// claim no longer unconfirmed finds this.
			k.mu.Lock()
			k.dropped[seq] = true
			k.mu.Unlock()
		}
		k.cfg.Duplicate()
	}
	k.finish(seq)
	return &h, nil
}

// takeDropped reports whether event seq was removed as a duplicate while
// delivery held it leased, and forgets it.
func (k *Keys) takeDropped(seq uint64) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.dropped[seq] {
		return false
	}
	delete(k.dropped, seq)
	return true
}

// finish drops seq from the unconfirmed claims; its record in the file
// goes with the next flush, so that a confirm costs no commit of its own.
// A record left by a crash is confirmed again at Open, which is harmless.
func (k *Keys) finish(seq uint64) {
	k.mu.Lock()
	if _, ok := k.unconfirmed[seq]; ok {
		delete(k.unconfirmed, seq)
		k.finished = append(k.finished, seq)
	}
	k.mu.Unlock()
}
