package dispatcher

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/internal/delivery"
	"github.com/lambdadispatch/dispatcher/store"
)

// LambdaInvoker is the one method of *lambda.Client the dispatcher calls,
// so that a *lambda.Client fits and tests can pass their own.
type LambdaInvoker interface {
	Invoke(ctx context.Context, params *lambda.InvokeInput, optFns ...func(*lambda.Options)) (*lambda.InvokeOutput, error)
}

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
	return delivery.Check(ctx, d.opts.lambda, function)
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
	delivery.Run(ctx, d.deliveryConfig())
	return nil
}

// deliveryConfig is what package delivery needs of the dispatcher.
func (d *Dispatcher) deliveryConfig() delivery.Config {
	cfg := delivery.Config{
		Lambda:        d.opts.lambda,
		Queue:         d.st,
		Keys:          deliveryKeys{st: d.st, keys: d.keys, now: d.opts.now},
		Sinks:         d.sinks,
		Counters:      &d.counts,
		Metrics:       newDeliveryMetrics(d.opts.metrics),
		Logger:        d.log,
		Now:           d.opts.now,
		Policy:        d.opts.policy,
		Concurrency:   d.opts.concurrency,
		LeaseDuration: d.opts.leaseDuration,
		InvokeTimeout: d.opts.invokeTimeout,
		DrainTimeout:  d.opts.drainTimeout,
		Rate:          d.opts.rate,
		Limits:        d.opts.limits,
		DefaultLimit:  d.opts.defaultLimit,
		MetaField:     d.opts.metaField,
		LogSizes:      d.opts.logSizes,
	}
	if d.shared != nil {
		// Only when set: a nil *sharedkeys.Keys in the interface would not
		// be nil.
		cfg.Shared = d.shared
	}
	return cfg
}

// deliveryKeys is the local key window as delivery sees it.
type deliveryKeys struct {
	st   *store.Store
	keys *idempotency.Index
	now  func() time.Time
}

func (k deliveryKeys) Delivered(key string) (bool, error) {
	var delivered bool
	err := k.st.View(func(tx *store.Tx) error {
		e, ok, err := k.keys.Lookup(tx, key, k.now())
		delivered = ok && e.State == idempotency.Delivered
		return err
	})
	return delivered, err
}

func (k deliveryKeys) Mark(tx *store.Tx, key string, seq uint64, s idempotency.State) error {
	return k.keys.Mark(tx, key, seq, s)
}
