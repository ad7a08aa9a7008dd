package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/time/rate"

	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/retry"
	"github.com/lambdadispatch/dispatcher/store"
)

// LambdaInvoker is the one method of *lambda.Client the dispatcher calls,
// so that a *lambda.Client fits and tests can pass their own.
type LambdaInvoker interface {
	Invoke(ctx context.Context, params *lambda.InvokeInput, optFns ...func(*lambda.Options)) (*lambda.InvokeOutput, error)
}

var (
	// ErrNoLambda is returned by Run and Check when Open was not given
	// WithLambda.
	ErrNoLambda = errors.New("dispatcher: no Lambda client (use WithLambda)")
	// ErrRunning is returned by Run when the Dispatcher is running already.
	ErrRunning = errors.New("dispatcher: already running")
)

// maxLeaseBatch bounds one lease transaction.
const maxLeaseBatch = 256

// maxIdleWait bounds how long an idle leaser sleeps before it looks again.
const maxIdleWait = time.Second

// ackGather is how long delivered events wait for a lease transaction to
// carry their acks before they get one of their own.
const ackGather = 2 * time.Millisecond

// noSDKRetries turns the SDK's own retries off for one call: the
// dispatcher's policy is the only one, and the SDK's retry quota would
// otherwise fail calls with "retry quota exceeded" under load.
func noSDKRetries(o *lambda.Options) { o.Retryer = aws.NopRetryer{} }

// Check asks Lambda whether function exists and may be invoked, with a
// DryRun invocation (Lambda answers 204 without running it), so that an
// application can fail at start-up on a wrong name, region or permission
// rather than dead-letter its first events. The error, when not nil, is a
// *retry.InvokeError carrying Lambda's code, status and request id.
func (d *Dispatcher) Check(ctx context.Context, function string) error {
	if d.closed.Load() {
		return ErrClosed
	}
	if d.opts.lambda == nil {
		return ErrNoLambda
	}
	if err := validateEvent(0, &Event{Function: function}, d.lim); err != nil {
		return err
	}
	_, err := d.opts.lambda.Invoke(ctx, &lambda.InvokeInput{
		FunctionName:   aws.String(function),
		InvocationType: types.InvocationTypeDryRun,
	}, noSDKRetries)
	if err != nil {
		return retry.FromError(err)
	}
	return nil
}

// Run delivers queued events until ctx is done. Workers lease due events,
// invoke Lambda with InvocationType Event, and settle each outcome: ack on
// success, reschedule a throttled or transient failure with backoff until
// the retries are spent, dead-letter a permanent failure, exhausted retries
// or an event past its age. When Lambda cannot be reached or the
// credentials fail, no attempt is spent: dispatch pauses as a whole,
// probes with backoff, and resumes when a probe gets through.
//
// When ctx is done, Run stops leasing, lets invocations in flight finish
// (up to WithDrainTimeout), returns the rest to the queue, and returns nil.
// No goroutine it started outlives it.
func (d *Dispatcher) Run(ctx context.Context) error {
	if d.closed.Load() {
		return ErrClosed
	}
	if d.opts.readOnly {
		return ErrReadOnly
	}
	if d.opts.lambda == nil {
		return ErrNoLambda
	}
	d.runMu.Lock()
	switch {
	case d.closed.Load():
		d.runMu.Unlock()
		return ErrClosed
	case d.runStop != nil:
		d.runMu.Unlock()
		return ErrRunning
	}
	ctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	d.runStop, d.runDone = stop, done
	d.runMu.Unlock()
	defer func() {
		stop()
		d.runMu.Lock()
		d.runStop, d.runDone = nil, nil
		d.runMu.Unlock()
		close(done)
	}()
	r := newRunner(d)
	return r.run(ctx)
}

