package dispatcher

import (
	"errors"
	"fmt"

	"github.com/lambdadispatch/dispatcher/idempotency"
)

var (
	// ErrClosed is returned by every call made after Close.
	ErrClosed = errors.New("dispatcher: closed")

	// ErrQueueFull is returned by Enqueue and EnqueueBatch when accepting the
	// events would take the queue past WithMaxEvents or WithMaxBytes. Nothing
	// is written: a batch is refused whole.
	ErrQueueFull = errors.New("dispatcher: queue full")

	// ErrInvalidEvent is returned, wrapped in a *ValidationError, when an
	// event fails validation. Nothing is written.
	ErrInvalidEvent = errors.New("dispatcher: invalid event")

	// ErrFileInUse is returned by Open when another dispatcher, in this
	// process or another, holds the file and did not release it within the
	// lock timeout (WithLockTimeout).
	ErrFileInUse = errors.New("dispatcher: file is in use by another dispatcher")

	// ErrReadOnly is returned by Enqueue, EnqueueBatch, Run, and the
	// DeadLetters' Redrive, RedriveMatching and Purge of a Dispatcher
	// opened with WithReadOnly. Nothing is written.
	ErrReadOnly = errors.New("dispatcher: opened read-only")

	// ErrNoLambda is returned by Run and Check when Open was not given
	// WithLambda.
	ErrNoLambda = errors.New("dispatcher: no Lambda client (use WithLambda)")

	// ErrRunning is returned by Run when the Dispatcher is running already.
	ErrRunning = errors.New("dispatcher: already running")

	// ErrKeysUnavailable is matched (errors.Is) by the error Enqueue
	// returns when the shared key window (WithSharedKeys) could not be
	// reached or was throttled. Nothing was queued: the caller may retry.
	// The error is an *idempotency.UnavailableError, which says which. It
	// is the same value as idempotency.ErrUnavailable, so either matches.
	ErrKeysUnavailable = idempotency.ErrUnavailable
)

// ValidationError says which field of which event failed validation. It
// wraps ErrInvalidEvent, so errors.Is(err, ErrInvalidEvent) holds.
type ValidationError struct {
	// Index is the event's position in the slice given to EnqueueBatch, and
	// 0 for Enqueue.
	Index int
	// Field is the name of the Event field at fault: "Function",
	// "Qualifier", "Payload", "Key" or "Window". "Window" is also the
	// field of the error Open wraps when WithKeyWindow's window, from now,
	// would end past 2262, the last expiry the key index can hold.
	Field string
	// Reason says what is wrong, in words meant for a person.
	Reason string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("dispatcher: invalid event %d: %s: %s", e.Index, e.Field, e.Reason)
}

// Unwrap returns ErrInvalidEvent.
func (e *ValidationError) Unwrap() error { return ErrInvalidEvent }
