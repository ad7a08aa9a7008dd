package sharedkeys

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/retry"
	"github.com/lambdadispatch/dispatcher/store"
)

// Keys is the dispatcher's side of one shared key window, for one queue
// file. It is safe for concurrent use.
type Keys struct {
	cfg   Config
	log   *slog.Logger
	count *Counters
	owner string
	locks keyLocks

	mu          sync.Mutex
	unconfirmed map[uint64]pendingClaim // committed, not confirmed
	confirming  map[uint64]*confirmCall // confirms under way
	finished    []uint64                // pending records to delete from the file
	// dropped are the events removed as duplicates while delivery held
	// them leased, until their BeforeInvoke reads them. One whose
	// BeforeInvoke had already passed (the window had failed, and the
	// event was sent on the local index's word) stays until Close.
	dropped map[uint64]bool

	kick chan struct{}
	stop context.CancelFunc
	done chan struct{}

	degradedUntil atomic.Int64 // Unix ns: delivery-side marks skipped until then
}

// Open reads or creates the file's owner identity, loads the claims left
// unconfirmed, and starts the loop that confirms them, which Close stops.
// Its error is the queue's, as the store returned it.
func Open(cfg Config) (*Keys, error) {
	k := &Keys{cfg: cfg, log: cfg.Logger, count: cfg.Counters, unconfirmed: map[uint64]pendingClaim{}, confirming: map[uint64]*confirmCall{}, dropped: map[uint64]bool{}, kick: make(chan struct{}, 1)}
	if k.log == nil {
		k.log = slog.New(slog.DiscardHandler)
	}
	if k.count == nil {
		k.count = new(Counters)
	}
	if k.cfg.Duplicate == nil {
		k.cfg.Duplicate = func() {}
	}
	err := cfg.Queue.Update(context.Background(), func(tx *store.Tx) error {
		var err error
		k.owner, err = loadFile(tx, k.unconfirmed, func(err error) {
			k.log.Error("dropping an unreadable pending claim", "error", err)
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	k.stop, k.done = stop, make(chan struct{})
	go k.confirmLoop(ctx)
	return k, nil
}

// Owner returns the identity the file claims keys under, stable across
// restarts.
func (k *Keys) Owner() string { return k.owner }

// Unconfirmed returns the number of events committed whose claim is not
// yet confirmed.
func (k *Keys) Unconfirmed() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.unconfirmed)
}

// Close stops the background loop, waits for it, and deletes the pending
// records of the claims finished since its last pass. It does not close
// the window or the queue.
func (k *Keys) Close() {
	k.stop()
	<-k.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	k.flushFinished(ctx)
}

// confirmLoop confirms the claims left unconfirmed by a crash or by an
// unreachable window, and deletes the records of those finished, until
// Close.
func (k *Keys) confirmLoop(ctx context.Context) {
	defer close(k.done)
	backoff := 0
	for {
		wait := time.Second
		if backoff > 0 {
			wait = min(time.Duration(1<<min(backoff, 6))*100*time.Millisecond, 30*time.Second)
		}
		if k.confirmPending(ctx) {
			backoff = 0
		} else {
			backoff++
		}
		k.flushFinished(ctx)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-k.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// wake asks the background loop for a pass now.
func (k *Keys) wake() {
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

// confirmPending tries every unconfirmed claim once, and reports false if
// the window was unavailable.
func (k *Keys) confirmPending(ctx context.Context) bool {
	k.mu.Lock()
	seqs := make([]uint64, 0, len(k.unconfirmed))
	for seq := range k.unconfirmed {
		seqs = append(seqs, seq)
	}
	k.mu.Unlock()
	slices.Sort(seqs)
	// A few at a time: the claims must be confirmed before their leases
	// pass, and one slow request each, in turn, would not keep up.
	var failed atomic.Bool
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, seq := range seqs {
		if ctx.Err() != nil || failed.Load() {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := k.confirmClaim(ctx, seq, true); err != nil {
				if !errors.Is(err, idempotency.ErrUnavailable) && ctx.Err() == nil {
					k.log.Error("could not confirm a key claim", "id", formatID(seq), "error", redacted(err))
				}
				failed.Store(true)
			}
		})
	}
	wg.Wait()
	return !failed.Load()
}

// flushFinished deletes the pending records of the claims finished, in one
// transaction; on failure they are kept for the next pass.
func (k *Keys) flushFinished(ctx context.Context) {
	k.mu.Lock()
	seqs := k.finished
	k.finished = nil
	k.mu.Unlock()
	if len(seqs) == 0 {
		return
	}
	if err := k.cfg.Queue.Update(ctx, func(tx *store.Tx) error { return deletePending(tx, seqs...) }); err != nil {
		k.mu.Lock()
		k.finished = append(k.finished, seqs...)
		k.mu.Unlock()
	}
}

// pend records that event seq is committed with claim pc not yet
// confirmed.
func (k *Keys) pend(seq uint64, pc pendingClaim) {
	k.mu.Lock()
	k.unconfirmed[seq] = pc
	k.mu.Unlock()
}

func (k *Keys) noteUnavailable(err error) {
	if errors.Is(err, idempotency.ErrUnavailable) {
		k.count.Unavailable.Add(1)
	}
}

// formatID is an event's ID as the root's Receipt and the window carry it.
func formatID(seq uint64) string { return strconv.FormatUint(seq, 10) }

// redacted is err's text for a log line, without the credentials an AWS
// service (a shared key window) can quote back in it.
func redacted(err error) string { return retry.Redact(err.Error()) }

// sleep waits for d or until ctx ends, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
