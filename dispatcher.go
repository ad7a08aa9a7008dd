package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/internal/delivery"
	"github.com/lambdadispatch/dispatcher/internal/sharedkeys"
	"github.com/lambdadispatch/dispatcher/store"
)

// Dispatcher queues events durably in one file and, once sending is
// configured, delivers them to Lambda. It is safe for concurrent use.
type Dispatcher struct {
	st   *store.Store
	opts options
	lim  limits
	log  *slog.Logger

	runMu sync.Mutex
	// closed is set once, by Close, under runMu (so that Run and Close
	// agree on who stops whom), and read without it by every call, which
	// then returns ErrClosed before touching the file or the network.
	closed  atomic.Bool
	runStop context.CancelFunc // the Run in progress, if any
	runDone chan struct{}

	counts  delivery.Counters // what Run counted, since Open
	letters *deadletter.Bolt
	sinks   []deadletter.Sink // tried in order; the last is letters unless WithoutDeadLetterFallback

	keys         *idempotency.Index
	duplicates   atomic.Uint64 // refused at enqueue
	keysSwept    atomic.Uint64
	keysEvicted  atomic.Uint64
	stopBG       context.CancelFunc // the key sweep and the rate sampler
	bg           sync.WaitGroup
	rates        rateLog
	shared       *sharedkeys.Keys // nil unless WithSharedKeys
	sharedCounts sharedkeys.Counters
}

// Open opens the queue file at path, creating it (mode 0600) if needed.
// Events leased by a process that died are returned to the queue, with the
// attempts they spent kept. If another dispatcher holds the file, Open
// waits up to the lock timeout (WithLockTimeout) and then fails with
// ErrFileInUse. With WithReadOnly it opens an existing queue without
// writing to it, and every call that would write returns ErrReadOnly.
func Open(path string, opts ...Option) (*Dispatcher, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if reason := checkWindow(o.now(), o.keyWindow); reason != "" {
		return nil, fmt.Errorf("dispatcher: WithKeyWindow(%v): %w", o.keyWindow, &ValidationError{Field: "Window", Reason: reason})
	}
	if o.leaseDuration <= o.invokeTimeout {
		return nil, fmt.Errorf("dispatcher: lease duration %v must exceed the invoke timeout %v", o.leaseDuration, o.invokeTimeout)
	}
	var d *Dispatcher // the store's eviction callback needs it; set below
	// The key index is made at the store's Open, so that the events the
	// write-ahead log replays hold their keys in it.
	var keys *idempotency.Index
	async, _ := o.metrics.(AsyncMetrics)
	st, err := store.Open(path, store.Options{
		LockTimeout:        o.lockTimeout,
		MaxEvents:          o.maxEvents,
		MaxBytes:           o.maxBytes,
		Now:                o.now,
		Elapsed:            o.elapsed,
		Logger:             o.logger,
		ReadOnly:           o.readOnly,
		Full:               store.FullPolicy(o.full),
		MaxEvictionRecords: o.maxEvictionRecords,
		NoLog:              o.noLog,
		// An evicted event's key goes with it, in the enqueue transaction
		// that evicts it: the event is gone, so a replay is not a duplicate.
		Evicted: func(tx *store.Tx, ev store.Event) error { return d.releaseKey(CancelOptions{})(tx, ev) },
		KeyWindow: func(s *store.Store) store.KeyWindow {
			keys = idempotency.New(s)
			return keys
		},
		EvictionsCommitted: func(functions []string) {
			if async != nil {
				for _, fn := range functions {
					async.Dropped(fn, "evicted")
				}
			}
		},
	})
	if err != nil {
		var ce *store.CorruptError
		if errors.As(err, &ce) {
			return nil, &mappedError{err: err, is: ErrCorruptFile, text: err.Error()}
		}
		return nil, translate(err)
	}
	d = &Dispatcher{st: st, opts: o, lim: limits{maxPayload: o.maxPayload}, log: o.logger}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.opts.metrics == nil {
		d.opts.metrics = noMetrics{}
	}
	d.opts.metrics.Attach(d.Stats)
	d.letters = deadletter.NewBolt(st)
	d.keys = keys
	if d.keys == nil { // read-only: the store took no key window
		d.keys = idempotency.New(st)
	}
	if !o.readOnly && o.shared != nil {
		if err := d.openShared(o.shared); err != nil {
			st.Close()
			return nil, err
		}
	}
	bgCtx, stop := context.WithCancel(context.Background())
	d.stopBG = stop
	d.rates.start = time.Now()
	d.rates.add(d.rateSample())
	d.bg.Go(func() { d.sampleRates(bgCtx) })
	if o.readOnly {
		// Nothing to sweep, nothing to claim: both would write.
		return d, nil
	}
	d.bg.Go(func() { d.sweep(bgCtx) })
	// The queue's own file is always the last resort, so a dead letter is
	// never lost and never blocks the queue when a remote sink is down.
	if d.opts.sink != nil {
		d.sinks = append(d.sinks, d.opts.sink)
	}
	if !d.opts.noFallback || len(d.sinks) == 0 {
		d.sinks = append(d.sinks, d.letters)
	}
	return d, nil
}

// Enqueue validates e and queues it. It returns only once the event is
// committed and fsync'd: a Receipt means the event survives a crash.
// Concurrent calls share one transaction and one fsync.
//
// If ctx ends first, Enqueue returns ctx's error promptly. The event was
// then not reported as queued; it may still be if its commit was already
// under way, so a caller that retries should give the event a Key.
func (d *Dispatcher) Enqueue(ctx context.Context, e Event) (Receipt, error) {
	rs, err := d.enqueue(ctx, []Event{e})
	if err != nil {
		return Receipt{}, err
	}
	return rs[0], nil
}

