package dispatcher

import (
	"fmt"
	"log/slog"
	"time"
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
}

func defaultOptions() options {
	return options{
		lockTimeout: 3 * time.Second,
		maxPayload:  DefaultMaxPayload,
		now:         time.Now,
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

// WithClock replaces time.Now, for tests that need to move time.
func WithClock(now func() time.Time) Option {
	return func(o *options) error {
		if now == nil {
			return fmt.Errorf("dispatcher: WithClock(nil)")
		}
		o.now = now
		return nil
	}
}
