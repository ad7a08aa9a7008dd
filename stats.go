package dispatcher

import "github.com/lambdadispatch/dispatcher/deadletter"

// Stats is a snapshot of the queue and of what happened since Open.
type Stats struct {
	Ready     int64 // due now, waiting for a worker
	Scheduled int64 // waiting for a retry's backoff to pass
	Leased    int64 // with a worker now
	Bytes     int64 // payloads plus per-event metadata held (what WithMaxBytes caps)
	Corrupt   int64 // unreadable records set aside, never delivered

	// Since Open.
	Enqueued     uint64
	Delivered    uint64
	Retried      uint64
	DeadLettered uint64
	Recovered    uint64 // leases of a dead process, or expired ones, returned to the queue
	Cancelled    uint64 // events cancelled (Events().Cancel)
	Evicted      uint64 // events evicted under WithFullPolicy(DropOldest), each in the ledger
	Commits      uint64 // write transactions: Enqueued/Commits is the group-commit factor

	// DeadLetteredBy splits DeadLettered by reason.
	DeadLetteredBy map[deadletter.Reason]uint64
	// Throttled counts the times throttling lowered an in-flight limit: a
	// function's, or the account's (InFlightLimit).
	Throttled uint64
	// InFlightLimit is the most invocations in flight across all
	// functions: WithConcurrency, less what throttles naming the
	// account's limit took. 0 before the first Run.
	InFlightLimit int
	// Paused is true while dispatch waits for Lambda to be reachable again.
	Paused bool
	// Running is true while Run is running.
	Running bool

	// DuplicatesRefused counts events refused at enqueue because their key
	// was held (their Receipt says Duplicate); DuplicatesSkipped, events
	// acked without an invoke because their key was already marked
	// delivered. The metrics' Deduplicated counts both, by where.
	DuplicatesRefused, DuplicatesSkipped uint64
	// Deprecated: Duplicates is DuplicatesRefused, under its old name.
	Duplicates uint64
	// Deprecated: Deduplicated is DuplicatesSkipped, under its old name.
	Deduplicated uint64
	// Keys is the number of deduplication keys held; KeysSwept and
	// KeysEvicted count those removed since Open as expired or past
	// WithMaxKeys.
	Keys, KeysSwept, KeysEvicted uint64

	// Shared is about the shared key window (WithSharedKeys); zero without
	// one.
	Shared SharedStats

	// Functions has the figures of each function, as Functions().All
	// gives them; nil after Close.
	Functions []FunctionStats
}

// SharedStats counts the dispatcher's traffic with a shared key window,
// since Open.
type SharedStats struct {
	Claims      uint64 // claim requests: one conditional write each
	Waits       uint64 // claims that waited for another dispatcher's commit
	Lost        uint64 // claims taken over before their confirm: events removed as duplicates
	Unconfirmed int    // events committed whose claim is not yet confirmed
	Unavailable uint64 // requests that found the window unreachable or throttled
	// MarksSkipped counts outcomes not recorded in the window because it
	// had just failed: delivery went on from the local index.
	MarksSkipped uint64
}

// Queued is the number of events held in every state.
func (s Stats) Queued() int64 { return s.Ready + s.Scheduled + s.Leased }

// Stats returns counts by state and totals since Open. After Close it
// returns the totals and zero counts.
func (d *Dispatcher) Stats() Stats {
	s, err := d.st.Stats()
	st := Stats{
		Enqueued: s.Enqueued, Delivered: s.Acked, Retried: s.Rescheduled,
		Recovered: s.Recovered, Commits: s.Commits, Cancelled: s.Cancelled, Evicted: s.Evicted,
		Throttled: d.counts.Throttled.Load(), InFlightLimit: int(d.counts.InFlightLimit.Load()), Paused: d.counts.Paused.Load(), DeadLetteredBy: d.counts.DeadLetteredBy(),
	}
	d.runMu.Lock()
	st.Running = d.runStop != nil
	d.runMu.Unlock()
	st.DuplicatesRefused, st.DuplicatesSkipped = d.duplicates.Load(), d.counts.Deduplicated.Load()
	st.Duplicates, st.Deduplicated = st.DuplicatesRefused, st.DuplicatesSkipped
	st.KeysSwept, st.KeysEvicted = d.keysSwept.Load(), d.keysEvicted.Load()
	if n, err := d.keys.Len(); err == nil {
		st.Keys = uint64(n)
	}
	st.Shared = d.sharedStats()
	st.Functions, _ = d.Functions().All()
	for _, n := range st.DeadLetteredBy {
		st.DeadLettered += n // from the same counts, so the two always agree
	}
	if err != nil {
		return st
	}
	st.Ready, st.Scheduled, st.Leased, st.Bytes, st.Corrupt = s.Ready, s.Scheduled, s.Leased, s.Bytes, s.Corrupt
	return st
}
