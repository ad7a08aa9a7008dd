package delivery

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/retry"
	"github.com/lambdadispatch/dispatcher/store"
)

// Config is what one Run needs. Lambda, Queue, Keys, Sinks, Policy,
// Concurrency and the three durations are required; the rest may be left
// zero (Counters and Metrics then count for no one, Logger discards, Now is
// time.Now).
type Config struct {
	Lambda Invoker
	Queue  Queue
	Keys   Keys
	// Shared is nil unless the dispatcher shares its key window with
	// others.
	Shared Shared
	// Sinks are tried in order; the last is normally the queue's own file.
	Sinks    []deadletter.Sink
	Counters *Counters
	Metrics  Metrics
	Logger   *slog.Logger
	// Now is the wall clock a letter's DeadLettered time is read from.
	Now func() time.Time

	Policy        retry.Policy
	Concurrency   int
	LeaseDuration time.Duration
	InvokeTimeout time.Duration
	DrainTimeout  time.Duration
	// Rate is the most invocations a second, across all workers; 0 means
	// no limit.
	Rate float64
	// Limits are the flow control of named functions (keyed by the
	// event's Function, exactly as enqueued); DefaultLimit that of every
	// other function.
	Limits       map[string]Limit
	DefaultLimit Limit
	// MetaField, when set, names the member added to JSON object payloads
	// with the event's id, key, attempt and enqueue time.
	MetaField string
	// LogSizes adds payload sizes to the dead-letter log line.
	LogSizes bool
}

// Invoker is the one method of *lambda.Client delivery calls.
type Invoker interface {
	Invoke(ctx context.Context, params *lambda.InvokeInput, optFns ...func(*lambda.Options)) (*lambda.InvokeOutput, error)
}

// Queue is the part of *store.Store delivery uses.
type Queue interface {
	AckAndLease(ctx context.Context, acks []uint64, n int, d time.Duration, quota store.Quota, onAck func(tx *store.Tx, seq uint64, key string) error) ([]store.Event, []uint64, error)
	// Paused reports whether function is paused: its events are not
	// leased, and one leased before the pause is released unsent.
	Paused(function string) bool
	Reschedule(ctx context.Context, seq uint64, due time.Time, lastErr store.ErrorInfo) error
	Release(ctx context.Context, refund bool, seqs ...uint64) error
	Remove(ctx context.Context, seq uint64, move func(tx *store.Tx, ev store.Event) error) (store.Event, error)
	Reclaim(ctx context.Context) (int, error)
	ReleaseAll(ctx context.Context) (int, error)
	Ready() <-chan struct{}
	NextDue() (time.Time, bool, error)
	Now() time.Time
}

// Keys is the local key window as delivery sees it.
type Keys interface {
	// Delivered reports whether key is marked delivered, by any event,
	// inside its window.
	Delivered(key string) (bool, error)
	// Mark records the outcome of event seq for key in tx: the ack's
	// transaction for Delivered, the removal's for DeadLettered.
	Mark(tx *store.Tx, key string, seq uint64, s idempotency.State) error
}

// Shared is the dispatcher's side of a key window shared with other
// dispatchers, called for keyed events only.
type Shared interface {
	// BeforeInvoke settles ev's pending claim before it is sent, and
	// reports whether ev turned out to be a duplicate.
	BeforeInvoke(ctx context.Context, ev store.Event) bool
	// Record records ev's outcome in the shared window.
	Record(ctx context.Context, ev store.Event, s idempotency.State)
}

// Metrics receives measurements as they happen; the root package's
// Metrics fits.
type Metrics interface {
	Invoked(function string, latency time.Duration, class string)
	Retried(class string)
	DeadLettered(reason string)
	Deduplicated(where string)
	InFlightLimit(n int)
	// The figures Lambda reports for asynchronous invocation, measured on
	// this side: an event's age when it is handed to Lambda, each event
	// Lambda accepted, and each given up on (dead-lettered or evicted).
	EventAge(function string, age time.Duration)
	Received(function string)
	Dropped(function, reason string)
}

// Counters are what delivery counts for the root's Stats. The root owns
// them, so that they run from Open to Close across every Run.
type Counters struct {
	// Throttled counts the times throttling lowered the in-flight limit.
	Throttled atomic.Uint64
	// Deduplicated counts events acked without an invoke because their key
	// was already delivered.
	Deduplicated atomic.Uint64
	// Paused is true while dispatch waits for Lambda to be reachable.
	Paused atomic.Bool
	// InFlightLimit is the account's in-flight limit during a Run: the
	// most invocations of all functions together, lowered by throttles
	// that name the account's limit.
	InFlightLimit atomic.Int64

	mu     sync.Mutex
	deadBy map[deadletter.Reason]uint64
	fns    map[string]*FunctionCounters
}

// DeadLetteredBy returns a copy of the count of dead letters by reason,
// never nil.
func (c *Counters) DeadLetteredBy() map[deadletter.Reason]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[deadletter.Reason]uint64, len(c.deadBy))
	for r, n := range c.deadBy {
		m[r] = n
	}
	return m
}

func (c *Counters) deadLettered(r deadletter.Reason) {
	c.mu.Lock()
	if c.deadBy == nil {
		c.deadBy = map[deadletter.Reason]uint64{}
	}
	c.deadBy[r]++
	c.mu.Unlock()
}