// runner is one Run: a leaser that keeps the in-flight limit filled, a pool
// of workers, and the state they share.
type runner struct {
	d      *Dispatcher
	st     *store.Store
	policy retry.Policy
	work   chan store.Event
	limit  *aimd
	pace   *pacer

	// held counts events leased and not yet settled: invoking, or waiting
	// in work for a worker. The leaser keeps up to three times the
	// in-flight limit held, so workers never wait for a lease commit.
	mu    sync.Mutex
	held  int
	freed chan struct{} // held went down; one waiter (the leaser), one signal
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

func newRunner(d *Dispatcher) *runner {
	return &runner{
		d:      d,
		st:     d.st,
		policy: d.opts.policy,
		work:   make(chan store.Event, 3*d.opts.concurrency),
		limit:  newAIMD(d.opts.concurrency),
		pace:   newPacer(d.opts.rate),
		freed:  make(chan struct{}, 1),
		flush:  stoppedTimer(),
		stop:   make(chan struct{}),
	}
}

func (r *runner) run(ctx context.Context) error {
	// In-flight invocations outlive ctx by up to the drain timeout; drain is
	// their context.
	drain, cancelDrain := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelDrain()
	stopDrain := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(r.d.opts.drainTimeout, cancelDrain)
		context.AfterFunc(drain, func() { t.Stop() })
	})
	defer stopDrain()

	if n, err := r.st.Reclaim(drain); err == nil && n > 0 {
		r.d.log.Info("returned expired leases to the queue", "leases", n)
	}
	// Workers learn of Run's end through stopping, a copy of ctx without
	// its deadline: the rate limiter refuses at once a wait that would
	// pass a deadline, and workers would spin through the queue leasing
	// and releasing events until it came.
	stopping, stopStopping := context.WithCancel(context.WithoutCancel(ctx))
	defer stopStopping()
	defer context.AfterFunc(ctx, stopStopping)()

	r.d.opts.metrics.InFlightLimit(r.limit.current())
	var workers sync.WaitGroup
	for i := range r.d.opts.concurrency {
		workers.Go(func() { r.worker(stopping, drain, i) })
	}
	r.lease(ctx)
	close(r.stop)
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
			r.d.log.Info("returned leases cut off by the stop to the queue", "leases", n)
		}
		return err
	})
	return nil
}

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
func (r *runner) markDelivered(tx *bolt.Tx, seq uint64, key string) error {
	return r.d.keys.Mark(tx, key, seq, idempotency.Delivered)
}

// alreadyDelivered reports whether ev's key is marked delivered, by this
// event or another, inside its window: then it is acked without an invoke.
func (r *runner) alreadyDelivered(ev store.Event) bool {
	if ev.Key == "" {
		return false
	}
	var delivered bool
	err := r.st.DB().View(func(tx *bolt.Tx) error {
		e, ok, err := r.d.keys.Lookup(tx, ev.Key, r.d.opts.now())
		delivered = ok && e.State == idempotency.Delivered
		return err
	})
	if err != nil {
		r.d.log.Warn("could not read the key window; invoking", "id", formatID(ev.Seq), "error", err)
		return false
	}
	return delivered
}

// ackAndLease acks acks and leases up to n events into out. On failure the
// acks go back to be tried again.
func (r *runner) ackAndLease(ctx context.Context, acks []uint64, n int, out *[]store.Event) error {
	evs, notLeased, err := r.st.AckAndLease(ctx, acks, n, r.d.opts.leaseDuration, r.markDelivered)
	if err != nil {
		r.ackMu.Lock()
		r.pending = append(r.pending, acks...)
		r.ackMu.Unlock()
		return err
	}
	for _, seq := range notLeased {
		r.d.log.Warn("could not ack a delivered event: its lease was taken back; it will be sent again", "id", formatID(seq))
	}
	if out != nil {
		*out = evs
	}
	return nil
}

// lease keeps the in-flight limit filled until ctx is done.
func (r *runner) lease(ctx context.Context) {
	reclaim := time.NewTicker(r.d.opts.leaseDuration / 2)
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
			r.d.log.Error("lease failed", "error", err)
			if !sleep(ctx, r.policy.ProbeDelay(failures, rand.Float64())) {
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
		r.mu.Lock()
		r.held += len(evs)
		r.mu.Unlock()
		for _, ev := range evs {
			r.work <- ev // never blocks: the channel holds the most ever held
		}
	}
}

