// Package otelmetrics reports a dispatcher's measurements through
// OpenTelemetry. It is a package of its own so that only programs that use
// OpenTelemetry import it:
//
//	rec, err := otelmetrics.New(meterProvider)
//	d, err := dispatcher.Open(path, dispatcher.WithMetrics(rec))
//
// Instruments (meter "github.com/lambdadispatch/dispatcher"):
//
//	dispatcher.queue.depth        gauge, {event}, by state (ready, scheduled, leased, dead)
//	dispatcher.keys               gauge, {key}: deduplication keys held
//	dispatcher.enqueued           counter, {event}
//	dispatcher.delivered          counter, {event}: acked as delivered (Stats.Delivered)
//	dispatcher.invocations        counter, {invocation}, by function and class
//	dispatcher.invoke.duration    histogram, s, by class
//	dispatcher.retried            counter, {event}, by class (throttled, transient)
//	dispatcher.dead_lettered      counter, {event}, by reason
//	dispatcher.deduplicated       counter, {event}, by where (enqueue, delivery)
//	dispatcher.inflight.limit     gauge, {invocation}: the in-flight limit now
//	dispatcher.cancelled          counter, {event}: events cancelled since Open (Stats.Cancelled)
//	dispatcher.evicted            counter, {event}: events evicted by DropOldest (Stats.Evicted)
//	dispatcher.async.event_age    histogram, ms, by function: an event's age when handed to Lambda (like AsyncEventAge)
//	dispatcher.async.received     counter, {event}, by function: events Lambda accepted (like AsyncEventsReceived)
//	dispatcher.async.dropped      counter, {event}, by function and reason: dead-lettered or evicted (like AsyncEventsDropped)
//	dispatcher.function.events    gauge, {event}, by function and state (ready, scheduled, inflight)
//	dispatcher.function.limit     gauge, {invocation}, by function: its in-flight limit now
//	dispatcher.function.paused    gauge, by function: 1 while paused
//	dispatcher.function.throttled counter, {throttle}, by function: times its limit was lowered
package otelmetrics

import (
	"context"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/lambdadispatch/dispatcher"
)

// Recorder implements dispatcher.Metrics on an OpenTelemetry
// MeterProvider.
type Recorder struct {
	enqueued     metric.Int64Counter
	invocations  metric.Int64Counter
	duration     metric.Float64Histogram
	retried      metric.Int64Counter
	deadLettered metric.Int64Counter
	deduplicated metric.Int64Counter
	eventAge     metric.Float64Histogram
	received     metric.Int64Counter
	dropped      metric.Int64Counter
	limit        atomic.Int64
	stats        atomic.Pointer[func() dispatcher.Stats]
}

var (
	_ dispatcher.Metrics      = (*Recorder)(nil)
	_ dispatcher.AsyncMetrics = (*Recorder)(nil)
)

