package dispatcher

import "time"

// Metrics receives the dispatcher's measurements as they happen. Package
// otelmetrics implements it on OpenTelemetry; the root package stays free
// of that dependency. Implementations must be safe for concurrent use and
// quick: they are called on the hot path.
type Metrics interface {
	// Attach is called once at Open with the dispatcher's Stats, for
	// gauges read on demand (queue depth by state, keys held).
	Attach(stats func() Stats)
	// Enqueued counts events written by Enqueue or EnqueueBatch.
	Enqueued(n int)
	// Invoked records one Invoke: its latency and outcome class
	// ("success", "throttled", "transient", "permanent", "unreachable",
	// "credentials").
	Invoked(function string, latency time.Duration, class string)
	// Retried counts an event rescheduled after a failure of class.
	Retried(class string)
	// DeadLettered counts a dead letter by reason.
	DeadLettered(reason string)
	// Deduplicated counts an event dropped as a duplicate, at "enqueue" or
	// at "delivery".
	Deduplicated(where string)
	// InFlightLimit reports the in-flight limit whenever throttling or
	// recovery moves it.
	InFlightLimit(n int)
}

// AsyncMetrics is implemented by Metrics that also take, by function, the
// figures Lambda itself reports for asynchronous invocation, measured on
// the dispatcher's side of the queue. The dispatcher looks for it once, at
// Open; package otelmetrics implements it.
type AsyncMetrics interface {
	// EventAge records how long an event had been queued (since Enqueue,
	// on the wall clock) when an invoke hands it to Lambda, at every
	// attempt, like Lambda's AsyncEventAge.
	EventAge(function string, age time.Duration)
	// Received counts an event Lambda accepted, like AsyncEventsReceived.
	Received(function string)
	// Dropped counts an event given up on, like AsyncEventsDropped: reason
	// is a dead letter's ("retries exhausted", ...) or "evicted".
	Dropped(function, reason string)
}

// deliveryMetrics is m as package delivery takes it: the AsyncMetrics
// calls go nowhere unless m implements them.
type deliveryMetrics struct {
	Metrics
	async AsyncMetrics
}

func newDeliveryMetrics(m Metrics) deliveryMetrics {
	a, _ := m.(AsyncMetrics)
	return deliveryMetrics{Metrics: m, async: a}
}

func (m deliveryMetrics) EventAge(function string, age time.Duration) {
	if m.async != nil {
		m.async.EventAge(function, age)
	}
}

func (m deliveryMetrics) Received(function string) {
	if m.async != nil {
		m.async.Received(function)
	}
}

func (m deliveryMetrics) Dropped(function, reason string) {
	if m.async != nil {
		m.async.Dropped(function, reason)
	}
}

// WithMetrics sends measurements to m, for example otelmetrics.New(provider).
// Without it, nothing is measured beyond Stats.
func WithMetrics(m Metrics) Option {
	return func(o *options) error {
		o.metrics = m
		return nil
	}
}

// noMetrics is the Metrics of a dispatcher without WithMetrics.
type noMetrics struct{}

func (noMetrics) Attach(func() Stats)                   {}
func (noMetrics) Enqueued(int)                          {}
func (noMetrics) Invoked(string, time.Duration, string) {}
func (noMetrics) Retried(string)                        {}
func (noMetrics) DeadLettered(string)                   {}
func (noMetrics) Deduplicated(string)                   {}
func (noMetrics) InFlightLimit(int)                     {}
