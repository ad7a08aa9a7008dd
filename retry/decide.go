package retry

import (
	"fmt"
	"time"
)

// Decision is what happens to an event after an Invoke attempt, as returned by
// [Policy.Decide]. The zero value is not a valid Decision.
type Decision int

// The decisions [Policy.Decide] returns.
const (
	// Done: the invocation succeeded; acknowledge the event.
	Done Decision = iota + 1
	// Retry: schedule the event again at [Policy.NextDue].
	Retry
	// DeadLetter: give the event up and hand it to the dead-letter sink with
	// the [Reason] Decide returned.
	DeadLetter
	// Pause: the fault is ours, not the event's (Lambda unreachable or
	// credentials failing). Give the attempt back, pause dispatch and probe
	// with [Policy.ProbeDelay] until Lambda answers.
	Pause
)

// String returns "done", "retry", "dead-letter" or "pause".
func (d Decision) String() string {
	switch d {
	case Done:
		return "done"
	case Retry:
		return "retry"
	case DeadLetter:
		return "dead-letter"
	case Pause:
		return "pause"
	}
	return fmt.Sprintf("Decision(%d)", int(d))
}

// Reason says why [Policy.Decide] chose [DeadLetter].
type Reason string

// The reasons for a [DeadLetter] decision.
const (
	// ReasonRetriesExhausted: the last of 1+MaxRetries attempts failed with a
	// retryable error.
	ReasonRetriesExhausted Reason = "retries exhausted"
	// ReasonEventAgeExceeded: a retryable attempt failed after the event had
	// been queued for longer than MaxEventAge.
	ReasonEventAgeExceeded Reason = "event age exceeded"
	// ReasonRejected: Lambda refused the event with a [Permanent] error.
	ReasonRejected Reason = "rejected"
)

// The conditions of Lambda's own on-failure destination records that the
// reasons map to.
const (
	ConditionRetriesExhausted = "RetriesExhausted"
	ConditionEventAgeExceeded = "EventAgeExceeded"
	// ConditionRejected is our own choice: Lambda's records name only the
	// two conditions above, since an event Lambda refuses outright never
	// enters its asynchronous queue.
	ConditionRejected = "RejectedByLambda"
)

// Condition returns the condition of Lambda's record for r:
// [ReasonRetriesExhausted] is "RetriesExhausted", [ReasonEventAgeExceeded]
// is "EventAgeExceeded", and [ReasonRejected] is "RejectedByLambda" (our
// name; see [ConditionRejected]). Any other reason is returned as it is.
func (r Reason) Condition() string {
	switch r {
	case ReasonRetriesExhausted:
		return ConditionRetriesExhausted
	case ReasonEventAgeExceeded:
		return ConditionEventAgeExceeded
	case ReasonRejected:
		return ConditionRejected
	}
	return string(r)
}

// Decide says what to do with an event after an attempt whose outcome was
// classified as class. attempts is the number of attempts made so far,
// including this one; enqueued is when the event's age starts (the
// dispatcher passes its first attempt, see the package's Caveats) and now
// the current time. The Reason is empty unless the Decision is [DeadLetter].
//
// The rules, in order:
//
//   - [Success] → [Done].
//   - [Permanent] → [DeadLetter], [ReasonRejected], whatever the attempt count
//     or age.
//   - [Unreachable], [Credentials] → [Pause]. No attempt is spent: the caller
//     gives the attempt back. The event's age is not checked, so a paused
//     dispatcher never dead-letters its backlog for age.
//   - [Throttled], [Transient] (and any value that is not a known Class) are
//     retryable:
//     if now − enqueued > MaxEventAge → [DeadLetter], [ReasonEventAgeExceeded];
//     else if attempts <= MaxRetries → [Retry];
//     else → [DeadLetter], [ReasonRetriesExhausted].
//
// The age is checked on retry decisions only, and a zero enqueued time
// (unknown) skips it rather than dead-letter the event.
func (p Policy) Decide(class Class, attempts int, enqueued, now time.Time) (Decision, Reason) {
	switch class {
	case Success:
		return Done, ""
	case Permanent:
		return DeadLetter, ReasonRejected
	case Unreachable, Credentials:
		return Pause, ""
	}
	if p.Expired(enqueued, now) {
		return DeadLetter, ReasonEventAgeExceeded
	}
	if attempts <= p.MaxRetries {
		return Retry, ""
	}
	return DeadLetter, ReasonRetriesExhausted
}

// Expired reports whether an event whose age started at start (its first
// attempt) is past MaxEventAge at time at. A zero start (never attempted)
// is never expired. Lambda's MaximumEventAgeInSeconds bounds the age of a
// request Lambda sends to a function; the dispatcher asks this before a
// retry is scheduled (a retry due past the age is not scheduled) and
// before an invoke (an event found past its age is not sent).
func (p Policy) Expired(start, at time.Time) bool {
	return !start.IsZero() && at.Sub(start) > p.MaxEventAge
}
