package delivery

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lambdadispatch/dispatcher/store"
)

// maxLeaseBatch bounds one lease transaction.
const maxLeaseBatch = 256

// maxIdleWait bounds how long an idle leaser sleeps before it looks again.
const maxIdleWait = time.Second

// Run delivers queued events until ctx is done. Workers lease due events,
// invoke Lambda with InvocationType Event, and settle each outcome: ack on
// success, reschedule a throttled or transient failure with backoff until
// the retries are spent, dead-letter a permanent failure, exhausted retries
// or an event past its age. When Lambda cannot be reached or the
// credentials fail, no attempt is spent: dispatch pauses as a whole,
// probes with backoff, and resumes when a probe gets through.
//
// When ctx is done, Run stops leasing, lets invocations in flight finish
// (up to cfg.DrainTimeout), returns the rest to the queue, and returns. No
// goroutine it started outlives it.
func Run(ctx context.Context, cfg Config) {
	newRunner(cfg).run(ctx)
}

// runner is one Run: a leaser that keeps the in-flight limit filled, a pool
// of workers, and the state they share.
type runner struct {
	cfg  Config
	st   Queue
	log  *slog.Logger
	work chan job
	// limit is the account's in-flight limit, over all functions: the
	// number of workers that may invoke at once. Each function has a
	// limit of its own besides, in fns.
	limit *aimd
	pace  *pacer
	// fns holds the events leased and not yet settled, by function. The
	// leaser keeps up to heldLimits times the in-flight limit held, so
	// workers never wait for a lease commit.
	fns   *functions
	freed chan struct{} // an event was settled; one waiter (the leaser), one signal
	// flush is the leaser's ackGather timer, reused: the leaser waits once
	// per finished invocation, and a timer each time is garbage.
	flush *time.Timer
	stop  chan struct{} // closed when the leaser is done: start no new invocation

	ackMu   sync.Mutex
	pending []uint64 // delivered, not yet acked

	paused   atomic.Bool
	pausedOn atomic.Value // string: the function whose failure paused dispatch
}

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

func newRunner(cfg Config) *runner {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = noMetrics{}
	}
	if cfg.Counters == nil {
		cfg.Counters = new(Counters)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &runner{
		cfg: cfg,
		st:  cfg.Queue,
		log: cfg.Logger,
		// At most Concurrency invoking and as many admitted behind them.
		work:  make(chan job, 2*cfg.Concurrency),
		limit: newAIMD(cfg.Concurrency),
		pace:  newPacer(cfg.Rate),
		freed: make(chan struct{}, 1),
		flush: stoppedTimer(),
		stop:  make(chan struct{}),
	}
	r.fns = newFunctions(&r.cfg, r.work)
	return r
}

func (r *runner) run(ctx context.Context) {
	// In-flight invocations outlive ctx by up to the drain timeout; drain is
	// their context.
	drain, cancelDrain := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelDrain()
	stopDrain := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(r.cfg.DrainTimeout, cancelDrain)
		context.AfterFunc(drain, func() { t.Stop() })
	})
	defer stopDrain()

	if n, err := r.st.Reclaim(drain); err == nil && n > 0 {
		r.log.Info("returned expired leases to the queue", "leases", n)
	}
	// Workers learn of Run's end through stopping, a copy of ctx without
	// its deadline: the rate limiter refuses at once a wait that would
	// pass a deadline, and workers would spin through the queue leasing
	// and releasing events until it came.
	stopping, stopStopping := context.WithCancel(context.WithoutCancel(ctx))
	defer stopStopping()
	defer context.AfterFunc(ctx, stopStopping)()

	r.accountLimitMoved()
	var workers sync.WaitGroup
	for i := range r.cfg.Concurrency {
		workers.Go(func() { r.worker(stopping, drain, i) })
	}
	r.lease(ctx)
	close(r.stop)
	if left := r.fns.drain(); len(left) > 0 {
		// Leased, never admitted: never tried, so attempts are refunded.
		seqs := make([]uint64, len(left))
		for i, ev := range left {
			seqs[i] = ev.Seq
		}
		r.settle(func(c context.Context) error { return r.st.Release(c, true, seqs...) })
	}
	close(r.work)
	workers.Wait()
	if acks := r.takeAcks(); len(acks) > 0 {
		r.settle(func(c context.Context) error { return r.ackAndLease(c, acks, 0, nil) })
	}
	// Every event handed to a worker is settled or released by now; a lease
	// left is one whose lease call was cut off by ctx after it committed.
	r.settle(func(c context.Context) error {
		n, err := r.st.ReleaseAll(c)
		if n > 0 {
			r.log.Info("returned leases cut off by the stop to the queue", "leases", n)
		}
		return err
	})
}

