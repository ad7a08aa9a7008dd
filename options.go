package dispatcher

import (
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/internal/delivery"
	"github.com/lambdadispatch/dispatcher/retry"
)

// Option configures a Dispatcher at Open. Options are fixed for the life of
// the Dispatcher: nothing is tuned on a live one.
type Option func(*options) error

type options struct {
	lockTimeout time.Duration
	maxEvents   int64
	maxBytes    int64
	maxPayload  int
	logger      *slog.Logger
	now         func() time.Time
	elapsed     func() time.Duration // the queue clock's monotonic source; nil: the process's
	readOnly    bool
	noLog       bool // WithoutWriteAheadLog

	lambda             LambdaInvoker
	policy             retry.Policy
	concurrency        int
	sink               deadletter.Sink // nil: the bbolt sink in the queue's file
	noFallback         bool
	drainTimeout       time.Duration
	invokeTimeout      time.Duration
	leaseDuration      time.Duration
	rate               float64
	full               FullPolicy
	maxEvictionRecords int
	limits             map[string]delivery.Limit // WithFunctionLimit, by function
	defaultLimit       delivery.Limit
	metaField          string

	logSizes   bool
	metrics    Metrics
	keyWindow  time.Duration
	keyFunc    func(Event) string
	maxKeys    int
	sweepEvery time.Duration
	shared     idempotency.Shared
	claimLease time.Duration
}

// DefaultMaxPayload is Lambda's asynchronous invocation payload limit (1 MiB),
// the largest Payload an Event may carry unless Open is told otherwise.
const DefaultMaxPayload = 1 << 20

// DefaultLockTimeout is how long Open waits for another holder of the file
// unless WithLockTimeout says otherwise.
const DefaultLockTimeout = 3 * time.Second

// DefaultKeySweep is how often expired keys are swept unless WithKeySweep
// says otherwise.
const DefaultKeySweep = time.Minute

// DefaultClaimLease is how long an unconfirmed claim in a shared key window
// keeps other dispatchers out (WithClaimLease).
const DefaultClaimLease = 30 * time.Second

// Defaults of the sending options.
const (
	DefaultConcurrency   = 16
	DefaultDrainTimeout  = 10 * time.Second
	DefaultInvokeTimeout = 30 * time.Second
	DefaultLeaseDuration = 5 * time.Minute
)

func defaultOptions() options {
	return options{
		lockTimeout:        DefaultLockTimeout,
		maxPayload:         DefaultMaxPayload,
		now:                time.Now,
		policy:             retry.DefaultPolicy(),
		concurrency:        DefaultConcurrency,
		drainTimeout:       DefaultDrainTimeout,
		invokeTimeout:      DefaultInvokeTimeout,
		leaseDuration:      DefaultLeaseDuration,
		keyWindow:          DefaultKeyWindow,
		claimLease:         DefaultClaimLease,
		maxEvictionRecords: DefaultMaxEvictionRecords,
		sweepEvery:         DefaultKeySweep,
	}
}

// DefaultKeyWindow is how long a deduplication key is held by default.
const DefaultKeyWindow = 24 * time.Hour

// WithKeyWindow sets how long after its Enqueue an event holds its key
// (default 24h): within it, another event with the same key is a
// Duplicate. Event.Window overrides it per event. Open refuses a window
// whose end is past 2262 (about 236 years from 2026: key expiries are Unix
// nanoseconds) with an error wrapping a *ValidationError whose Field is
// "Window"; Enqueue refuses such an Event.Window the same way.
func WithKeyWindow(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("dispatcher: WithKeyWindow(%v): must be positive", d)
		}
		o.keyWindow = d
		return nil
	}
}

// WithKeyFunc derives a key for events enqueued without one, for example
// HashKey. Off by default: events without a key are never deduplicated.
func WithKeyFunc(f func(Event) string) Option {
	return func(o *options) error {
		o.keyFunc = f
		return nil
	}
}

// WithMaxKeys bounds the keys held: past it, the keys that expire first
// are evicted (counted in Stats.KeysEvicted), so the index never grows
// without bound. Zero, the default, means no bound beyond the window.
func WithMaxKeys(n int) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("dispatcher: WithMaxKeys(%d): must not be negative", n)
		}
		o.maxKeys = n
		return nil
	}
}

