package delivery

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/retry"
	"github.com/lambdadispatch/dispatcher/store"
)

// noSDKRetries turns the SDK's own retries off for one call: the
// dispatcher's policy is the only one, and the SDK's retry quota would
// otherwise fail calls with "retry quota exceeded" under load.
func noSDKRetries(o *lambda.Options) { o.Retryer = aws.NopRetryer{} }

// Check asks Lambda whether function exists and may be invoked, with a
// DryRun invocation (Lambda answers 204 without running it). The error,
// when not nil, is a *retry.InvokeError.
func Check(ctx context.Context, c Invoker, function string) error {
	_, err := c.Invoke(ctx, &lambda.InvokeInput{
		FunctionName:   aws.String(function),
		InvocationType: types.InvocationTypeDryRun,
	}, noSDKRetries)
	if err != nil {
		return retry.FromError(err)
	}
	return nil
}

// worker i invokes while i is under the in-flight limit: the limit is
// enforced by how many workers take work, so it can move without a
// semaphore. When the leaser is done, every worker drains what is left.
// stopping ends with Run's context; invocations run under drain, which
// outlives it by the drain timeout.
func (r *runner) worker(stopping, drain context.Context, i int) {
	dl := newCallDeadline(drain, r.cfg.InvokeTimeout)
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
		j, ok := <-r.work
		if !ok {
			return
		}
		// Waiting for its turn under the rate limit, an event may outlast
		// Run's context; then it must not start. Checking stopping, not
		// only the leaser's stop, closes the gap before the leaser sees
		// the end.
		if err := r.pace.wait(stopping); err != nil || stopping.Err() != nil {
			r.giveBack(j)
			continue
		}
		r.handle(drain, dl, j)
	}
}

// giveBack returns an event leased but never tried to the queue, its
// attempt refunded.
func (r *runner) giveBack(j job) {
	defer r.done(j.fn)
	r.settle(func(c context.Context) error { return r.st.Release(c, true, j.ev.Seq) })
}

// handle invokes one event and settles the outcome.
func (r *runner) handle(ctx context.Context, dl *callDeadline, j job) {
	ev, fn := j.ev, j.fn
	defer r.done(fn)
	if ctx.Err() != nil || r.stopped() || r.st.Paused(ev.Function) {
		// Leased but not started when Run was told to stop, or its
		// function was paused meanwhile: never tried, so the attempt is
		// given back.
		r.settle(func(c context.Context) error { return r.st.Release(c, true, ev.Seq) })
		return
	}
	if r.cfg.Policy.Expired(ev.FirstAttempt, r.st.Now()) {
		r.expired(ctx, ev)
		return
	}
	if (r.cfg.Shared != nil && ev.Key != "" && r.cfg.Shared.BeforeInvoke(ctx, ev)) || r.alreadyDelivered(ev) {
		r.cfg.Counters.Deduplicated.Add(1)
		r.cfg.Metrics.Deduplicated("delivery")
		r.delivered(ev.Seq)
		return
	}
	started := time.Now()
	r.cfg.Metrics.EventAge(ev.Function, r.cfg.Now().Sub(ev.Enqueued))
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
	r.cfg.Metrics.Invoked(ev.Function, time.Since(started), class.String())
	now := r.st.Now()
	decision, reason := r.cfg.Policy.Decide(class, ev.Attempts, ev.FirstAttempt, now)
	switch decision {
	case retry.Done:
		r.succeeded(fn)
		r.record(ctx, ev, idempotency.Delivered)
		r.delivered(ev.Seq)
		fn.counts.Delivered.Add(1)
		r.cfg.Metrics.Received(ev.Function)
	case retry.Retry:
		r.retry(ctx, fn, ev, class, ie, started, now)
	case retry.Pause:
		r.settle(func(c context.Context) error { return r.st.Release(c, true, ev.Seq) })
		r.pause(ev.Function, ie)
	case retry.DeadLetter:
		r.deadLetter(ctx, ev, reason, ie)
	}
}

// succeeded raises the function's in-flight limit and the account's a
// little after a success.
func (r *runner) succeeded(fn *fnState) {
	if fn.limit.succeeded() {
		fn.counts.setLimit(fn.limit.current())
		r.fns.limitChanged()
	}
	if r.limit.succeeded() {
		r.accountLimitMoved()
	}
}

