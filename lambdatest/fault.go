package lambdatest

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Fault is a failure of the Lambda service scripted with [Server.Fail]: an
// error answer, added latency, or a connection closed without an answer.
// The zero value answers normally.
type Fault struct {
	// Times is how many requests the fault applies to; 0 means every request
	// until [Server.ClearFaults], so faults queued after it never apply.
	Times int

	// Status is the HTTP status of the error answer. When Status and Code
	// are both zero the request is answered normally (after Latency).
	// Without a Code, one typical of the status is used
	// (429 TooManyRequestsException, 5xx ServiceException, ...); without a
	// Status, the one Lambda uses for the Code, or 500.
	Status int

	// Code is the error code, sent in the X-Amzn-ErrorType header; the SDK
	// decodes it into the matching type of service/lambda/types, or into a
	// *smithy.GenericAPIError for a code Lambda's model does not name.
	Code string

	// Message is the error message; empty means a default for the code.
	Message string

	// Reason is the Reason field of the body (see types.ThrottleReason for
	// TooManyRequestsException); empty leaves it out.
	Reason string

	// RetryAfter, when positive, is sent as a Retry-After header in whole
	// seconds, rounded up; the SDK reads it into
	// TooManyRequestsException.RetryAfterSeconds.
	RetryAfter time.Duration

	// Latency delays the answer (or the drop) by this long. If the caller
	// goes away or the server goes offline first, the wait ends and the
	// request is recorded unanswered (Status 0).
	Latency time.Duration

	// Drop closes the connection without answering, once the request has
	// been read; the caller gets a transport error.
	Drop bool
}

// Throttle returns a fault that answers the next times requests (0: every
// request) with 429 TooManyRequestsException, reason
// ReservedFunctionConcurrentInvocationLimitExceeded, and a Retry-After
// header when retryAfter is positive.
func Throttle(times int, retryAfter time.Duration) Fault {
	return Fault{
		Times:      times,
		Status:     http.StatusTooManyRequests,
		Code:       "TooManyRequestsException",
		Message:    "Rate Exceeded.",
		Reason:     "ReservedFunctionConcurrentInvocationLimitExceeded",
		RetryAfter: retryAfter,
	}
}

// ServerError returns a fault that answers the next times requests (0: every
// request) with 500 ServiceException.
func ServerError(times int) Fault {
	return Fault{Times: times, Status: http.StatusInternalServerError, Code: "ServiceException"}
}

// Error returns a fault that answers the next times requests (0: every
// request) with the given status and error code, for example
// Error(1, 502, "EC2ThrottledException").
func Error(times, status int, code string) Fault {
	return Fault{Times: times, Status: status, Code: code}
}

// Latency returns a fault that delays every answer by d until
// [Server.ClearFaults]; set Times on the result to limit it.
func Latency(d time.Duration) Fault {
	return Fault{Latency: d}
}

// DropConnection returns a fault that closes the connection without
// answering the next times requests (0: every request).
func DropConnection(times int) Fault {
	return Fault{Times: times, Drop: true}
}

// Fail queues f for the next requests to function (any name form; the empty
// name means every function, consulted after the function's own queue).
// Faults of a function apply in the order queued, each to f.Times requests.
// Faulted requests are recorded with [Invocation.Faulted] set. Fail panics
// if f.Times is negative, f.Status is set but not an error status (300 or
// more), or function is not a valid function name.
func (s *Server) Fail(function string, f Fault) {
	name := ""
	if function != "" {
		name = mustFunctionName("Fail", function)
	}
	q := newQueuedFault(f)
	s.mu.Lock()
	fq := s.faults[name]
	if fq == nil {
		fq = &faultQueue{}
		s.faults[name] = fq
	}
	fq.items = append(fq.items, q)
	s.nfaults++
	s.mu.Unlock()
}

// ClearFaults drops the faults queued for function; the empty name drops
// every queued fault, for every function.
func (s *Server) ClearFaults(function string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if function == "" {
		s.faults = make(map[string]*faultQueue)
		s.nfaults = 0
		return
	}
	name := normalizeName(function)
	if fq := s.faults[name]; fq != nil {
		s.nfaults -= len(fq.items)
		delete(s.faults, name)
	}
}

// faultQueue is the ordered faults of one function.
type faultQueue struct {
	items []*queuedFault
}

// queuedFault is a validated fault with its answer prepared.
type queuedFault struct {
	Fault
	left       int      // requests left; 0 means forever
	body       []byte   // error body, nil when the fault does not answer an error
	retryAfter []string // Retry-After header value, nil for none
	code       []string // X-Amzn-ErrorType header value
}

func newQueuedFault(f Fault) *queuedFault {
	if f.Times < 0 {
		panic(fmt.Sprintf("lambdatest: Fail: negative Fault.Times %d", f.Times))
	}
	if f.Status != 0 && (f.Status < 300 || f.Status > 599) {
		panic(fmt.Sprintf("lambdatest: Fail: Fault.Status %d is not an error status", f.Status))
	}
	q := &queuedFault{Fault: f, left: f.Times}
	if f.Status == 0 && f.Code == "" {
		return q
	}
	if q.Code == "" {
		q.Code = codeForStatus(q.Status)
	}
	if q.Status == 0 {
		q.Status = statusForCode(q.Code)
	}
	if q.Message == "" {
		q.Message = defaultMessage(q.Code)
	}
	q.body = errorBody(q.Status, q.Message, q.Reason)
	q.code = []string{q.Code}
	if f.RetryAfter > 0 {
		secs := int64(math.Ceil(f.RetryAfter.Seconds()))
		q.retryAfter = []string{strconv.FormatInt(secs, 10)}
	}
	return q
}

// takeFault removes one use of the next fault for function name, looking in
// its own queue then in the queue for every function. Call with s.mu held.
func (s *Server) takeFaultLocked(name string) *queuedFault {
	if s.nfaults == 0 {
		return nil
	}
	if f := s.popLocked(name); f != nil {
		return f
	}
	return s.popLocked("")
}

func (s *Server) popLocked(key string) *queuedFault {
	fq := s.faults[key]
	if fq == nil || len(fq.items) == 0 {
		return nil
	}
	f := fq.items[0]
	if f.left == 0 { // forever
		return f
	}
	f.left--
	s.signalLocked() // PendingFaults changes
	if f.left == 0 {
		fq.items[0] = nil
		fq.items = fq.items[1:]
		s.nfaults--
		if len(fq.items) == 0 {
			delete(s.faults, key)
		}
	}
	return f
}

// PendingFaults returns how many faults are queued for function and not yet
// used up (the empty name counts the queue that applies to every function).
// A fault with Times 0 counts as one until cleared.
func (s *Server) PendingFaults(function string) int {
	name := ""
	if function != "" {
		name = normalizeName(function)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if fq := s.faults[name]; fq != nil {
		return len(fq.items)
	}
	return 0
}
