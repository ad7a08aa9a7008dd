package deadletter

import (
	"context"
	"time"

	"github.com/lambdadispatch/dispatcher/retry"
	"github.com/lambdadispatch/dispatcher/store"
)

// Reason says why an event was dead-lettered. It is the retry policy's
// own type, so the policy's decision becomes a letter's reason unconverted.
type Reason = retry.Reason

// The reasons the dispatcher gives.
const (
	// RetriesExhausted: every attempt the retry policy allows failed with a
	// retryable error.
	RetriesExhausted = retry.ReasonRetriesExhausted
	// EventAgeExceeded: the event grew older than the policy's maximum event
	// age before it could be delivered.
	EventAgeExceeded = retry.ReasonEventAgeExceeded
	// Rejected: a permanent error; Lambda refused the event, and trying it
	// again would not change the answer.
	Rejected = retry.ReasonRejected
)

// ErrorInfo is the last error: what Lambda (or the transport) answered to
// the event's last attempt. It is the store's type, so that a letter
// carries its event's last error unconverted; zero when there was no
// attempt, as for an event that aged out before its first attempt.
type ErrorInfo = store.ErrorInfo

// Letter is an event that could not be delivered, with why and what was
// tried.
type Letter struct {
	// ID is the event's id: its sequence number in the queue, in decimal
	// as the dispatcher formats it ("42"). The Bolt sink keys letters by it.
	ID string
	// Function, Qualifier, Key and Payload are the event as enqueued.
	Function  string
	Qualifier string
	Key       string
	Payload   []byte
	// Enqueued is when the event entered the queue.
	Enqueued time.Time
	// Reason says why the event was dead-lettered.
	Reason Reason
	// Attempts counts the invocations made, 0 when none was.
	Attempts int
	// FirstAttempt and LastAttempt bound the attempts; zero when none was
	// made.
	FirstAttempt time.Time
	LastAttempt  time.Time
	// LastError is the answer to the last attempt.
	LastError ErrorInfo
	// DeadLettered is when the dispatcher gave up on the event.
	DeadLettered time.Time
}

// Sink receives dead letters. Put must return nil only once the letter is
// safe: when it returns an error the dispatcher keeps the event queued and
// tries again later, so a Put may see the same letter more than once and
// should treat a repeat as a success. Put may be called from several
// goroutines at once.
type Sink interface {
	Put(ctx context.Context, l Letter) error
}

// SinkFunc adapts a function to a [Sink], as http.HandlerFunc does.
type SinkFunc func(ctx context.Context, l Letter) error

// Put calls f(ctx, l).
func (f SinkFunc) Put(ctx context.Context, l Letter) error { return f(ctx, l) }

// TxSink is implemented by sinks that keep letters in the queue's own bbolt
// file. The dispatcher then calls PutTx in the same write transaction that
// removes the event from the queue, so the event is in exactly one of the
// two, never both, never neither.
//
// PutTx must be idempotent, because the caller's transaction may be run
// again (bbolt's Batch does so), and must not commit, roll back or keep tx.
type TxSink interface {
	Sink
	PutTx(tx *store.Tx, l Letter) error
}

var (
	_ TxSink = (*Bolt)(nil)
	_ Sink   = SinkFunc(nil)
)
