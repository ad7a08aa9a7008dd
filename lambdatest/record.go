package lambdatest

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// Invocation is one request to a function, as received and as answered. It
// is passed to the [Handler] and recorded for [Server.Invocations] (also
// when the request was answered with an error or faulted, so that tests can
// count attempts).
type Invocation struct {
	// Function is the bare function name, whatever form the caller used.
	Function string
	// Qualifier is the version or alias, from the function name or the
	// Qualifier query parameter; empty when none was given.
	Qualifier string
	// InvocationType is the X-Amz-Invocation-Type header, RequestResponse
	// when it was absent (Lambda's default).
	InvocationType types.InvocationType
	// Payload is the request body; nil when empty, and when the body was
	// refused as too large. It must not be modified.
	Payload []byte
	// ClientContext is the decoded X-Amz-Client-Context header (JSON). As
	// on Lambda, handlers see it for synchronous invocations only; the
	// record keeps it for every type.
	ClientContext string
	// RequestID is the id generated for the request and sent back as the
	// x-amzn-RequestId header.
	RequestID string
	// Received is when the request arrived (see [WithClock]).
	Received time.Time

	// Status is the HTTP status answered (or being answered, for the value
	// passed to a handler: 0); 0 in the record means no answer was sent:
	// the connection was dropped, or the caller or server went away first.
	Status int
	// ErrorCode is the error code answered in X-Amzn-ErrorType; empty for
	// 200, 202 and 204 answers, function errors included.
	ErrorCode string
	// Faulted reports that a [Fault] queued with [Server.Fail] applied.
	Faulted bool
	// Err is the error the handler returned (or its panic); for an Event
	// invocation the caller never sees it.
	Err error
}

// record stores inv and wakes the waiters.
func (s *Server) record(inv Invocation) {
	s.mu.Lock()
	s.counts[inv.Function]++
	s.total++
	if n := s.cfg.recordLimit; n >= 0 {
		s.records = append(s.records, inv)
		if n > 0 && len(s.records) >= 2*n {
			// Keep the newest n; amortised O(1) per record.
			m := copy(s.records, s.records[len(s.records)-n:])
			clear(s.records[m:])
			s.records = s.records[:m]
		}
	}
	s.signalLocked()
	s.mu.Unlock()
}

// signalLocked wakes every waiter. Call with s.mu held.
func (s *Server) signalLocked() {
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

// Invocations returns a copy of the recorded invocations of function (any
// name form), oldest first; the empty name returns those of every function.
// With [WithRecordLimit] only the most recent are kept.
func (s *Server) Invocations(function string) []Invocation {
	name := ""
	if function != "" {
		name = normalizeName(function)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	recs := s.records
	if n := s.cfg.recordLimit; n > 0 && len(recs) > n {
		recs = recs[len(recs)-n:]
	}
	var out []Invocation
	if name == "" {
		return append(out, recs...)
	}
	for _, inv := range recs {
		if inv.Function == name {
			out = append(out, inv)
		}
	}
	return out
}

// Count returns how many requests to function (any name form) have been
// recorded since the start or the last [Server.Reset], answered with an
// error or not; the empty name counts every function. It stays exact when
// [WithRecordLimit] drops old records.
func (s *Server) Count(function string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if function == "" {
		return s.total
	}
	return s.counts[normalizeName(function)]
}

// Reset forgets every recorded invocation and zeroes the counts. Handlers
// and queued faults stay.
func (s *Server) Reset() {
	s.mu.Lock()
	clear(s.records)
	s.records = s.records[:0]
	clear(s.counts)
	s.total = 0
	s.signalLocked()
	s.mu.Unlock()
}

// WaitFor blocks until cond reports true, calling it now and again after
// every recorded invocation, every use of a limited fault (so that
// [Server.PendingFaults] can be waited on) and every [Server.Reset]. It returns nil once cond holds, an
// error wrapping ctx's error when ctx is done first (give ctx a deadline),
// or [ErrClosed] if the server is closed and cond does not hold. cond is
// called without locks held, so it may call the server's methods.
func (s *Server) WaitFor(ctx context.Context, cond func(*Server) bool) error {
	for {
		s.mu.Lock()
		if s.changed == nil {
			s.changed = make(chan struct{})
		}
		changed, closed := s.changed, s.done
		s.mu.Unlock()

		// changed was taken before cond runs, so no change is missed.
		if cond(s) {
			return nil
		}
		if closed {
			return ErrClosed
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("lambdatest: condition not met: %w", context.Cause(ctx))
		}
	}
}

// WaitCount blocks until at least n requests to function (any name form;
// empty for every function) have been recorded. It returns as
// [Server.WaitFor] does.
func (s *Server) WaitCount(ctx context.Context, function string, n int) error {
	return s.WaitFor(ctx, func(s *Server) bool { return s.Count(function) >= n })
}
