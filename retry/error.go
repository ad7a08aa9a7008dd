package retry

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// InvokeError is a classified Invoke failure with the details worth logging
// and keeping with a dead letter. [FromError] builds one from an SDK error;
// Err keeps the original for errors.Is and errors.As.
//
// An *InvokeError anywhere in an error chain is trusted by [Classify] and
// [FromError]: a fake Lambda client in tests can return
// &retry.InvokeError{Class: retry.Permanent, ...} directly.
type InvokeError struct {
	// Class is the outcome class, see [Classify].
	Class Class
	// Code is Lambda's error code, such as "TooManyRequestsException"; empty
	// for transport errors.
	Code string
	// Message is Lambda's error message, or for an error without a code the
	// text of the original error, with credentials it quotes removed by
	// [Redact] when [FromError] builds it.
	Message string
	// StatusCode is the HTTP status, 0 when no response was received.
	StatusCode int
	// RequestID is Lambda's request id (x-amzn-RequestId), from the SDK's
	// ServiceRequestID; empty when none.
	RequestID string
	// RetryAfter is the server's Retry-After: from
	// TooManyRequestsException.RetryAfterSeconds, or else the Retry-After
	// header of the response, when it is a number of seconds. 0 when absent.
	RetryAfter time.Duration
	// Reason is the throttling reason of a TooManyRequestsException, such as
	// "ConcurrentInvocationLimitExceeded"; empty when absent.
	Reason string
	// Err is the original error. Its own text is not redacted: log the
	// InvokeError, not Err.
	Err error
}

// Error returns a one-line description for logs, with credentials the
// message quotes removed by [Redact] (even from an InvokeError built by
// hand), such as
//
//	retry: throttled: TooManyRequestsException (HTTP 429, request 5f1b…, reason ConcurrentInvocationLimitExceeded, retry after 3s): Rate Exceeded.
//	retry: unreachable: operation error Lambda: Invoke, … connect: connection refused
func (e *InvokeError) Error() string {
	var b strings.Builder
	b.WriteString("retry: ")
	b.WriteString(e.Class.String())
	b.WriteString(": ")
	if e.Code == "" {
		b.WriteString(Redact(e.message()))
		return b.String()
	}
	b.WriteString(e.Code)
	var details []string
	if e.StatusCode != 0 {
		details = append(details, "HTTP "+strconv.Itoa(e.StatusCode))
	}
	if e.RequestID != "" {
		details = append(details, "request "+e.RequestID)
	}
	if e.Reason != "" {
		details = append(details, "reason "+e.Reason)
	}
	if e.RetryAfter > 0 {
		details = append(details, "retry after "+e.RetryAfter.String())
	}
	if len(details) > 0 {
		b.WriteString(" (")
		b.WriteString(strings.Join(details, ", "))
		b.WriteString(")")
	}
	if msg := e.message(); msg != "" {
		b.WriteString(": ")
		b.WriteString(Redact(msg))
	}
	return b.String()
}

// message is Message, or the original error's text when Message is empty
// and there is no code to show.
func (e *InvokeError) message() string {
	if e.Message != "" || e.Code != "" {
		return e.Message
	}
	if e.Err != nil {
		return e.Err.Error()
	}
	return ""
}

// Unwrap returns the original error.
func (e *InvokeError) Unwrap() error { return e.Err }

// FromError classifies err with [Classify] and extracts what the SDK error
// carries: code and message (interface{ ErrorCode() string; ErrorMessage()
// string }), HTTP status (interface{ HTTPStatusCode() int }), request id
// (interface{ ServiceRequestID() string }), and for a
// *types.TooManyRequestsException its RetryAfterSeconds and Reason. The
// message is passed through [Redact], so that whoever logs or keeps it
// never keeps a credential AWS quoted back. It returns
// nil for nil, and the *InvokeError itself when err already is or wraps one
// (a copy with its message redacted, if the message quoted a credential:
// the caller's value is left as it was).
func FromError(err error) *InvokeError {
	if err == nil {
		return nil
	}
	var ie *InvokeError
	if errors.As(err, &ie) {
		if m := Redact(ie.Message); m != ie.Message {
			c := *ie
			c.Message = m
			return &c
		}
		return ie
	}
	ie = &InvokeError{Class: Classify(err), Err: err}

	var api interface {
		ErrorCode() string
		ErrorMessage() string
	}
	if errors.As(err, &api) {
		ie.Code = api.ErrorCode()
		ie.Message = api.ErrorMessage()
	} else {
		ie.Message = err.Error()
	}
	ie.Message = Redact(ie.Message)
	ie.StatusCode = statusCode(err)
	var rid interface{ ServiceRequestID() string }
	if errors.As(err, &rid) {
		ie.RequestID = rid.ServiceRequestID()
	}

	var tooMany *types.TooManyRequestsException
	if errors.As(err, &tooMany) {
		ie.Reason = string(tooMany.Reason)
		if tooMany.RetryAfterSeconds != nil {
			ie.RetryAfter = parseRetryAfter(*tooMany.RetryAfterSeconds)
		}
	}
	if ie.RetryAfter == 0 {
		// An unmodelled 429 or a 503 can carry the header too. The raw
		// response is reachable only through smithy's concrete type.
		var resp *smithyhttp.ResponseError
		if errors.As(err, &resp) && resp.Response != nil && resp.Response.Response != nil {
			ie.RetryAfter = parseRetryAfter(resp.Response.Header.Get("Retry-After"))
		}
	}
	return ie
}

// parseRetryAfter parses a Retry-After value given in seconds ("3", or
// "1.5"). It returns 0 for an empty, negative or unparsable value, and for
// the HTTP-date form, which Lambda does not send and which would need a
// clock to turn into a duration.
func parseRetryAfter(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 || n > int64(math.MaxInt64/time.Second) {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || !(f > 0) || f > float64(math.MaxInt64/time.Second) {
		return 0
	}
	return time.Duration(f * float64(time.Second))
}