// WithKeySweep sets how often expired keys are swept (default every
// minute), in transactions of at most 1000 keys.
func WithKeySweep(every time.Duration) Option {
	return func(o *options) error {
		if every <= 0 {
			return fmt.Errorf("dispatcher: WithKeySweep(%v): must be positive", every)
		}
		o.sweepEvery = every
		return nil
	}
}

// WithLockTimeout bounds how long Open waits for another dispatcher, in
// this process or another, to release the file before it fails with
// ErrFileInUse. The default is 3 seconds.
func WithLockTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("dispatcher: WithLockTimeout(%v): must be positive", d)
		}
		o.lockTimeout = d
		return nil
	}
}

// WithReadOnly opens the file only to read it: stats, events, dead
// letters and keys. Not a byte of the file is written, not even at Open,
// so it works on a read-only mount; the file must already be a queue
// (anything else gives a *store.CorruptError), and leases left by a
// process that died stay as they are. Enqueue, EnqueueBatch, Run, and
// redrive and purge of dead letters return ErrReadOnly; no background
// sweep of keys runs, and a shared key window (WithSharedKeys) is not
// contacted. The file lock taken is shared: Open still fails with
// ErrFileInUse while a dispatcher has the file open to write.
func WithReadOnly() Option {
	return func(o *options) error {
		o.readOnly = true
		return nil
	}
}

// WithoutWriteAheadLog makes every Enqueue a transaction of the queue
// file itself, as before the write-ahead log: two fsyncs and a rewrite of
// the pages it touches per commit, where the log takes one fsync and an
// append (see the README's Performance). It is there to measure the
// difference, and for a file system where a directory of segments beside
// the file is unwelcome. Events a log left beside the file are applied at
// Open either way.
func WithoutWriteAheadLog() Option {
	return func(o *options) error {
		o.noLog = true
		return nil
	}
}

// WithMaxEvents caps the events held (ready, scheduled and leased). Past
// it, Enqueue returns ErrQueueFull and writes nothing. Zero, the default,
// means no cap.
func WithMaxEvents(n int64) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("dispatcher: WithMaxEvents(%d): must not be negative", n)
		}
		o.maxEvents = n
		return nil
	}
}

// WithMaxBytes caps the bytes held: payloads plus a small per-event
// overhead for metadata (Stats.Bytes). Past it, Enqueue returns
// ErrQueueFull and writes nothing. The file on disk is larger than this
// figure and does not shrink without compaction; size the cap with that in
// mind. Zero, the default, means no cap.
func WithMaxBytes(n int64) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("dispatcher: WithMaxBytes(%d): must not be negative", n)
		}
		o.maxBytes = n
		return nil
	}
}

// WithMaxPayload sets the largest payload Enqueue accepts, in bytes. The
// default, DefaultMaxPayload, is Lambda's limit for asynchronous
// invocations; a larger payload would only be rejected by Lambda later.
func WithMaxPayload(n int) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("dispatcher: WithMaxPayload(%d): must be positive", n)
		}
		o.maxPayload = n
		return nil
	}
}

// WithLogger sets the logger for state changes (recovery at Open, records
// set aside as corrupt). Nil, the default, discards them. Payloads are
// never logged.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		o.logger = l
		return nil
	}
}

// WithClock replaces the wall clock: the time stamped on events as their
// enqueue time, the time key windows run on, and the clock the queue's own
// schedule starts from at Open. Due times, retries, leases and event ages
// then run on a monotonic clock, so a step of this clock (back or forward,
// by seconds or days) while the dispatcher is open moves none of them: see
// the README's Guarantees.
func WithClock(now func() time.Time) Option {
	return func(o *options) error {
		if now == nil {
			return fmt.Errorf("dispatcher: WithClock(nil)")
		}
		o.now = now
		return nil
	}
}

