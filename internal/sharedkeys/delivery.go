package sharedkeys

import (
	"context"
	"errors"
	"time"

	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/store"
)

// degradedFor is how long delivery leaves the shared window alone after it
// failed: long enough not to slow every event, short enough to notice soon
// that it is back.
const degradedFor = 30 * time.Second

// BeforeInvoke confirms a keyed event's pending claim before it is sent,
// and reports whether the event turned out to be a duplicate: an event is
// never invoked and then found to have lost its key. When the window is
// unreachable the event is sent on the local index's word.
func (k *Keys) BeforeInvoke(ctx context.Context, ev store.Event) bool {
	// The Enqueue (or redrive) that committed the event may still be
	// confirming its claim, with no deadline but its caller's: the event
	// waits for it, however long it takes and whether or not the window
	// failed lately, since waiting costs the window no request. Sent
	// sooner, it would be sent before its Enqueue knew whether it is the
	// key's event, and the Enqueue may yet find that it is not, remove it
	// and report the holder elsewhere, which sends the key too.
	if unlock, err := k.locks.lock(ctx, []string{ev.Key}); err == nil {
		defer unlock()
	}
	if k.takeDropped(ev.Seq) {
		return true // removed as a duplicate while leased, by that Enqueue or the background loop
	}
	now := time.Now()
	if now.UnixNano() < k.degradedUntil.Load() {
		// The window failed moments ago: do not make every event wait for
		// it to fail again.
		return false
	}
	cctx, cancel := context.WithTimeout(ctx, min(k.cfg.InvokeTimeout, 10*time.Second))
	defer cancel()
	h, err := k.confirmClaim(cctx, ev.Seq, false)
	if k.takeDropped(ev.Seq) {
		return true // meanwhile, by the background loop, which takes no key lock
	}
	if err != nil {
		if ctx.Err() == nil {
			k.degradedUntil.Store(now.Add(degradedFor).UnixNano())
			k.log.Warn("shared key window unavailable: delivering on the local key index alone for 30s", "id", formatID(ev.Seq), "key", ev.Key, "error", redacted(err))
		}
		return false
	}
	return h != nil
}

// Record records a keyed event's outcome in the shared window. It never
// holds up delivery for long: after the window fails, marks are skipped
// for a while, with a warning, and the local index stands alone.
func (k *Keys) Record(ctx context.Context, ev store.Event, state idempotency.State) {
	if ev.Key == "" {
		return
	}
	now := time.Now()
	if now.UnixNano() < k.degradedUntil.Load() {
		k.count.MarksSkipped.Add(1)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, min(k.cfg.InvokeTimeout, 5*time.Second))
	defer cancel()
	err := k.cfg.Window.Mark(cctx, idempotency.Ref{Key: ev.Key, Owner: k.owner, ID: formatID(ev.Seq)}, state)
	switch {
	case err == nil, errors.Is(err, idempotency.ErrLost):
		// Lost: the window passed, or the claim was never confirmed; the
		// key is no longer this event's to mark.
	case ctx.Err() != nil:
	default:
		k.count.Unavailable.Add(1) // unreachable, throttled, or slower than the timeout above
		k.degradedUntil.Store(now.Add(degradedFor).UnixNano())
		k.log.Warn("shared key window unavailable: not marking outcomes there for 30s", "id", formatID(ev.Seq), "key", ev.Key, "state", state.String(), "error", redacted(err))
	}
}
