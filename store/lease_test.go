package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func countBy(evs []Event) map[string]int {
	out := map[string]int{}
	for _, e := range evs {
		out[e.Function]++
	}
	return out
}

// backlog is the number of events of the backlogs TestFairLease and
// TestLeaseCost lease past. 2,000 show what 20,000 did: a lease that
// walked a backlog, or took it first in first out, would take 64 of them
// or move the cursor 2,000 times, and these tests count events and moves,
// not time. DISPATCH_SOAK=1 runs 20,000.
func backlog() int {
	if soak() {
		return 20000
	}
	return 2000
}

func TestFairLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("NewerFunctionIsNotStuckBehindABacklog", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		for range backlog() / 1000 {
			enqueue(t, b.st, newEvents(1000, "A")...)
		}
		bSeqs := enqueue(t, b.st, newEvents(10, "B")...)
		got, err := b.st.Lease(ctx, 64, time.Minute)
		require.NoError(t, err)
		require.Len(t, got, 64)
		var fromB []uint64
		var fromA []Event
		for _, e := range got {
			if e.Function == "B" {
				fromB = append(fromB, e.Seq)
				require.Equal(t, fmt.Sprintf(`{"n":%d}`, len(fromB)-1), string(e.Payload))
			} else {
				fromA = append(fromA, e)
			}
		}
		require.ElementsMatch(t, bSeqs, fromB, "every event of B")
		require.Len(t, fromA, 54)
		for i, e := range fromA {
			require.Equal(t, uint64(i+1), e.Seq, "A's oldest, first in first out")
		}
	})

	t.Run("TurnsInTheResult", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		enqueue(t, b.st, newEvents(5, "A")...)
		enqueue(t, b.st, newEvents(2, "B")...)
		got, err := b.st.Lease(ctx, 7, time.Minute)
		require.NoError(t, err)
		var fns string
		for _, e := range got {
			fns += e.Function
		}
		require.Equal(t, "ABABAAA", fns, "one of each in turn, each function in its order")
	})

	t.Run("PassesShareWhatIsLeft", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		enqueue(t, b.st, newEvents(100, "A")...)
		enqueue(t, b.st, newEvents(2, "B")...)
		enqueue(t, b.st, newEvents(100, "C")...)
		got, err := b.st.Lease(ctx, 10, time.Minute)
		require.NoError(t, err)
		// A pass of 3 each (B has 2), then one each for A and C.
		require.Equal(t, map[string]int{"A": 4, "B": 2, "C": 4}, countBy(got))
	})

	t.Run("StartRotates", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		for _, fn := range []string{"A", "B", "C"} {
			enqueue(t, b.st, newEvents(10, fn)...)
		}
		var order string
		for range 7 {
			got, err := b.st.Lease(ctx, 1, time.Minute)
			require.NoError(t, err)
			require.Len(t, got, 1)
			order += got[0].Function
		}
		require.Equal(t, "ABCABCA", order)
	})

	t.Run("OnlyDueEventsInDueOrder", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		now := b.clock.Now()
		seqs := enqueue(t, b.st,
			NewEvent{Function: "A", Due: now.Add(time.Hour)},
			NewEvent{Function: "A", Due: now.Add(time.Minute)},
			NewEvent{Function: "A"},
			NewEvent{Function: "B", Due: now.Add(time.Hour)},
		)
		got, err := b.st.Lease(ctx, 10, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []uint64{seqs[2]}, seqsOf(got))
		b.clock.Add(2 * time.Minute)
		got, err = b.st.Lease(ctx, 10, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []uint64{seqs[1]}, seqsOf(got))
		b.clock.Add(time.Hour)
		got, err = b.st.Lease(ctx, 10, time.Minute)
		require.NoError(t, err)
		require.ElementsMatch(t, []uint64{seqs[0], seqs[3]}, seqsOf(got))
	})

	t.Run("Quota", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		enqueue(t, b.st, newEvents(20, "A")...)
		enqueue(t, b.st, newEvents(20, "B")...)
		enqueue(t, b.st, newEvents(20, "C")...)
		asked := map[string]int{}
		quota := func(fn string) int {
			asked[fn]++
			return map[string]int{"A": 2, "B": 0, "C": 100}[fn]
		}
		got, _, err := b.st.AckAndLease(ctx, nil, 12, time.Minute, quota, nil)
		require.NoError(t, err)
		require.Equal(t, map[string]int{"A": 2, "C": 10}, countBy(got), "A capped at 2, B skipped, C takes the rest")
		require.Equal(t, map[string]int{"A": 1, "B": 1, "C": 1}, asked, "asked once each per lease")

		none := func(string) int { return -1 }
		got, _, err = b.st.AckAndLease(ctx, nil, 12, time.Minute, none, nil)
		require.NoError(t, err)
		require.Empty(t, got)
		require.Equal(t, int64(12), stats(t, b.st).Leased)
	})
}

// TestLeaseCost counts cursor moves: a lease never walks a function's
// events that are not due, nor one function's backlog to reach another's.
func TestLeaseCost(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	later := b.clock.Now().Add(time.Hour)
	batch := make([]NewEvent, 1000)
	for i := range batch {
		batch[i] = NewEvent{Function: "A", Due: later}
	}
	for range backlog() / 1000 {
		enqueue(t, b.st, batch...)
	}
	enqueue(t, b.st, newEvents(backlog(), "B")...)
	enqueue(t, b.st, newEvents(3, "C")...)

	var got []Event
	var steps int
	require.NoError(t, b.st.do(context.Background(), func(tx *txn) error {
		l := tx.newLeaser(16)
		l.collect(16, nil)
		steps = l.steps
		var err error
		got, err = l.apply(time.Minute)
		return err
	}))
	require.Equal(t, map[string]int{"B": 13, "C": 3}, countBy(got))
	// Finding the functions and a pass or two over B and C: a few seeks
	// each, and a step per event taken.
	require.Less(t, steps, 40, "cursor moves")
}

// TestLeaseSkipsIndexKeyOfLeasedEvent: an index key left behind for an
// event already leased (damage, or a bug) is dropped, not leased a second
// time: one event is never handed out twice, nor its lease counted twice.
func TestLeaseSkipsIndexKeyOfLeasedEvent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, Options{})
	seqs := enqueue(t, b.st, newEvents(1, "fn")...)
	got, err := b.st.Lease(ctx, 5, time.Minute)
	require.NoError(t, err)
	require.Len(t, got, 1)
	// No require inside: the callback runs on the store's writer.
	require.NoError(t, b.st.do(ctx, func(tx *txn) error {
		f := fnEntry(tx, "fn")
		if f == nil {
			return errors.New("no registry record for fn")
		}
		return tx.fnready.Put(fnReadyKey(f.id, 0, got[0].Due.UnixNano(), seqs[0]), []byte{})
	}))
	again, err := b.st.Lease(ctx, 5, time.Minute)
	require.NoError(t, err)
	require.Empty(t, again, "not leased twice")
	st := stats(t, b.st)
	require.Equal(t, int64(1), st.Leased)
	require.Equal(t, int64(1), st.Events)
	require.NoError(t, b.st.Ack(ctx, seqs[0]))
	st = stats(t, b.st)
	require.Zero(t, st.Leased)
	require.Zero(t, st.Events)
}
