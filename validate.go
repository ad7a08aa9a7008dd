package dispatcher

import (
	"fmt"
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
func ValidateEvent(e Event) error { return validateEvent(0, &e, limits{}) }

// validateEvent returns nil or a *ValidationError (never a typed nil inside
// a non-nil error) with Index set to index and Field one of "Function",
// "Qualifier", "Payload", "Key".
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
	return nil
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
