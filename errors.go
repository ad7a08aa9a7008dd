package dispatcher

import (
	"errors"
	"fmt"
	"strings"

	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/store"
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

	// ErrCorruptFile is matched (errors.Is) by the error Open returns for a
	// file that is not a dispatcher queue, or one too damaged to open; the
	// file is left as it was. errors.As finds the *store.CorruptError that
	// says what is wrong. `dispatchctl check` and `salvage` read such files.
	ErrCorruptFile = errors.New("dispatcher: not a readable queue file")

	// ErrReadOnly is returned by Enqueue, EnqueueBatch, Run, and the
	// DeadLetters' Redrive, RedriveMatching and Purge of a Dispatcher
	// opened with WithReadOnly. Nothing is written.
	ErrReadOnly = errors.New("dispatcher: opened read-only")

	// ErrNoLambda is returned by Run and Check when Open was not given
	// WithLambda.
	ErrNoLambda = errors.New("dispatcher: no Lambda client (use WithLambda)")

	// ErrRunning is returned by Run when the Dispatcher is running already.
	ErrRunning = errors.New("dispatcher: already running")

	// ErrNotFound is matched (errors.Is) by the error Events.Get returns
	// for an id that names no queued event, and DeadLetters.Get for one
	// that names no dead letter. The same error also matches
	// store.ErrNotFound or deadletter.ErrNotFound, so code written against
	// either keeps working.
	ErrNotFound = errors.New("dispatcher: not found")

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

// mappedError is an error of the store or of the letters as the
// dispatcher returns it: it matches (errors.Is) the dispatcher's sentinel
// is as well as everything err matches, and errors.As reaches err's types.
type mappedError struct {
	err  error
	is   error
	text string
}

func (e *mappedError) Error() string { return e.text }

// Unwrap returns the store's or the letters' error.
func (e *mappedError) Unwrap() error { return e.err }

// Is matches the dispatcher's sentinel.
func (e *mappedError) Is(target error) bool { return target == e.is }

// notFound makes err match ErrNotFound when it is a not-found error of the
// store or of the dead letters; any other err comes back as it was.
func notFound(err error) error {
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, deadletter.ErrNotFound) {
		return &mappedError{err: err, is: ErrNotFound, text: err.Error()}
	}
	return err
}

// storeErrors pairs the store's sentinels with the dispatcher's.
var storeErrors = []struct{ from, to error }{
	{store.ErrClosed, ErrClosed},
	{store.ErrFull, ErrQueueFull},
	{store.ErrLocked, ErrFileInUse},
	{store.ErrReadOnly, ErrReadOnly},
}

// translate maps the store's errors onto the dispatcher's own: the result
// matches both sentinels, and reads as the dispatcher's followed by the
// detail the store gave.
func translate(err error) error {
	for _, m := range storeErrors {
		if err == m.from {
			return m.to
		}
		if errors.Is(err, m.from) {
			detail, _ := strings.CutPrefix(err.Error(), m.from.Error()+": ")
			return &mappedError{err: err, is: m.to, text: m.to.Error() + ": " + detail}
		}
	}
	return err
}
