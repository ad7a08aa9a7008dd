package deadletter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/lambdadispatch/dispatcher/retry"
)

// RecordVersion is the version of Lambda's on-failure destination record
// that [Record] follows.
const RecordVersion = "1.0"

// Record is a dead letter in the form of Lambda's on-failure destination
// record for asynchronous invocations, so that a consumer written for
// Lambda's own failures reads ours unchanged. [Letter.Record] says how each
// field is filled in.
//
// A Record encodes the timestamp as Lambda does, in UTC with exactly three
// digits of milliseconds ("2019-11-14T18:16:05.568Z"); json.Unmarshal reads
// a record back into a Record.
type Record struct {
	Version         string          `json:"version"`
	Timestamp       time.Time       `json:"timestamp"`
	RequestContext  RequestContext  `json:"requestContext"`
	RequestPayload  json.RawMessage `json:"requestPayload,omitempty"`
	ResponseContext ResponseContext `json:"responseContext"`
	ResponsePayload json.RawMessage `json:"responsePayload,omitempty"`
}

// RequestContext is the record's "requestContext": the invocation that
// failed.
type RequestContext struct {
	RequestID              string `json:"requestId"`
	FunctionArn            string `json:"functionArn"`
	Condition              string `json:"condition"`
	ApproximateInvokeCount int    `json:"approximateInvokeCount"`
}

// ResponseContext is the record's "responseContext": what the last attempt
// was answered.
type ResponseContext struct {
	StatusCode      int    `json:"statusCode"`
	ExecutedVersion string `json:"executedVersion,omitempty"`
	FunctionError   string `json:"functionError,omitempty"`
}

// The conditions of Lambda's record that the dispatcher's reasons map to:
// see retry.Reason's Condition.
const (
	ConditionRetriesExhausted = retry.ConditionRetriesExhausted
	ConditionEventAgeExceeded = retry.ConditionEventAgeExceeded
	ConditionRejected         = retry.ConditionRejected
)

// Record returns l in the form of Lambda's on-failure destination record:
//
//   - version is [RecordVersion], "1.0".
//   - timestamp is DeadLettered, in UTC, truncated to the millisecond.
//   - requestContext.requestId is LastError.RequestID, Lambda's id for the
//     last attempt; when there is none (no attempt was made, or the
//     transport failed) it is the letter's ID, so that the field always
//     names the event. Such an id is the dispatcher's sequence number
//     ("42"), not a Lambda request id.
//   - requestContext.functionArn is Function, with ":"+Qualifier appended
//     when Qualifier is set and Function carries no qualifier of its own.
//     It holds what the event named, which may be a bare function name
//     ("my-function:prod") rather than an ARN.
//   - requestContext.condition is Reason.Condition().
//   - requestContext.approximateInvokeCount is Attempts, exactly.
//   - requestPayload is Payload when it is a JSON text, as that JSON (not
//     base64); it is left out when Payload is empty or not JSON.
//   - responseContext.statusCode is LastError.StatusCode (0 when no attempt
//     was made or the transport failed).
//   - responseContext.executedVersion is left out: the dispatcher does not
//     learn it.
//   - responseContext.functionError is LastError.Code. Unlike Lambda's
//     "Handled" or "Unhandled", it is the error code of the Lambda service
//     ("TooManyRequestsException"), since the dispatcher dead-letters
//     events whose invocation failed, not events whose function did; it is
//     left out when the code is empty.
//   - responsePayload is {"errorMessage": LastError.Message, "errorType":
//     LastError.Code} when LastError is set, and left out when it is zero.
//
// The record shares no memory with l.
func (l Letter) Record() Record {
	r := Record{
		Version:   RecordVersion,
		Timestamp: l.DeadLettered.UTC().Truncate(time.Millisecond),
		RequestContext: RequestContext{
			RequestID:              l.LastError.RequestID,
			FunctionArn:            functionArn(l.Function, l.Qualifier),
			Condition:              l.Reason.Condition(),
			ApproximateInvokeCount: l.Attempts,
		},
		ResponseContext: ResponseContext{
			StatusCode:    l.LastError.StatusCode,
			FunctionError: l.LastError.Code,
		},
	}
	if r.RequestContext.RequestID == "" {
		r.RequestContext.RequestID = l.ID
	}
	if json.Valid(l.Payload) { // false for an empty payload
		r.RequestPayload = bytes.Clone(l.Payload)
	}
	if !l.LastError.IsZero() {
		// Marshaling two strings cannot fail: invalid UTF-8 becomes U+FFFD.
		r.ResponsePayload, _ = json.Marshal(struct {
			ErrorMessage string `json:"errorMessage"`
			ErrorType    string `json:"errorType"`
		}{l.LastError.Message, l.LastError.Code})
	}
	return r
}

// MarshalRecord returns the JSON of l.Record().
func (l Letter) MarshalRecord() ([]byte, error) {
	return json.Marshal(l.Record())
}

// recordTimeLayout is the timestamp layout of Lambda's records.
const recordTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// MarshalJSON encodes r with its timestamp as Lambda writes it: UTC, three
// digits of milliseconds. It fails, as time.Time's MarshalJSON does, for a
// year outside 0 to 9999.
func (r Record) MarshalJSON() ([]byte, error) {
	t := r.Timestamp.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		return nil, fmt.Errorf("deadletter: record timestamp: year %d is outside 0 to 9999", y)
	}
	// Record's fields in Record's order, but for the timestamp.
	return json.Marshal(struct {
		Version         string          `json:"version"`
		Timestamp       string          `json:"timestamp"`
		RequestContext  RequestContext  `json:"requestContext"`
		RequestPayload  json.RawMessage `json:"requestPayload,omitempty"`
		ResponseContext ResponseContext `json:"responseContext"`
		ResponsePayload json.RawMessage `json:"responsePayload,omitempty"`
	}{r.Version, t.Format(recordTimeLayout), r.RequestContext, r.RequestPayload, r.ResponseContext, r.ResponsePayload})
}

// functionArn returns fn qualified with q, unless q is empty or fn already
// carries a qualifier.
func functionArn(fn, q string) string {
	if q == "" || qualified(fn) {
		return fn
	}
	return fn + ":" + q
}

// qualified reports whether fn, in any of the forms Lambda accepts (name,
// partial ARN "123456789012:function:name", or full ARN), ends with a
// version or alias.
func qualified(fn string) bool {
	parts := strings.Split(fn, ":")
	switch {
	case len(parts) >= 7 && parts[0] == "arn" && parts[5] == "function":
		return len(parts) > 7
	case len(parts) >= 3 && parts[1] == "function":
		return len(parts) > 3
	default:
		return len(parts) > 1
	}
}
