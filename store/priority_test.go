package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// lease leases up to n events for a minute, failing the test on error.
func lease(t *testing.T, st *Store, n int) []Event {
	t.Helper()
	got, err := st.Lease(context.Background(), n, time.Minute)
	require.NoError(t, err)
	return got
}

// checkFile checks the closed file at path.
func checkFile(t *testing.T, path string) Report {
	t.Helper()
	rep, err := Check(path)
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
	return rep
}

// TestDueAtEnqueue: an event due later waits, counted as scheduled, until
// the queue's clock reaches its due time; one due in the past is due now.
func TestDueAtEnqueue(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	now := b.st.Now()
	seqs := enqueue(t, b.st,
		NewEvent{Function: "A", Due: now.Add(time.Hour)},
		NewEvent{Function: "A", Due: now.Add(-time.Hour)},
		NewEvent{Function: "B", Due: now.Add(2 * time.Hour)},
	)
	s := stats(t, b.st)
	require.Equal(t, int64(2), s.Scheduled)
	require.Equal(t, int64(1), s.Ready)
	fs := functionsOf(t, b.st)
	require.Equal(t, int64(1), fs["A"].Scheduled)
	require.Equal(t, int64(1), fs["B"].Scheduled)
	ev, err := b.st.Get(seqs[1])
	require.NoError(t, err)
	require.True(t, ev.Due.Equal(now), "a due in the past is now")

	require.Equal(t, []uint64{seqs[1]}, seqsOf(lease(t, b.st, 10)))
	due, ok, err := b.st.NextDue()
	require.NoError(t, err)
	require.True(t, ok)
	require.True(t, due.Equal(now.Add(time.Hour)))

	b.clock.Add(time.Hour - time.Nanosecond)
	require.Empty(t, lease(t, b.st, 10), "a nanosecond early")
	b.clock.Add(time.Nanosecond)
	require.Equal(t, []uint64{seqs[0]}, seqsOf(lease(t, b.st, 10)), "due once the queue's clock is there")
	require.Equal(t, int64(1), stats(t, b.st).Scheduled)
	require.NoError(t, b.st.Ack(context.Background(), seqs[0], seqs[1]))

	// The due time holds across a restart.
	b.reopen(t)
	b.clock.Add(time.Hour)
	require.Equal(t, []uint64{seqs[2]}, seqsOf(lease(t, b.st, 10)))
}