// acquire waits until at least a whole in-flight limit can be leased
// (three limits may be held: one invoking, up to two waiting) and returns
// how many, or 0 when ctx ends. Leasing a limit at a time keeps lease
// transactions large and few (each carries the acks gathered meanwhile),
// while a limit's worth of work is always waiting for the workers. Leasing
// in halves of two limits instead took about 4% more CPU per event.
func (r *runner) acquire(ctx context.Context) int {
	for {
		limit := r.limit.current()
		r.mu.Lock()
		n := 3*limit - r.held
		r.mu.Unlock()
		if n >= limit {
			return n
		}
		if !r.waitFreed(ctx) {
			return 0
		}
	}
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
			r.d.log.Error("ack failed", "error", err)
		}
	case <-ctx.Done():
		return false
	}
	return true
}

// worker i invokes while i is under the in-flight limit: the limit is
// enforced by how many workers take work, so it can move without a
// semaphore. When the leaser is done, every worker drains what is left.
// stopping ends with Run's context; invocations run under drain, which
// outlives it by the drain timeout.
func (r *runner) worker(stopping, drain context.Context, i int) {
	dl := newCallDeadline(drain, r.d.opts.invokeTimeout)
	defer dl.close()
	for {
		for !r.stopped() {
			limit, changed := r.limit.state()
			if i < limit {
				break
			}
			select {
			case <-changed:
			case <-r.stop:
			}
		}
		ev, ok := <-r.work
		if !ok {
			return
		}
		// Waiting for its turn under the rate limit, an event may outlast
		// Run's context; then it must not start. Checking stopping, not
		// only the leaser's stop, closes the gap before the leaser sees
		// the end.
		if err := r.pace.wait(stopping); err != nil || stopping.Err() != nil {
			r.giveBack(ev)
			continue
		}
		r.handle(drain, dl, ev)
	}
}

