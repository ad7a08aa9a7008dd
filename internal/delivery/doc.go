// Package delivery sends queued events to Lambda: the lease loop that keeps
// the in-flight limit filled, the workers that invoke with InvocationType
// Event, the ack batching that rides on the next lease transaction, the
// in-flight limit that throttling lowers (AIMD) and the rate limit, the
// per-call invoke deadline, the pause and probe when Lambda cannot be
// reached, and the chain of dead-letter sinks.
//
// The root package's Run builds a Config from its options and calls Run;
// its Check calls Check. Everything delivery needs comes in through Config:
// the queue, the key window, the shared-key hooks and the counters the
// root's Stats reads are small interfaces and types declared here, so that
// delivery never sees a *Dispatcher and what it depends on is written down
// in one place.
package delivery
