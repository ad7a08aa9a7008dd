package delivery

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher/store"
)

func events(function string, seqs ...uint64) []store.Event {
	evs := make([]store.Event, len(seqs))
	for i, s := range seqs {
		evs[i] = store.Event{Seq: s, Function: function}
	}
	return evs
}

// received takes what is waiting in work without blocking.
func received(work chan job) []job {
	var js []job
	for {
		select {
		case j := <-work:
			js = append(js, j)
		default:
			return js
		}
	}
}

func TestAdmitRoundRobinUnderEachLimit(t *testing.T) {
	t.Parallel()
	cfg := &Config{Concurrency: 4, Counters: new(Counters), Limits: map[string]Limit{"slow": {MaxInFlight: 1}}}
	work := make(chan job, 8)
	f := newFunctions(cfg, work)

	// A backlog of slow first, then fast: fast is not held behind it.
	f.push(events("slow", 1, 2, 3, 4, 5, 6))
	f.push(events("fast", 7, 8, 9))
	got := received(work)
	var seqs []uint64
	for _, j := range got {
		seqs = append(seqs, j.ev.Seq)
	}
	require.Equal(t, []uint64{1, 7, 8, 9}, seqs, "slow at its limit of one, fast up to its own")
	require.Equal(t, 9, f.heldNow())
	require.Equal(t, heldLimits*1-6, f.quota("slow"), "heldLimits limits held at most: slow is over")
	require.Equal(t, heldLimits*4-3, f.quota("fast"))
	require.Equal(t, heldLimits*4, f.quota("new"), "a function not seen yet gets heldLimits default limits")

	f.finish(got[0].fn) // slow's one invocation ends: the next goes
	next := received(work)
	require.Len(t, next, 1)
	require.Equal(t, uint64(2), next[0].ev.Seq, "first in, first out within a function")
	require.Equal(t, int64(1), cfg.Counters.function("slow").InFlight.Load())
	require.Equal(t, int64(3), cfg.Counters.function("fast").InFlight.Load())

	left := f.drain()
	require.Len(t, left, 4, "slow's four still waiting")
	f.finish(next[0].fn)
	require.Empty(t, received(work), "nothing admitted after drain")
}

func TestAdmitNeverOverfillsWork(t *testing.T) {
	t.Parallel()
	cfg := &Config{Concurrency: 2, Counters: new(Counters)}
	work := make(chan job, 4)
	f := newFunctions(cfg, work)
	for i := range 10 {
		f.push(events(string(rune('a'+i)), uint64(i+1)))
	}
	require.Len(t, received(work), 4, "the channel's room, no more: admit never blocks")
}

func TestAdmitPacesByRate(t *testing.T) {
	t.Parallel()
	// One a minute: the first goes at once, the second waits its turn
	// while another function's events are not held by it.
	cfg := &Config{Concurrency: 4, Counters: new(Counters), Limits: map[string]Limit{"paced": {Rate: 1.0 / 60}}}
	work := make(chan job, 8)
	f := newFunctions(cfg, work)
	f.push(events("paced", 1, 2))
	f.push(events("other", 3))
	var seqs []uint64
	for _, j := range received(work) {
		seqs = append(seqs, j.ev.Seq)
	}
	require.Equal(t, []uint64{1, 3}, seqs)
	require.Len(t, f.drain(), 1)
}

func TestAccountWide(t *testing.T) {
	t.Parallel()
	require.True(t, accountWide("ConcurrentInvocationLimitExceeded"))
	require.True(t, accountWide("CallerRateLimitExceeded"))
	for _, r := range []string{"", "ReservedFunctionConcurrentInvocationLimitExceeded", "FunctionInvocationRateLimitExceeded", "ReservedFunctionInvocationRateLimitExceeded", "SomethingNew"} {
		require.False(t, accountWide(r), r)
	}
}