// giveBack returns an event leased but never tried to the queue, its
// attempt refunded.
func (r *runner) giveBack(ev store.Event) {
	defer r.done()
	r.settle(func(c context.Context) error { return r.st.Release(c, true, ev.Seq) })
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

func (r *runner) done() {
	r.mu.Lock()
	r.held--
	r.mu.Unlock()
	select {
	case r.freed <- struct{}{}:
	default:
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
	case <-r.freed: // an invocation ended: its ack waits for a commit
	case <-t.C:
	case <-reclaim:
		if n, err := r.st.Reclaim(ctx); err == nil && n > 0 {
			r.d.log.Warn("returned expired leases to the queue", "leases", n)
		}
	case <-ctx.Done():
		return false
	}
	return true
}

// handle invokes one event and settles the outcome.
func (r *runner) handle(ctx context.Context, dl *callDeadline, ev store.Event) {
	defer r.done()
	if ctx.Err() != nil || r.stopped() {
		// Leased but not started when Run was told to stop: never tried,
		// so the attempt is given back.
		r.settle(func(c context.Context) error { return r.st.Release(c, true, ev.Seq) })
		return
	}
	if r.policy.Expired(ev.FirstAttempt, r.st.Now()) {
		r.expired(ctx, ev)
		return
	}
	if (r.d.shared != nil && ev.Key != "" && r.beforeInvoke(ctx, ev)) || r.alreadyDelivered(ev) {
		r.d.deduplicated.Add(1)
		r.d.opts.metrics.Deduplicated("delivery")
		r.delivered(ev.Seq)
		return
	}
	started := time.Now()
	err := r.invoke(dl, ev)
	if err != nil && ctx.Err() != nil {
		// Cut off by the drain timeout: the invocation may have reached
		// Lambda, so the attempt stays counted.
		r.settle(func(c context.Context) error { return r.st.Release(c, false, ev.Seq) })
		return
	}
	ie := retry.FromError(err)
	class := retry.Success
	if ie != nil {
		class = ie.Class
	}
	r.d.opts.metrics.Invoked(ev.Function, time.Since(started), class.String())
	now := r.st.Now()
	decision, reason := r.policy.Decide(class, ev.Attempts, ev.FirstAttempt, now)
	switch decision {
	case retry.Done:
		if r.limit.succeeded() {
			r.d.opts.metrics.InFlightLimit(r.limit.current())
		}
		r.markShared(ctx, ev, idempotency.Delivered)
		r.delivered(ev.Seq)
	case retry.Retry:
		r.d.opts.metrics.Retried(class.String())
		if class == retry.Throttled && r.limit.throttled(started) {
			r.d.throttled.Add(1)
			r.d.opts.metrics.InFlightLimit(r.limit.current())
			r.d.log.Warn("throttled by Lambda: lowering the in-flight limit", "function", ev.Function, "limit", r.limit.current(), "reason", ie.Reason)
		}
		due := r.policy.NextDue(ev.Attempts, now, ie.RetryAfter, rand.Float64())
		if r.policy.Expired(ev.FirstAttempt, due) {
			// Lambda would not send an event older than its maximum age,
			// so neither do we: waiting for a try that can only be refused
			// holds the event back and spends an attempt for nothing.
			r.deadLetter(ctx, ev, deadletter.EventAgeExceeded, ie)
			return
		}
		r.settle(func(c context.Context) error { return r.st.Reschedule(c, ev.Seq, due, errorInfo(ie)) })
	case retry.Pause:
		r.settle(func(c context.Context) error { return r.st.Release(c, true, ev.Seq) })
		r.pause(ev.Function, ie)
	case retry.DeadLetter:
		r.deadLetter(ctx, ev, deadletter.Reason(reason), ie)
	}
}

// expired dead-letters an event found past its age when leased, without
// an invoke: the attempt the lease counted was never made, and the letter
// says so, carrying the error of the last attempt that was.
func (r *runner) expired(ctx context.Context, ev store.Event) {
	ev.Attempts = max(ev.Attempts-1, 0)
	ev.LastAttempt = ev.PrevAttempt
	var ie *retry.InvokeError
	if e := ev.LastError; !e.IsZero() {
		ie = &retry.InvokeError{Code: e.Code, Message: e.Message, StatusCode: e.Status, RequestID: e.RequestID}
	}
	r.deadLetter(ctx, ev, deadletter.EventAgeExceeded, ie)
}

// settle runs a store operation that must not be lost, on a context of its
// own: it is quick, and ending it early would leave the event leased until
// the next Open.
func (r *runner) settle(op func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := op(ctx); err != nil {
		r.d.log.Error("could not record an outcome; the event stays leased and returns to the queue later", "error", err)
	}
}

func (r *runner) invoke(dl *callDeadline, ev store.Event) error {
	ctx := dl.start()
	in := &lambda.InvokeInput{
		FunctionName:   aws.String(ev.Function),
		InvocationType: types.InvocationTypeEvent,
		Payload:        ev.Payload,
	}
	if ev.Qualifier != "" {
		in.Qualifier = aws.String(ev.Qualifier)
	}
	if f := r.d.opts.metaField; f != "" {
		in.Payload = withMetadata(ev.Payload, f, ev)
	}
	_, err := r.d.opts.lambda.Invoke(ctx, in, noSDKRetries)
	if dl.end() && err != nil {
		return fmt.Errorf("dispatcher: invoking %s took longer than %v (WithInvokeTimeout): %w (%v)", ev.Function, r.d.opts.invokeTimeout, context.DeadlineExceeded, err)
	}
	return err
}

// callDeadline bounds each Invoke of one worker by the invoke timeout. A
// context.WithTimeout per call costs a timer and a child entry in the
// drain context that every worker shares, and measured as 8% of the CPU of
// a dispatch at 64 in flight; instead each worker derives one context, once,
// and a timer it re-arms per call cancels it when a call runs over. The
// next call then gets a fresh context.
type callDeadline struct {
	parent context.Context
	d      time.Duration
	timer  *time.Timer

	mu      sync.Mutex
	ctx     context.Context
	cancel  context.CancelFunc
	armed   bool // a call is running
	expired bool // the timer cancelled ctx during the running call
}

func newCallDeadline(parent context.Context, d time.Duration) *callDeadline {
	c := &callDeadline{parent: parent, d: d}
	c.ctx, c.cancel = context.WithCancel(parent)
	c.timer = time.AfterFunc(time.Hour, c.fire)
	c.timer.Stop()
	return c
}

func (c *callDeadline) fire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.armed {
		c.expired = true
		c.cancel()
	}
}

