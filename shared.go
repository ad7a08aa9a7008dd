package dispatcher

import (
	"context"
	"time"

	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/internal/sharedkeys"
	"github.com/lambdadispatch/dispatcher/store"
)

// openShared opens the dispatcher's side of the shared key window w:
// package sharedkeys, which keeps the protocol (claim, commit with a
// pending record, confirm) and its background loop until Close.
func (d *Dispatcher) openShared(w idempotency.Shared) error {
	sk, err := sharedkeys.Open(sharedkeys.Config{
		Window:   w,
		Queue:    d.st,
		Local:    sharedLocal{Index: d.keys, st: d.st},
		Logger:   d.log,
		Counters: &d.sharedCounts,
		Duplicate: func() {
			d.duplicates.Add(1)
			d.opts.metrics.Deduplicated("enqueue")
		},
		Now:           d.opts.now,
		Lease:         d.opts.claimLease,
		InvokeTimeout: d.opts.invokeTimeout,
	})
	if err != nil {
		return translate(err)
	}
	d.shared = sk
	return nil
}

// Owner returns the identity this dispatcher's file claims keys under in a
// shared key window, or "" without one. It is stable across restarts.
func (d *Dispatcher) Owner() string {
	if d.shared == nil {
		return ""
	}
	return d.shared.Owner()
}

// enqueueShared is enqueue for a batch with keys when the key window is
// shared.
func (d *Dispatcher) enqueueShared(ctx context.Context, news []store.NewEvent) ([]Receipt, error) {
	admitted, err := d.shared.Admit(ctx, news)
	if err != nil {
		return nil, translate(err)
	}
	rs := make([]Receipt, len(admitted))
	written := 0
	for i, a := range admitted {
		rs[i] = Receipt{ID: a.ID, Duplicate: a.Duplicate}
		if !a.Duplicate {
			written++
		}
	}
	d.opts.metrics.Enqueued(written)
	return rs, nil
}

// sharedStats reads Stats.Shared.
func (d *Dispatcher) sharedStats() SharedStats {
	if d.shared == nil {
		return SharedStats{}
	}
	c := &d.sharedCounts
	return SharedStats{
		Claims: c.Claims.Load(), Waits: c.Waits.Load(), Lost: c.Lost.Load(),
		Unconfirmed: d.shared.Unconfirmed(),
		Unavailable: c.Unavailable.Load(), MarksSkipped: c.MarksSkipped.Load(),
	}
}

// sharedLocal is the file's own key index as package sharedkeys sees it.
type sharedLocal struct {
	*idempotency.Index
	st *store.Store
}

// Holds reports, for each of keys, whether the file holds it at now.
func (l sharedLocal) Holds(keys []string, now time.Time) (map[string]bool, error) {
	held := make(map[string]bool, len(keys))
	err := l.st.View(func(tx *store.Tx) error {
		for _, k := range keys {
			_, ok, err := l.Lookup(tx, k, now)
			if err != nil {
				return err
			}
			held[k] = ok
		}
		return nil
	})
	return held, err
}
