package dispatcher

import (
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/lambdadispatch/dispatcher/internal/jsonvalid"
	"github.com/lambdadispatch/dispatcher/internal/lambdaname"
)

// MaxKeyLen is the longest deduplication key accepted, in bytes.
const MaxKeyLen = 1024

// limits carries the validation bounds fixed at Open.
type limits struct {
	maxPayload int // bytes; the default is DefaultMaxPayload
}

// ValidateEvent checks e as Enqueue would with the default limits (a
// dispatcher opened WithMaxPayload may accept larger payloads), and returns
// nil or a *ValidationError naming the field at fault. It reads no file:
// a tool can check its input before it opens one.
func ValidateEvent(e Event) error {
	if err := validateEvent(0, &e, limits{}); err != nil {
		return err
	}
	_, err := validateSchedule(0, &e, time.Now())
	return err
}

// validateEvent returns nil or a *ValidationError (never a typed nil inside
// a non-nil error) with Index set to index and Field one of "Function",
// "Qualifier", "Payload", "Key", "Delay", "NotBefore" or "Priority".
// Delay and NotBefore are checked by validateSchedule, against a clock.
//
// The checks are loose enough never to refuse what Lambda's Invoke accepts
// and strict enough to refuse, at Enqueue, what Lambda would refuse on every
// attempt. A non-positive l.maxPayload means DefaultMaxPayload.
func validateEvent(index int, e *Event, l limits) error {
	if e == nil {
		return &ValidationError{Index: index, Field: "Function", Reason: "function is required"}
	}
	fnQualifier, reason := lambdaname.Function(e.Function)
	if reason != "" {
		return &ValidationError{Index: index, Field: "Function", Reason: reason}
	}
	if reason := lambdaname.Qualifier(e.Qualifier, fnQualifier); reason != "" {
		return &ValidationError{Index: index, Field: "Qualifier", Reason: reason}
	}
	if reason := checkPayload(e.Payload, l.maxPayload); reason != "" {
		return &ValidationError{Index: index, Field: "Payload", Reason: reason}
	}
	if reason := checkKey(e.Key); reason != "" {
		return &ValidationError{Index: index, Field: "Key", Reason: reason}
	}
	if e.Priority < MinPriority || e.Priority > MaxPriority {
		return &ValidationError{Index: index, Field: "Priority", Reason: fmt.Sprintf("priority %d is outside %d to %d", e.Priority, MinPriority, MaxPriority)}
	}
	return nil
}

// validateSchedule checks e's Delay and NotBefore against now, the wall
// clock's, and returns how long after now e is due (0: at once).
func validateSchedule(index int, e *Event, now time.Time) (time.Duration, error) {
	after, field, reason := schedule(e, now)
	if reason != "" {
		return 0, &ValidationError{Index: index, Field: field, Reason: reason}
	}
	return after, nil
}

// schedule returns how long after now e is due (0: at once), or the field
// at fault and why.
func schedule(e *Event, now time.Time) (after time.Duration, field, reason string) {
	switch {
	case e.Delay < 0:
		return 0, "Delay", fmt.Sprintf("delay %v is negative", e.Delay)
	case e.Delay > 0 && !e.NotBefore.IsZero():
		return 0, "Delay", "give Delay or NotBefore, not both"
	case e.Delay > MaxDelay:
		return 0, "Delay", fmt.Sprintf("delay %v is past MaxDelay (%v)", e.Delay, MaxDelay)
	case e.Delay > 0:
		return e.Delay, "", ""
	case e.NotBefore.IsZero():
		return 0, "", ""
	}
	after = e.NotBefore.Sub(now)
	if after > MaxDelay {
		return 0, "NotBefore", fmt.Sprintf("%s is more than MaxDelay (%v) ahead", e.NotBefore.UTC().Format(time.RFC3339), MaxDelay)
	}
	return max(after, 0), "", ""
}

func checkPayload(p []byte, limit int) string {
	if len(p) == 0 {
		return ""
	}
	if limit <= 0 {
		limit = DefaultMaxPayload
	}
	if len(p) > limit {
		return fmt.Sprintf("payload is %d bytes, limit %d", len(p), limit)
	}
	if !jsonvalid.Valid(p) {
		return "not valid JSON"
	}
	return ""
}

func checkKey(k string) string {
	if len(k) > MaxKeyLen {
		return fmt.Sprintf("key is %d bytes, limit %d", len(k), MaxKeyLen)
	}
	if !utf8.ValidString(k) {
		return "key is not valid UTF-8"
	}
	return ""
}