// New creates the instruments on mp. A nil mp is an error: pass
// otel.GetMeterProvider() for the global one.
func New(mp metric.MeterProvider) (*Recorder, error) {
	m := mp.Meter("github.com/lambdadispatch/dispatcher")
	r := &Recorder{}
	var err error
	if r.enqueued, err = m.Int64Counter("dispatcher.enqueued", metric.WithUnit("{event}"), metric.WithDescription("Events written to the queue.")); err != nil {
		return nil, err
	}
	if r.invocations, err = m.Int64Counter("dispatcher.invocations", metric.WithUnit("{invocation}"), metric.WithDescription("Invoke calls, by function and outcome class.")); err != nil {
		return nil, err
	}
	if r.duration, err = m.Float64Histogram("dispatcher.invoke.duration", metric.WithUnit("s"), metric.WithDescription("Latency of Invoke calls.")); err != nil {
		return nil, err
	}
	if r.retried, err = m.Int64Counter("dispatcher.retried", metric.WithUnit("{event}"), metric.WithDescription("Events rescheduled after a failure, by class.")); err != nil {
		return nil, err
	}
	if r.deadLettered, err = m.Int64Counter("dispatcher.dead_lettered", metric.WithUnit("{event}"), metric.WithDescription("Events dead-lettered, by reason.")); err != nil {
		return nil, err
	}
	if r.deduplicated, err = m.Int64Counter("dispatcher.deduplicated", metric.WithUnit("{event}"), metric.WithDescription("Duplicates dropped, at enqueue or at delivery.")); err != nil {
		return nil, err
	}
	// Lambda reports AsyncEventAge in milliseconds; so do we. Buckets from
	// a millisecond to a week: an edge device's backlog can be days old.
	ageBuckets := []float64{1, 10, 100, 1e3, 1e4, 6e4, 3e5, 9e5, 3.6e6, 2.16e7, 8.64e7, 6.048e8}
	if r.eventAge, err = m.Float64Histogram("dispatcher.async.event_age", metric.WithUnit("ms"), metric.WithDescription("Age of an event, from Enqueue, when an invoke hands it to Lambda."), metric.WithExplicitBucketBoundaries(ageBuckets...)); err != nil {
		return nil, err
	}
	if r.received, err = m.Int64Counter("dispatcher.async.received", metric.WithUnit("{event}"), metric.WithDescription("Events Lambda accepted, by function.")); err != nil {
		return nil, err
	}
	if r.dropped, err = m.Int64Counter("dispatcher.async.dropped", metric.WithUnit("{event}"), metric.WithDescription("Events given up on, dead-lettered or evicted, by function and reason.")); err != nil {
		return nil, err
	}
	depth, err := m.Int64ObservableGauge("dispatcher.queue.depth", metric.WithUnit("{event}"), metric.WithDescription("Events held, by state."))
	if err != nil {
		return nil, err
	}
	keys, err := m.Int64ObservableGauge("dispatcher.keys", metric.WithUnit("{key}"), metric.WithDescription("Deduplication keys held."))
	if err != nil {
		return nil, err
	}
	delivered, err := m.Int64ObservableCounter("dispatcher.delivered", metric.WithUnit("{event}"), metric.WithDescription("Events acked as delivered since Open."))
	if err != nil {
		return nil, err
	}
	limit, err := m.Int64ObservableGauge("dispatcher.inflight.limit", metric.WithUnit("{invocation}"), metric.WithDescription("The in-flight limit, lowered on throttling."))
	if err != nil {
		return nil, err
	}
	cancelled, err := m.Int64ObservableCounter("dispatcher.cancelled", metric.WithUnit("{event}"), metric.WithDescription("Events cancelled."))
	if err != nil {
		return nil, err
	}
	evicted, err := m.Int64ObservableCounter("dispatcher.evicted", metric.WithUnit("{event}"), metric.WithDescription("Events evicted to make room under DropOldest, each in the eviction ledger."))
	if err != nil {
		return nil, err
	}
	fnEvents, err := m.Int64ObservableGauge("dispatcher.function.events", metric.WithUnit("{event}"), metric.WithDescription("Events of one function, by state."))
	if err != nil {
		return nil, err
	}
	fnLimit, err := m.Int64ObservableGauge("dispatcher.function.limit", metric.WithUnit("{invocation}"), metric.WithDescription("A function's in-flight limit, lowered on its throttling."))
	if err != nil {
		return nil, err
	}
	fnPaused, err := m.Int64ObservableGauge("dispatcher.function.paused", metric.WithDescription("1 while a function is paused, else 0."))
	if err != nil {
		return nil, err
	}
	fnThrottled, err := m.Int64ObservableCounter("dispatcher.function.throttled", metric.WithUnit("{throttle}"), metric.WithDescription("Times throttling lowered a function's in-flight limit since Open."))
	if err != nil {
		return nil, err
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(limit, r.limit.Load())
		f := r.stats.Load()
		if f == nil {
			return nil
		}
		st := (*f)()
		for state, n := range map[string]int64{"ready": st.Ready, "scheduled": st.Scheduled, "leased": st.Leased} {
			o.ObserveInt64(depth, n, metric.WithAttributes(attribute.String("state", state)))
		}
		o.ObserveInt64(depth, int64(st.DeadLettered), metric.WithAttributes(attribute.String("state", "dead")))
		o.ObserveInt64(keys, int64(st.Keys))
		o.ObserveInt64(delivered, int64(st.Delivered))
		o.ObserveInt64(cancelled, int64(st.Cancelled))
		o.ObserveInt64(evicted, int64(st.Evicted))
		for _, f := range st.Functions {
			fn := attribute.String("function", f.Function)
			for state, n := range map[string]int64{"ready": f.Ready, "scheduled": f.Scheduled, "inflight": f.InFlight} {
				o.ObserveInt64(fnEvents, n, metric.WithAttributes(fn, attribute.String("state", state)))
			}
			o.ObserveInt64(fnLimit, int64(f.Limit), metric.WithAttributes(fn))
			paused := int64(0)
			if f.Paused {
				paused = 1
			}
			o.ObserveInt64(fnPaused, paused, metric.WithAttributes(fn))
			o.ObserveInt64(fnThrottled, int64(f.Throttled), metric.WithAttributes(fn))
		}
		return nil
	}, depth, keys, delivered, limit, cancelled, evicted, fnEvents, fnLimit, fnPaused, fnThrottled)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// Attach implements dispatcher.Metrics.
func (r *Recorder) Attach(stats func() dispatcher.Stats) { r.stats.Store(&stats) }

// Enqueued implements dispatcher.Metrics.
func (r *Recorder) Enqueued(n int) {
	if n > 0 {
		r.enqueued.Add(context.Background(), int64(n))
	}
}

// Invoked implements dispatcher.Metrics.
func (r *Recorder) Invoked(function string, latency time.Duration, class string) {
	ctx := context.Background()
	r.invocations.Add(ctx, 1, metric.WithAttributes(attribute.String("function", function), attribute.String("class", class)))
	r.duration.Record(ctx, latency.Seconds(), metric.WithAttributes(attribute.String("class", class)))
}

// Retried implements dispatcher.Metrics.
func (r *Recorder) Retried(class string) {
	r.retried.Add(context.Background(), 1, metric.WithAttributes(attribute.String("class", class)))
}

// DeadLettered implements dispatcher.Metrics.
func (r *Recorder) DeadLettered(reason string) {
	r.deadLettered.Add(context.Background(), 1, metric.WithAttributes(attribute.String("reason", reason)))
}

// Deduplicated implements dispatcher.Metrics.
func (r *Recorder) Deduplicated(where string) {
	r.deduplicated.Add(context.Background(), 1, metric.WithAttributes(attribute.String("where", where)))
}

// InFlightLimit implements dispatcher.Metrics.
func (r *Recorder) InFlightLimit(n int) { r.limit.Store(int64(n)) }

// EventAge implements dispatcher.AsyncMetrics.
func (r *Recorder) EventAge(function string, age time.Duration) {
	r.eventAge.Record(context.Background(), float64(age)/float64(time.Millisecond), metric.WithAttributes(attribute.String("function", function)))
}

// Received implements dispatcher.AsyncMetrics.
func (r *Recorder) Received(function string) {
	r.received.Add(context.Background(), 1, metric.WithAttributes(attribute.String("function", function)))
}

// Dropped implements dispatcher.AsyncMetrics.
func (r *Recorder) Dropped(function, reason string) {
	r.dropped.Add(context.Background(), 1, metric.WithAttributes(attribute.String("function", function), attribute.String("reason", reason)))
}