// WithLambda sets the client Run and Check invoke Lambda with. A
// *lambda.Client fits. The dispatcher turns the SDK's own retries off for
// every call it makes (its retry policy is the only one), so the client
// needs no retry settings.
func WithLambda(c LambdaInvoker) Option {
	return func(o *options) error {
		if c == nil {
			return fmt.Errorf("dispatcher: WithLambda(nil)")
		}
		o.lambda = c
		return nil
	}
}

// WithRetryPolicy sets the retry policy. Start from retry.DefaultPolicy():
// two retries (three attempts, like Lambda's own asynchronous retries) with
// exponential backoff and jitter, and a maximum event age of 6 hours.
func WithRetryPolicy(p retry.Policy) Option {
	return func(o *options) error {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("dispatcher: WithRetryPolicy: %w", err)
		}
		o.policy = p
		return nil
	}
}

// WithConcurrency sets the most invocations in flight at once (default 16).
// On throttling the dispatcher lowers its own limit below this and raises
// it back as invocations succeed.
func WithConcurrency(n int) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("dispatcher: WithConcurrency(%d): must be positive", n)
		}
		o.concurrency = n
		return nil
	}
}

// WithDeadLetter sets where events that cannot be delivered go. The
// default keeps them in the queue's own file, written in the transaction
// that removes the event from the queue. With another sink (SQS, SNS, a
// SinkFunc), the queue's file stays the fallback: a letter the sink
// refuses or cannot take (down, too large) is kept there, logged, and can
// be listed and redriven from DeadLetters.
func WithDeadLetter(s deadletter.Sink) Option {
	return func(o *options) error {
		if s == nil {
			return fmt.Errorf("dispatcher: WithDeadLetter(nil)")
		}
		o.sink = s
		return nil
	}
}

// WithDrainTimeout bounds how long Run lets invocations in flight finish
// after its context ends (default 10s). Those cut off return to the queue
// with their attempt counted, since they may have reached Lambda.
func WithDrainTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("dispatcher: WithDrainTimeout(%v): must not be negative", d)
		}
		o.drainTimeout = d
		return nil
	}
}

// WithInvokeTimeout bounds one Invoke call (default 30s). An Event
// invocation only queues the event on Lambda's side, so it is quick; a
// timeout counts as a transient failure.
func WithInvokeTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("dispatcher: WithInvokeTimeout(%v): must be positive", d)
		}
		o.invokeTimeout = d
		return nil
	}
}

// WithLeaseDuration sets how long a worker holds a leased event before it
// is returned to the queue for another (default 5m). It must exceed the
// invoke timeout.
func WithLeaseDuration(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("dispatcher: WithLeaseDuration(%v): must be positive", d)
		}
		o.leaseDuration = d
		return nil
	}
}

// WithRateLimit caps invocations at perSecond a second across all
// workers, spaced evenly. Zero, the default, means no cap beyond
// WithConcurrency. Negative, NaN and infinite rates are refused, and so is
// a rate so small that the time between two invocations does not fit in a
// time.Duration (below about one in 292 years). When Run's context ends,
// events waiting for their turn go back to the queue with their attempt
// refunded: no invocation starts after it.
func WithRateLimit(perSecond float64) Option {
	return func(o *options) error {
		switch {
		case math.IsNaN(perSecond) || math.IsInf(perSecond, 0) || perSecond < 0:
			return fmt.Errorf("dispatcher: WithRateLimit(%v): must be a positive finite rate, or 0 for none", perSecond)
		case perSecond > 0 && float64(time.Second)/perSecond >= math.MaxInt64:
			return fmt.Errorf("dispatcher: WithRateLimit(%v): the interval between invocations overflows a time.Duration", perSecond)
		}
		o.rate = perSecond
		return nil
	}
}

// WithPayloadMetadata adds a member named field to every payload that is a
// JSON object, holding the event's id, key, attempt number and enqueue
// time:
//
//	{"_dispatch":{"id":"42","key":"order-42","attempt":1,"enqueuedAt":"2026-11-24T10:00:00Z"}, ...}
//
// Lambda hands ClientContext to synchronous invocations only, so for Event
// invocations the payload is the only way to tell the function which event
// it got, for its own deduplication. Off by default, since it changes the
// payload; payloads that are not objects are sent unchanged. If a payload
// already has a top-level member of that name, however its name is escaped
// ("_disp\u0061tch" is "_dispatch"), the payload's own wins: it is sent
// unchanged, so that it never holds two members of one name.
func WithPayloadMetadata(field string) Option {
	return func(o *options) error {
		if field == "" {
			return fmt.Errorf("dispatcher: WithPayloadMetadata(\"\"): needs a member name")
		}
		o.metaField = field
		return nil
	}
}