// throttled lowers the limit that Lambda's throttle names: the account's
// for a limit of the whole account, the function's otherwise, so that one
// function at its reserved concurrency slows no other.
func (r *runner) throttled(fn *fnState, ie *retry.InvokeError, started time.Time) {
	if accountWide(ie.Reason) {
		if r.limit.throttled(started) {
			r.cfg.Counters.Throttled.Add(1)
			r.accountLimitMoved()
			r.log.Warn("throttled by Lambda at the account's limit: lowering the in-flight limit of every function", "function", fn.name, "limit", r.limit.current(), "reason", ie.Reason)
		}
		return
	}
	if fn.limit.throttled(started) {
		r.cfg.Counters.Throttled.Add(1)
		fn.counts.Throttled.Add(1)
		fn.counts.setLimit(fn.limit.current())
		r.log.Warn("throttled by Lambda: lowering the function's in-flight limit", "function", fn.name, "limit", fn.limit.current(), "reason", ie.Reason)
	}
}

// accountLimitMoved reports the account's in-flight limit.
func (r *runner) accountLimitMoved() {
	n := r.limit.current()
	r.cfg.Counters.InFlightLimit.Store(int64(n))
	r.cfg.Metrics.InFlightLimit(n)
}

// accountWide reports whether a throttle's reason names a limit of the
// whole account (its concurrency, or its callers' invoke rate) rather
// than one of the function's own. A throttle without a reason, or with
// one this version does not know, is taken as the function's: lowering
// one function's limit too far costs that function only.
func accountWide(reason string) bool {
	switch types.ThrottleReason(reason) {
	case types.ThrottleReasonConcurrentInvocationLimitExceeded, types.ThrottleReasonCallerRateLimitExceeded:
		return true
	}
	return false
}

// retry reschedules ev after a throttled or transient failure, lowering
// an in-flight limit when Lambda throttled.
func (r *runner) retry(ctx context.Context, fn *fnState, ev store.Event, class retry.Class, ie *retry.InvokeError, started, now time.Time) {
	r.cfg.Metrics.Retried(class.String())
	if class == retry.Throttled {
		r.throttled(fn, ie, started)
	}
	due := r.cfg.Policy.NextDue(ev.Attempts, now, ie.RetryAfter, rand.Float64())
	if r.cfg.Policy.Expired(ev.FirstAttempt, due) {
		// Lambda would not send an event older than its maximum age,
		// so neither do we: waiting for a try that can only be refused
		// holds the event back and spends an attempt for nothing.
		r.deadLetter(ctx, ev, deadletter.EventAgeExceeded, ie)
		return
	}
	r.settle(func(c context.Context) error { return r.st.Reschedule(c, ev.Seq, due, errorInfo(ie)) })
}

// record records a keyed event's outcome in the shared key window, if
// there is one.
func (r *runner) record(ctx context.Context, ev store.Event, s idempotency.State) {
	if r.cfg.Shared != nil && ev.Key != "" {
		r.cfg.Shared.Record(ctx, ev, s)
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
		ie = &retry.InvokeError{Code: e.Code, Message: e.Message, StatusCode: e.StatusCode, RequestID: e.RequestID}
	}
	r.deadLetter(ctx, ev, deadletter.EventAgeExceeded, ie)
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
	if f := r.cfg.MetaField; f != "" {
		in.Payload = withMetadata(ev.Payload, f, ev)
	}
	_, err := r.cfg.Lambda.Invoke(ctx, in, noSDKRetries)
	if dl.end() && err != nil {
		return fmt.Errorf("dispatcher: invoking %s took longer than %v (WithInvokeTimeout): %w (%v)", ev.Function, r.cfg.InvokeTimeout, context.DeadlineExceeded, err)
	}
	return err
}

// errorInfo is what the queue and the letters keep of a failed invoke.
func errorInfo(ie *retry.InvokeError) store.ErrorInfo {
	if ie == nil {
		return store.ErrorInfo{}
	}
	// ie comes from retry.FromError, which has redacted its message.
	info := store.ErrorInfo{Code: ie.Code, Message: ie.Message, StatusCode: ie.StatusCode, RequestID: ie.RequestID}
	if info.IsZero() {
		info.Message = ie.Error()
	}
	return info
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