// start arms the deadline and returns the context for one call.
func (c *callDeadline) start() context.Context {
	c.mu.Lock()
	if c.ctx.Err() != nil && c.parent.Err() == nil {
		c.ctx, c.cancel = context.WithCancel(c.parent)
	}
	c.armed, c.expired = true, false
	ctx := c.ctx
	c.mu.Unlock()
	c.timer.Reset(c.d)
	return ctx
}

// end disarms the deadline and reports whether the call ran over it.
func (c *callDeadline) end() bool {
	c.timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = false
	return c.expired
}

func (c *callDeadline) close() {
	c.timer.Stop()
	c.mu.Lock()
	c.cancel()
	c.mu.Unlock()
}

// pause stops leasing until a probe gets through. Invocations in flight
// finish on their own; each that fails the same way is released too.
func (r *runner) pause(function string, ie *retry.InvokeError) {
	if r.paused.CompareAndSwap(false, true) {
		r.pausedOn.Store(function)
		r.d.paused.Store(true)
		attrs := []any{"class", ie.Class.String(), "code", ie.Code, "status", ie.StatusCode, "request_id", ie.RequestID}
		// A credentials failure is the one whose message AWS fills with
		// the request it refused, signed headers and token included:
		// redaction is pattern matching, so none of that text is trusted
		// to a log line. Code, status and request id say what failed, and
		// AWS support can find the rest from the request id.
		if ie.Class != retry.Credentials {
			attrs = append(attrs, "error", ie.Error())
		}
		r.d.log.Warn("Lambda unreachable or credentials failing: dispatch paused", attrs...)
	}
}

// probe waits with backoff and sends a DryRun invocation until one gets an
// answer that is not unreachable or a credentials failure; then dispatch
// resumes at full speed. It returns false when ctx ends first.
func (r *runner) probe(ctx context.Context) bool {
	function, _ := r.pausedOn.Load().(string)
	for n := 1; ; n++ {
		if !sleep(ctx, r.policy.ProbeDelay(n, rand.Float64())) {
			return false
		}
		pctx, cancel := context.WithTimeout(ctx, r.d.opts.invokeTimeout)
		_, err := r.d.opts.lambda.Invoke(pctx, &lambda.InvokeInput{
			FunctionName:   aws.String(function),
			InvocationType: types.InvocationTypeDryRun,
		}, noSDKRetries)
		cancel()
		if ctx.Err() != nil {
			return false
		}
		if c := retry.Classify(err); err == nil || (c != retry.Unreachable && c != retry.Credentials) {
			r.paused.Store(false)
			r.d.paused.Store(false)
			r.d.log.Info("Lambda reachable again: dispatch resumed", "probes", n)
			return true
		}
	}
}

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
		FirstAttempt: ev.FirstAttempt, LastAttempt: ev.LastAttempt, DeadLettered: r.d.opts.now(),
	}
	if info := errorInfo(ie); !info.IsZero() {
		letter.LastError = deadletter.ErrorInfo{Code: info.Code, Message: info.Message, StatusCode: info.Status, RequestID: info.RequestID}
	}
	for n := 1; ; n++ {
		var err error
		for i, sink := range r.d.sinks {
			mark := func(tx *bolt.Tx, _ store.Event) error {
				if ev.Key == "" {
					return nil
				}
				return r.d.keys.Mark(tx, ev.Key, ev.Seq, idempotency.DeadLettered)
			}
			if ts, ok := sink.(deadletter.TxSink); ok {
				_, err = r.st.Remove(ctx, ev.Seq, func(tx *bolt.Tx, e store.Event) error {
					if err := ts.PutTx(tx, letter); err != nil {
						return err
					}
					return mark(tx, e)
				})
			} else if err = sink.Put(ctx, letter); err == nil {
				_, err = r.st.Remove(ctx, ev.Seq, mark)
			}
			if err == nil || errors.Is(err, store.ErrNotFound) {
				break
			}
			if i < len(r.d.sinks)-1 {
				r.d.log.Warn("dead-letter sink failed; trying the next", "id", letter.ID, "sink", i, "error", redacted(err))
			}
		}
		if errors.Is(err, store.ErrNotFound) {
			return
		}
		if err == nil {
			// Logged before it is counted, so that whoever sees the count
			// finds the log line written.
			attrs := []any{"id", letter.ID, "function", ev.Function, "reason", string(reason), "attempts", ev.Attempts, "error", letter.LastError.Code}
			if r.d.opts.logSizes {
				attrs = append(attrs, "payload_bytes", len(ev.Payload))
			}
			r.d.log.Warn("dead-lettered an event", attrs...)
			r.d.deadLettered(reason)
			r.markShared(ctx, ev, idempotency.DeadLettered)
			return
		}
		r.d.log.Error("every dead-letter sink failed; the event stays queued", "id", letter.ID, "error", redacted(err))
		if !sleep(ctx, r.policy.ProbeDelay(n, rand.Float64())) {
			r.settle(func(c context.Context) error { return r.st.Release(c, false, ev.Seq) })
			return
		}
	}
}