// WithoutDeadLetterFallback turns off the fallback of WithDeadLetter to the
// queue's own file: when the sink fails, the event stays queued and the
// move is retried with backoff until the sink takes it.
func WithoutDeadLetterFallback() Option {
	return func(o *options) error {
		o.noFallback = true
		return nil
	}
}

// WithLogPayloadSizes adds the payload's size in bytes to the log lines
// about an event. Payloads themselves, and credentials, are never logged.
func WithLogPayloadSizes() Option {
	return func(o *options) error {
		o.logSizes = true
		return nil
	}
}

// WithSharedKeys shares the key window with every dispatcher that uses the
// same w, in any process on any machine: an event whose key another
// dispatcher holds is refused as a duplicate, as one held in this file is.
// Package idempotency/dynamo provides w on a DynamoDB table. The file's own
// index stays in use beside it, so keys this file holds cost no round trip,
// and delivery goes on from it when w is unreachable.
//
// Enqueue of a keyed event then claims its key in w before committing, and
// fails with an error matching ErrKeysUnavailable when w is unreachable or
// throttled; events without a key never touch w.
func WithSharedKeys(w idempotency.Shared) Option {
	return func(o *options) error {
		if w == nil {
			return fmt.Errorf("dispatcher: WithSharedKeys(nil)")
		}
		o.shared = w
		return nil
	}
}

// WithClaimLease sets how long a claim in the shared key window keeps
// other dispatchers out before its event is committed and the claim
// confirmed (default DefaultClaimLease). When a dispatcher dies between
// claim and commit, others wait at most this long for the key. It must
// exceed the time a commit can take, fsync included.
func WithClaimLease(d time.Duration) Option {
	return func(o *options) error {
		if d < time.Second {
			return fmt.Errorf("dispatcher: WithClaimLease(%v): must be at least 1s", d)
		}
		o.claimLease = d
		return nil
	}
}

// FullPolicy says what Enqueue does when the queue is at WithMaxEvents or
// WithMaxBytes.
type FullPolicy int

const (
	// Reject refuses the new events with ErrQueueFull; nothing changes.
	// The default.
	Reject FullPolicy = iota
	// DropOldest evicts queued events to make room, in the transaction
	// that writes the new ones: the lowest priority first, then the
	// oldest, and only events waiting (ready or scheduled), never one in
	// flight nor one of the batch being written. Each eviction leaves a
	// record in the file's eviction ledger (Events().Evictions), is
	// counted in Stats.Evicted, and releases the event's key. When
	// evicting everything that may be evicted would still not make room,
	// the batch is refused with ErrQueueFull as under Reject.
	DropOldest
)

// DefaultMaxEvictionRecords bounds the eviction ledger unless
// WithMaxEvictionRecords says otherwise.
const DefaultMaxEvictionRecords = 10_000

// WithFullPolicy sets what Enqueue does when the queue is full: Reject (the
// default) or DropOldest. An edge device that buffers while offline keeps
// its newest readings, and its alarms (give them a higher Priority) over
// its telemetry, instead of refusing the newest reading for as long as the
// outage lasts.
func WithFullPolicy(p FullPolicy) Option {
	return func(o *options) error {
		if p != Reject && p != DropOldest {
			return fmt.Errorf("dispatcher: WithFullPolicy(%d): want Reject or DropOldest", p)
		}
		o.full = p
		return nil
	}
}

// WithMaxEvictionRecords bounds the eviction ledger (default
// DefaultMaxEvictionRecords): past it, the oldest records go. It must be
// positive.
func WithMaxEvictionRecords(n int) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("dispatcher: WithMaxEvictionRecords(%d): must be positive", n)
		}
		o.maxEvictionRecords = n
		return nil
	}
}