// lease keeps the in-flight limit filled until ctx is done.
func (r *runner) lease(ctx context.Context) {
	reclaim := time.NewTicker(r.cfg.LeaseDuration / 2)
	defer reclaim.Stop()
	failures := 0
	for ctx.Err() == nil {
		if r.paused.Load() && !r.probe(ctx) {
			return
		}
		n := r.acquire(ctx)
		if n == 0 {
			return
		}
		var evs []store.Event
		err := r.ackAndLease(ctx, r.takeAcks(), min(n, maxLeaseBatch), &evs)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			r.log.Error("lease failed", "error", err)
			if !sleep(ctx, r.cfg.Policy.ProbeDelay(failures, rand.Float64())) {
				return
			}
			continue
		}
		failures = 0
		if len(evs) == 0 {
			if !r.waitForWork(ctx, reclaim.C) {
				return
			}
			continue
		}
		r.fns.push(evs)
	}
}

// The leaser holds up to heldLimits in-flight limits of events and leases
// once leaseLimits of them are free: then one limit is invoking and one
// waits for the workers while the lease commits, so workers never wait for
// a lease, and each lease transaction (which carries the acks gathered
// meanwhile) takes two limits' worth. Every commit rewrites each page it
// touches, some twenty pages whatever its size: leasing one limit at a
// time out of three held wrote 1,254 bytes per event in the drain of
// bench/peers at 64 producers, two out of four 884.
const (
	heldLimits  = 4
	leaseLimits = 2
)

// acquire waits until leaseLimits in-flight limits can be leased and
// returns how many, or 0 when ctx ends.
func (r *runner) acquire(ctx context.Context) int {
	for {
		limit := r.limit.current()
		n := heldLimits*limit - r.fns.heldNow()
		if n >= leaseLimits*limit {
			return n
		}
		if !r.waitFreed(ctx) {
			return 0
		}
	}
}

// waitForWork sleeps until an event may be due: one is enqueued or
// rescheduled, the earliest scheduled one falls due, or a reclaim is due.
func (r *runner) waitForWork(ctx context.Context, reclaim <-chan time.Time) bool {
	// Look again at least every maxIdleWait: the clock can jump (NTP, a
	// laptop's sleep, a test's clock), and a timer set for an hour would
	// sleep through it.
	wait := maxIdleWait
	if due, ok, err := r.st.NextDue(); err == nil && ok {
		wait = min(max(due.Sub(r.st.Now()), time.Millisecond), maxIdleWait)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-r.st.Ready():
	case <-r.freed:
		r.gatherAcks(ctx)
	case <-t.C:
	case <-reclaim:
		if n, err := r.st.Reclaim(ctx); err == nil && n > 0 {
			r.log.Warn("returned expired leases to the queue", "leases", n)
		}
	case <-ctx.Done():
		return false
	}
	return true
}

// gatherAcks waits up to ackGather for more invocations to end, once one
// has ended with nothing left to lease: its ack waits for a commit, and
// at the tail of a burst dozens end within a millisecond or two. Leasing
// at each one gave a commit per ack: the drain of 1,500 events in
// bench/peers took 15 to 51 commits, each rewriting some twenty pages.
func (r *runner) gatherAcks(ctx context.Context) {
	r.flush.Reset(ackGather)
	defer r.flush.Stop()
	for {
		select {
		case <-r.freed:
		case <-r.flush.C:
			return
		case <-r.st.Ready():
			return
		case <-ctx.Done():
			return
		}
	}
}

// stopped reports whether the leaser is done.
func (r *runner) stopped() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// done tells the leaser that an event it handed out is settled.
func (r *runner) done(fn *fnState) {
	r.fns.finish(fn)
	select {
	case r.freed <- struct{}{}:
	default:
	}
}

// settle runs a store operation that must not be lost, on a context of its
// own: it is quick, and ending it early would leave the event leased until
// the next Open.
func (r *runner) settle(op func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := op(ctx); err != nil {
		r.log.Error("could not record an outcome; the event stays leased and returns to the queue later", "error", err)
	}
}

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

// formatID is an event's id as the root package's Receipt gives it.
func formatID(seq uint64) string { return strconv.FormatUint(seq, 10) }

// noMetrics is the Metrics of a Config without one.
type noMetrics struct{}

func (noMetrics) Invoked(string, time.Duration, string) {}
func (noMetrics) Retried(string)                        {}
func (noMetrics) DeadLettered(string)                   {}
func (noMetrics) Deduplicated(string)                   {}
func (noMetrics) InFlightLimit(int)                     {}
func (noMetrics) EventAge(string, time.Duration)        {}
func (noMetrics) Received(string)                       {}
func (noMetrics) Dropped(string, string)                {}