func TestPriority(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("HigherFirstThenFirstInFirstOut", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		prios := []int8{0, -3, 3, 1, 0, 3, -1, 2, 1, -3}
		evs := make([]NewEvent, len(prios))
		for i, p := range prios {
			evs[i] = NewEvent{Function: "A", Priority: p, Payload: fmt.Appendf(nil, `{"i":%d}`, i)}
		}
		seqs := enqueue(t, b.st, evs...)
		var got []Event
		for range prios {
			one := lease(t, b.st, 1)
			require.Len(t, one, 1)
			got = append(got, one[0])
		}
		var order []string
		for _, e := range got {
			order = append(order, fmt.Sprintf("%d:%d", e.Priority, e.Seq-seqs[0]))
		}
		require.Equal(t, []string{"3:2", "3:5", "2:7", "1:3", "1:8", "0:0", "0:4", "-1:6", "-3:1", "-3:9"}, order)
		// One lease of all takes them in the same order.
		b2 := setup(t, Options{})
		enqueue(t, b2.st, evs...)
		all := lease(t, b2.st, 100)
		require.Equal(t, seqsOf(got), seqsOf(all))
	})

	t.Run("DueTimeOnlyWithinAPriority", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		now := b.st.Now()
		seqs := enqueue(t, b.st,
			NewEvent{Function: "A", Due: now.Add(-time.Hour)},
			NewEvent{Function: "A", Priority: 1, Due: now.Add(time.Minute)},
			NewEvent{Function: "A", Priority: 1},
		)
		b.clock.Add(2 * time.Minute)
		// Due order breaks no tie between priorities: priority 1's two
		// events go before the older priority 0 one, the earlier due first.
		require.Equal(t, []uint64{seqs[2], seqs[1], seqs[0]}, seqsOf(lease(t, b.st, 3)))
	})

	t.Run("UrgentScheduledLaterDoNotHoldBackDueOnes", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		now := b.st.Now()
		var later []NewEvent
		for p := int8(MaxPriority); p > 0; p-- {
			for range 50 {
				later = append(later, NewEvent{Function: "A", Priority: p, Due: now.Add(time.Hour)})
			}
		}
		enqueue(t, b.st, later...)
		due := enqueue(t, b.st,
			NewEvent{Function: "A", Priority: -2, Due: now.Add(30 * time.Minute)},
			NewEvent{Function: "A", Priority: -3},
			NewEvent{Function: "A"},
		)
		require.Equal(t, []uint64{due[2], due[1]}, seqsOf(lease(t, b.st, 10)))
		next, ok, err := b.st.NextDue()
		require.NoError(t, err)
		require.True(t, ok)
		require.True(t, next.Equal(now.Add(30*time.Minute)), "NextDue looks at every priority: %v", next)
		s := stats(t, b.st)
		require.Equal(t, int64(151), s.Scheduled)
		require.Equal(t, int64(151), functionsOf(t, b.st)["A"].Scheduled)
	})

	t.Run("TurnsBetweenFunctionsKept", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		urgent := newEvents(100, "A")
		for i := range urgent {
			urgent[i].Priority = MaxPriority
		}
		enqueue(t, b.st, urgent...)
		low := newEvents(10, "B")
		for i := range low {
			low[i].Priority = MinPriority
		}
		enqueue(t, b.st, low...)
		got := lease(t, b.st, 20)
		require.Equal(t, map[string]int{"A": 10, "B": 10}, countBy(got), "a priority is within a function")
		for i, e := range got {
			require.Equal(t, []string{"A", "B"}[i%2], e.Function, "in turns")
		}
	})

	t.Run("OutOfRangeWritesNothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		for _, p := range []int8{MaxPriority + 1, MinPriority - 1, 127, -128} {
			bad := []NewEvent{{Function: "A"}, {Function: "A", Priority: p}}
			_, err := b.st.Enqueue(ctx, bad)
			require.ErrorContains(t, err, fmt.Sprintf("priority %d", p))
			_, err = b.st.EnqueueUnique(ctx, bad, nil)
			require.ErrorContains(t, err, fmt.Sprintf("priority %d", p))
			_, err = b.st.Insert(ctx, func(*Tx) ([]NewEvent, error) { return bad, nil }, nil)
			require.ErrorContains(t, err, fmt.Sprintf("priority %d", p))
		}
		require.Zero(t, stats(t, b.st).Events)
		require.Zero(t, stats(t, b.st).Enqueued)
	})

	t.Run("KeptThroughLeasesRestartsCompactionAndSalvage", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		evs := newEvents(6, "A")
		for i := range evs {
			evs[i].Priority = int8(i%3) - 1 // -1, 0, 1, ...
		}
		seqs := enqueue(t, b.st, evs...)
		want := []uint64{seqs[2], seqs[5], seqs[1], seqs[4], seqs[0], seqs[3]}

		got := lease(t, b.st, 3)
		require.Equal(t, want[:3], seqsOf(got))
		require.Equal(t, int8(1), got[0].Priority)
		require.NoError(t, b.st.Reschedule(ctx, got[0].Seq, b.st.Now(), ErrorInfo{Code: "E"}))
		require.NoError(t, b.st.Release(ctx, true, got[1].Seq))
		// got[2] stays leased across the restart, and comes back.
		b.reopen(t)
		ev, err := b.st.Get(got[0].Seq)
		require.NoError(t, err)
		require.Equal(t, int8(1), ev.Priority)
		require.Equal(t, want, seqsOf(lease(t, b.st, 6)), "rescheduled, released and recovered events keep their priority")
		_, err = b.st.ReleaseAll(ctx)
		require.NoError(t, err)
		require.NoError(t, b.st.Close())
		checkFile(t, b.path)

		_, _, err = Compact(b.path, 0)
		require.NoError(t, err)
		b.open(t)
		require.Equal(t, want, seqsOf(lease(t, b.st, 6)), "after compaction")
		require.NoError(t, b.st.Close())

		dst := filepath.Join(t.TempDir(), "salvaged.db")
		_, err = Salvage(b.path, dst)
		require.NoError(t, err)
		checkFile(t, dst)
		st, err := Open(dst, Options{Now: b.clock.Now, Elapsed: b.clock.Elapsed})
		require.NoError(t, err)
		defer st.Close()
		got = lease(t, st, 6)
		require.Equal(t, want, seqsOf(got), "after salvage")
		for i, e := range got {
			require.Equal(t, []int8{1, 1, 0, 0, -1, -1}[i], e.Priority)
		}
	})

	t.Run("CheckNamesAKeyAtTheWrongPriority", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		seqs := enqueue(t, b.st, NewEvent{Function: "A", Priority: 2})
		require.NoError(t, b.st.Close())
		rawUpdate(t, b.path, func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketFnReady).Cursor()
			k, _ := c.First()
			k = clone(k)
			require.Equal(t, byte(0x7e), k[4])
			require.NoError(t, c.Delete())
			k[4] = priorityNormal
			return tx.Bucket(bucketFnReady).Put(k, nil)
		})
		rep, err := Check(b.path)
		require.NoError(t, err)
		require.Equal(t, []Problem{{Where: fmt.Sprintf("event %d", seqs[0]), What: "priority 2, but in the ready index under priority byte 0x80"}}, rep.Problems)
	})
}

// TestPriorityLeaseCost: a function whose every priority holds events
// scheduled later costs a lease one seek per priority in use, not a walk
// of what is not due.
func TestPriorityLeaseCost(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	later := b.st.Now().Add(time.Hour)
	var evs []NewEvent
	for p := int8(MinPriority); p <= MaxPriority; p++ {
		for range 500 {
			evs = append(evs, NewEvent{Function: "A", Priority: p, Due: later})
		}
	}
	enqueue(t, b.st, evs...)
	due := enqueue(t, b.st, NewEvent{Function: "A", Priority: MinPriority})

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
	require.Equal(t, due, seqsOf(got))
	// The function's first key, a seek to each of the six priorities
	// after, a step past the one due, and the walk to the end.
	require.LessOrEqual(t, steps, 12, "cursor moves")
}
