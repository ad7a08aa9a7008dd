package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// holdKeys writes keys into the Keys bucket, as an idempotency index
// would hold them for their events.
func holdKeys(t *testing.T, st *Store, keys ...string) {
	t.Helper()
	require.NoError(t, st.Update(context.Background(), func(tx *Tx) error {
		b, err := tx.Bucket(Keys)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := b.Put([]byte(k), []byte("held")); err != nil {
				return err
			}
		}
		return nil
	}))
}

// heldKeys lists the keys in the Keys bucket.
func heldKeys(t *testing.T, st *Store) []string {
	t.Helper()
	var out []string
	require.NoError(t, st.View(func(tx *Tx) error {
		b, err := tx.Bucket(Keys)
		if err != nil {
			return err
		}
		c := b.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			out = append(out, string(k))
		}
		return nil
	}))
	return out
}

// forget is a keep or Evicted callback that releases the event's key in
// the transaction, and notes the event in *seen.
func forget(seen *[]Event) func(tx *Tx, ev Event) error {
	return func(tx *Tx, ev Event) error {
		*seen = append(*seen, ev)
		b, err := tx.Bucket(Keys)
		if err != nil {
			return err
		}
		return b.Delete([]byte(ev.Key))
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("WaitingEventsGoAtOnce", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		seqs := enqueue(t, b.st,
			NewEvent{Function: "A", Key: "k1", Payload: []byte(`{"a":1}`)},
			NewEvent{Function: "A", Key: "k2", Due: b.st.Now().Add(time.Hour)},
			NewEvent{Function: "B", Key: "k3"},
		)
		holdKeys(t, b.st, "k1", "k2", "k3")
		var seen []Event
		got, err := b.st.Cancel(ctx, []uint64{seqs[0], seqs[1], 999, seqs[0]}, forget(&seen))
		require.NoError(t, err)
		require.Equal(t, seqs[:2], got, "unknown and repeated sequence numbers are skipped")
		require.Equal(t, []string{"k1", "k2"}, []string{seen[0].Key, seen[1].Key})
		require.Equal(t, "A", seen[0].Function)
		require.Equal(t, []string{"k3"}, heldKeys(t, b.st), "keys released in the cancel's transaction")
		for _, seq := range seqs[:2] {
			_, err := b.st.Get(seq)
			require.ErrorIs(t, err, ErrNotFound)
		}
		s := stats(t, b.st)
		require.Equal(t, int64(1), s.Events)
		require.Zero(t, s.Scheduled)
		require.Equal(t, uint64(2), s.Cancelled)
		require.Equal(t, int64(LogicalSize(NewEvent{Function: "B", Key: "k3"})), s.Bytes)
		require.NotContains(t, functionsOf(t, b.st), "A")

		checkClosed(t, b)
		require.Equal(t, uint64(2), stats(t, b.st).Cancelled, "kept in the file")
		require.Equal(t, []uint64{seqs[2]}, seqsOf(lease(t, b.st, 10)))
	})

	t.Run("KeepFailingCancelsNothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		seqs := enqueue(t, b.st, newEvents(2, "A")...)
		lease(t, b.st, 1)
		boom := errors.New("boom")
		calls := 0
		_, err := b.st.Cancel(ctx, seqs, func(*Tx, Event) error {
			if calls++; calls == 2 {
				return boom
			}
			return nil
		})
		require.ErrorIs(t, err, boom)
		s := stats(t, b.st)
		require.Equal(t, int64(2), s.Events)
		require.Zero(t, s.Cancelled)
		ev, err := b.st.Get(seqs[0])
		require.NoError(t, err)
		require.False(t, ev.Cancelled)
		checkClosed(t, b)
	})

	// Each way a lease ends removes an event cancelled while leased.
	for _, tc := range []struct {
		name string
		end  func(t *testing.T, b *bundle, seq uint64)
		want Stats // the totals the end counts (Cancelled aside)
	}{
		{"Ack", func(t *testing.T, b *bundle, seq uint64) {
			require.NoError(t, b.st.Ack(ctx, seq))
		}, Stats{Acked: 1}},
		{"AckAndLease", func(t *testing.T, b *bundle, seq uint64) {
			_, notLeased, err := b.st.AckAndLease(ctx, []uint64{seq}, 1, time.Minute, nil, func(*Tx, uint64, string) error {
				t.Error("onAck called for a cancelled event: its key was released")
				return nil
			})
			require.NoError(t, err)
			require.Empty(t, notLeased)
		}, Stats{Acked: 1}},
		{"Reschedule", func(t *testing.T, b *bundle, seq uint64) {
			require.NoError(t, b.st.Reschedule(ctx, seq, b.st.Now().Add(time.Minute), ErrorInfo{Code: "E"}))
		}, Stats{}},
		{"Release", func(t *testing.T, b *bundle, seq uint64) {
			require.NoError(t, b.st.Release(ctx, false, seq))
		}, Stats{}},
		{"ReleaseRefund", func(t *testing.T, b *bundle, seq uint64) {
			require.NoError(t, b.st.Release(ctx, true, seq))
		}, Stats{}},
		{"Remove", func(t *testing.T, b *bundle, seq uint64) {
			ev, err := b.st.Remove(ctx, seq, func(*Tx, Event) error {
				t.Error("move called for a cancelled event: it is not a dead letter")
				return nil
			})
			require.NoError(t, err)
			require.True(t, ev.Cancelled)
		}, Stats{}},
		{"Reclaim", func(t *testing.T, b *bundle, _ uint64) {
			b.clock.Add(2 * time.Minute)
			n, err := b.st.Reclaim(ctx)
			require.NoError(t, err)
			require.Equal(t, 1, n, "the other lease returned; the cancelled event removed, not returned")
		}, Stats{}},
		{"ReleaseAll", func(t *testing.T, b *bundle, _ uint64) {
			n, err := b.st.ReleaseAll(ctx)
			require.NoError(t, err)
			require.Equal(t, 1, n, "the other lease only")
		}, Stats{}},
		{"Reopen", func(t *testing.T, b *bundle, _ uint64) {
			b.reopen(t)
			require.Equal(t, uint64(1), stats(t, b.st).Recovered, "the other lease only")
		}, Stats{}},
	} {
		t.Run("Leased"+tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, Options{})
			seq := enqueue(t, b.st, NewEvent{Function: "A", Key: "k1"})[0]
			other := enqueue(t, b.st, NewEvent{Function: "B", Key: "k2"})[0]
			holdKeys(t, b.st, "k1", "k2")
			require.Len(t, lease(t, b.st, 2), 2)

			var seen []Event
			got, err := b.st.Cancel(ctx, []uint64{seq}, forget(&seen))
			require.NoError(t, err)
			require.Equal(t, []uint64{seq}, got)
			require.Len(t, seen, 1)
			require.True(t, seen[0].Leased)
			require.Equal(t, []string{"k2"}, heldKeys(t, b.st))
			ev, err := b.st.Get(seq)
			require.NoError(t, err)
			require.True(t, ev.Leased)
			require.True(t, ev.Cancelled, "marked in its record")
			got, err = b.st.Cancel(ctx, []uint64{seq}, forget(&seen))
			require.NoError(t, err)
			require.Empty(t, got, "cancelled once")
			s := stats(t, b.st)
			require.Equal(t, int64(2), s.Events, "held until its lease ends")
			require.Equal(t, int64(2), s.Leased)

			before := stats(t, b.st)
			tc.end(t, b, seq)
			_, err = b.st.Get(seq)
			require.ErrorIs(t, err, ErrNotFound)
			s = stats(t, b.st)
			require.Equal(t, int64(1), s.Events)
			require.Equal(t, uint64(1), s.Cancelled)
			require.Equal(t, tc.want.Acked, s.Acked-before.Acked)
			require.Equal(t, before.Rescheduled, s.Rescheduled)
			require.Equal(t, before.Released, s.Released)
			require.Equal(t, before.Removed, s.Removed)
			require.NotContains(t, functionsOf(t, b.st), "A")
			ev, err = b.st.Get(other)
			require.NoError(t, err)
			require.False(t, ev.Cancelled)
			checkClosed(t, b)
			require.Equal(t, uint64(1), stats(t, b.st).Cancelled)
		})
	}

	t.Run("ReleaseOfSeveralRemovesOnlyTheCancelled", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		seqs := enqueue(t, b.st, newEvents(3, "A")...)
		require.Len(t, lease(t, b.st, 3), 3)
		_, err := b.st.Cancel(ctx, seqs[1:2], nil)
		require.NoError(t, err)
		require.NoError(t, b.st.Release(ctx, true, seqs...))
		s := stats(t, b.st)
		require.Equal(t, int64(2), s.Events)
		require.Equal(t, uint64(2), s.Released)
		require.Equal(t, []uint64{seqs[0], seqs[2]}, seqsOf(lease(t, b.st, 3)))
	})

	t.Run("CheckNamesAWaitingEventMarkedCancelled", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		seq := enqueue(t, b.st, NewEvent{Function: "A"})[0]
		require.NoError(t, b.st.Close())
		rawUpdate(t, b.path, func(tx *bolt.Tx) error {
			r, err := decodeRecord(tx.Bucket(bucketEvents).Get(seqKey(seq)))
			require.NoError(t, err)
			r.cancelled = true
			return tx.Bucket(bucketEvents).Put(seqKey(seq), r.encode(nil))
		})
		rep, err := Check(b.path)
		require.NoError(t, err)
		require.Equal(t, []Problem{{Where: fmt.Sprintf("event %d", seq), What: "marked cancelled, but not leased"}}, rep.Problems)
	})

	t.Run("SalvageLeavesCancelledLeasesOut", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		seqs := enqueue(t, b.st, newEvents(3, "A")...)
		require.Len(t, lease(t, b.st, 2), 2)
		_, err := b.st.Cancel(ctx, seqs[:1], nil)
		require.NoError(t, err)
		require.NoError(t, b.st.Close())
		dst := t.TempDir() + "/salvaged.db"
		rep, err := Salvage(b.path, dst)
		require.NoError(t, err)
		require.Equal(t, int64(2), rep.Events)
		require.Equal(t, int64(1), rep.Cancelled)
		checkFile(t, dst)
		st, err := Open(dst, Options{Now: b.clock.Now, Elapsed: b.clock.Elapsed})
		require.NoError(t, err)
		defer st.Close()
		require.Equal(t, seqs[1:], seqsOf(lease(t, st, 3)))
		require.Equal(t, uint64(1), stats(t, st).Cancelled, "the total carries over")
	})
}
