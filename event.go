package dispatcher

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Event is one asynchronous invocation waiting to be sent to a Lambda function.
type Event struct {
	// Function names the function in any form Lambda's Invoke accepts: a name
	// ("my-function"), a name with a version or alias ("my-function:prod"), a
	// partial ARN ("123456789012:function:my-function") or a full ARN.
	Function string
	// Qualifier optionally selects a version or alias. When Function already
	// carries one, the two must agree.
	Qualifier string
	// Payload is the JSON document the function receives. It may be empty.
	Payload []byte
	// Key optionally identifies the event for deduplication (an order id, a
	// reading id): while an event holds its key, within the key window
	// (WithKeyWindow), another event with the same key is not queued and
	// Enqueue reports it as a Duplicate. Events without a key are never
	// deduplicated, unless WithKeyFunc derives one.
	Key string
	// Window overrides the key window for this event; zero means the
	// dispatcher's. A negative window, or one whose end is past 2262 (key
	// expiries are Unix nanoseconds), is refused with a *ValidationError
	// whose Field is "Window".
	Window time.Duration
	// NotBefore, when set, makes the event due at that time instead of at
	// once; Delay does the same relative to Enqueue. Give one or neither.
	// The event is kept durably until then (counted in Stats.Scheduled),
	// at most MaxDelay ahead. Its due time is held on the queue's clock,
	// so a wall clock stepped meanwhile moves it no more than it moves
	// retries. Its key window starts at Enqueue and lasts at least until
	// it is due; its age for the retry policy's MaxEventAge starts at its
	// first attempt, as for any event.
	NotBefore time.Time
	Delay     time.Duration
	// Priority orders the due events of one function: higher first,
	// first in, first out among equals. It ranges from MinPriority to
	// MaxPriority; 0, the zero value, is normal. Functions still take
	// turns (see WithFunctionLimit), and under WithFullPolicy(DropOldest)
	// the lowest priority is evicted first.
	Priority int
}

// Bounds of Event.Priority and of how far ahead an event may be
// scheduled.
const (
	MinPriority = -3
	MaxPriority = 3
	// MaxDelay bounds NotBefore and Delay: an event due more than a year
	// ahead is more likely a unit mistake (a timestamp in seconds read as
	// milliseconds, say) than a plan, and is refused.
	MaxDelay = 365 * 24 * time.Hour
)

// Receipt reports the outcome of an Enqueue.
type Receipt struct {
	// ID identifies the queued event. For a duplicate it is the id of the
	// event that was queued first under the same key.
	ID string
	// Duplicate is true when the event was not queued because its key was
	// already seen inside the deduplication window. A duplicate is a result,
	// not an error.
	Duplicate bool
}

// HashKey derives a deduplication key from the event's function and
// payload, for WithKeyFunc: two events with the same function and the same
// payload bytes share it.
func HashKey(e Event) string {
	h := sha256.New()
	h.Write([]byte(e.Function))
	h.Write([]byte{0})
	h.Write(e.Payload)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}