// EnqueueBatch validates and queues events in one transaction: either all
// are queued or, with an error, none. Receipts are in the order of events.
func (d *Dispatcher) EnqueueBatch(ctx context.Context, events []Event) ([]Receipt, error) {
	return d.enqueue(ctx, events)
}

func (d *Dispatcher) enqueue(ctx context.Context, events []Event) ([]Receipt, error) {
	if d.closed.Load() {
		return nil, ErrClosed
	}
	if d.opts.readOnly {
		return nil, ErrReadOnly
	}
	if len(events) == 0 {
		return nil, nil
	}
	news := make([]store.NewEvent, len(events))
	keyed := false
	for i := range events {
		e := events[i]
		if e.Key == "" && d.opts.keyFunc != nil {
			e.Key = d.opts.keyFunc(e)
		}
		if err := validateEvent(i, &e, d.lim); err != nil {
			return nil, err
		}
		after, err := validateSchedule(i, &e, d.opts.now())
		if err != nil {
			return nil, err
		}
		if e.Window < 0 {
			return nil, &ValidationError{Index: i, Field: "Window", Reason: fmt.Sprintf("window %v is negative", e.Window)}
		}
		// The option's window was checked at Open; checked again here, as
		// time passes, it could refuse every event, while the key index
		// saturates the few that could reach its end.
		if e.Window > 0 {
			if reason := checkWindow(d.opts.now(), e.Window); reason != "" {
				return nil, &ValidationError{Index: i, Field: "Window", Reason: reason}
			}
		}
		if e.Window == 0 {
			e.Window = d.opts.keyWindow
		}
		// A delayed event's key is held at least until it is due: a replay
		// before then is still a duplicate of the event waiting.
		e.Window = max(e.Window, after)
		keyed = keyed || e.Key != ""
		news[i] = store.NewEvent{Function: e.Function, Qualifier: e.Qualifier, Key: e.Key, Payload: e.Payload, Window: e.Window,
			Due: dueAt(d.st.Now(), after), Priority: int8(e.Priority)}
	}
	rs := make([]Receipt, len(news))
	if !keyed {
		seqs, err := d.st.Enqueue(ctx, news)
		if err != nil {
			return nil, translate(err)
		}
		for i, seq := range seqs {
			rs[i] = Receipt{ID: formatID(seq)}
		}
		d.opts.metrics.Enqueued(len(seqs))
		return rs, nil
	}
	if d.shared != nil {
		return d.enqueueShared(ctx, news)
	}
	results, err := d.st.EnqueueUnique(ctx, news, d.keys)
	if err != nil {
		return nil, translate(err)
	}
	written := 0
	for i, r := range results {
		rs[i] = Receipt{ID: formatID(r.Seq), Duplicate: r.Duplicate}
		if r.Duplicate {
			d.duplicates.Add(1)
			d.opts.metrics.Deduplicated("enqueue")
		} else {
			written++
		}
	}
	d.opts.metrics.Enqueued(written)
	return rs, nil
}

// dueAt is the queue-clock due time of an event due after from now; zero
// for at once.
func dueAt(queueNow time.Time, after time.Duration) time.Time {
	if after <= 0 {
		return time.Time{}
	}
	return queueNow.Add(after)
}

// checkWindow refuses a key window whose end, from now, is past what the
// key index can hold (Unix nanoseconds end in 2262): its expiry would wrap
// to the past and the key expire at once, turning deduplication off.
func checkWindow(now time.Time, w time.Duration) string {
	if w > 0 && now.UnixNano() > math.MaxInt64-int64(w) {
		return fmt.Sprintf("window %v from %s ends past %s, the last expiry a key can have", w, now.UTC().Format(time.RFC3339), time.Unix(0, math.MaxInt64).UTC().Format(time.RFC3339))
	}
	return ""
}

// sweep removes expired keys, and the oldest past WithMaxKeys, every
// WithKeySweep, in bounded transactions, until Close.
func (d *Dispatcher) sweep(ctx context.Context) {
	t := time.NewTicker(d.opts.sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := d.keys.Sweep(ctx, d.opts.now(), sweepBatch)
		d.keysSwept.Add(uint64(n))
		if err != nil && ctx.Err() == nil {
			d.log.Error("sweeping expired keys failed", "error", err)
		}
		if d.opts.maxKeys > 0 {
			n, err := d.keys.Evict(ctx, d.opts.maxKeys, sweepBatch)
			d.keysEvicted.Add(uint64(n))
			if n > 0 {
				d.log.Warn("evicted the oldest deduplication keys: WithMaxKeys reached", "keys", n)
			}
			if err != nil && ctx.Err() == nil {
				d.log.Error("evicting keys failed", "error", err)
			}
		}
	}
}

// sweepBatch bounds one sweep transaction.
const sweepBatch = 1000

// Close stops Run if it is running (as if its context ended, waiting for
// it to return), waits for writes under way, then releases the file. Calls
// after Close, Close included, return ErrClosed.
func (d *Dispatcher) Close() error {
	d.runMu.Lock()
	if d.closed.Load() {
		d.runMu.Unlock()
		return ErrClosed
	}
	d.closed.Store(true)
	stop, done := d.runStop, d.runDone
	d.runMu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
	d.stopBG()
	d.bg.Wait()
	if d.shared != nil {
		d.shared.Close()
	}
	return translate(d.st.Close())
}

func formatID(seq uint64) string { return strconv.FormatUint(seq, 10) }