// redacted is err's text for a log line, without the credentials an AWS
// service (a dead-letter queue, a shared key window) can quote back in it.
func redacted(err error) string { return retry.Redact(err.Error()) }

func errorInfo(ie *retry.InvokeError) store.ErrorInfo {
	if ie == nil {
		return store.ErrorInfo{}
	}
	// Message is redacted again for an InvokeError a fake client built by
	// hand, which FromError returns as it is.
	info := store.ErrorInfo{Code: ie.Code, Message: retry.Redact(ie.Message), Status: ie.StatusCode, RequestID: ie.RequestID}
	if info.IsZero() {
		info.Message = ie.Error()
	}
	return info
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

// aimd is the in-flight limit: halved on throttling, raised by one after a
// limit's worth of successes, like TCP's congestion window, so a burst
// backs off as a whole instead of hammering a function at its concurrency
// limit.
type aimd struct {
	mu      sync.Mutex
	limit   float64
	max     float64
	lastCut time.Time
	changed chan struct{} // closed when the whole-number limit changes
}

func newAIMD(max int) *aimd {
	return &aimd{limit: float64(max), max: float64(max), changed: make(chan struct{})}
}

func (a *aimd) current() int {
	n, _ := a.state()
	return n
}

// state returns the limit and a channel closed when it next changes.
func (a *aimd) state() (int, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return int(a.limit), a.changed
}

// set changes the limit, telling waiters when its whole part moves, and
// reports whether it did.
func (a *aimd) set(v float64) bool {
	moved := int(v) != int(a.limit)
	if moved {
		close(a.changed)
		a.changed = make(chan struct{})
	}
	a.limit = v
	return moved
}

// throttled halves the limit, once for all the invocations that were in
// flight together: those started before the last cut saw the old limit.
func (a *aimd) throttled(started time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if started.Before(a.lastCut) {
		return false
	}
	a.set(max(1, a.limit/2))
	a.lastCut = time.Now()
	return true
}

// succeeded raises the limit a little, and reports whether its whole part
// moved.
func (a *aimd) succeeded() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.set(min(a.max, a.limit+1/a.limit))
}

// pacer spaces invocations to at most WithRateLimit a second, across all
// workers; nil means no limit.
type pacer struct {
	lim *rate.Limiter
}

// newPacer takes a rate WithRateLimit accepted: 0, or positive and finite.
func newPacer(perSecond float64) *pacer {
	if perSecond == 0 {
		return nil
	}
	// A burst of one: invocations are spaced evenly, never bunched after
	// an idle spell.
	return &pacer{lim: rate.NewLimiter(rate.Limit(perSecond), 1)}
}

// wait returns when the next invocation may start, or with ctx's error
// when ctx ends first; the turn it held then goes to the next waiter.
func (p *pacer) wait(ctx context.Context) error {
	if p == nil {
		return nil
	}
	return p.lim.Wait(ctx)
}
