package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// reopenWith closes the bundle's store and opens it again with o, on the
// bundle's clock.
func (b *bundle) reopenWith(t *testing.T, o Options) {
	t.Helper()
	if err := b.st.Close(); err != nil && !errors.Is(err, ErrClosed) {
		require.NoError(t, err)
	}
	o.Now, o.Elapsed = b.clock.Now, b.clock.Elapsed
	st, err := Open(b.path, o)
	require.NoError(t, err)
	b.st = st
}

// evictIndex reads the eviction index: sequence → priority. ok is false
// when there is none.
func evictIndex(t *testing.T, st *Store) (idx map[uint64]int8, complete, ok bool) {
	t.Helper()
	require.NoError(t, st.flush()) // logged events are indexed at the checkpoint
	require.NoError(t, st.db.View(func(tx *bolt.Tx) error {
		complete = tx.Bucket(bucketMeta).Get(keyEvictable) != nil
		bk := tx.Bucket(bucketEvictable)
		if bk == nil {
			return nil
		}
		ok, idx = true, map[uint64]int8{}
		return bk.ForEach(func(k, _ []byte) error {
			p, good := evictKeyPriority(k)
			require.True(t, good, "key %x", k)
			idx[seqOf(k[1:])] = p
			return nil
		})
	}))
	return idx, complete, ok
}

func seqOf(k []byte) uint64 {
	var seq uint64
	for _, c := range k {
		seq = seq<<8 | uint64(c)
	}
	return seq
}

// waiting reads the events not leased: sequence → priority.
func waiting(t *testing.T, st *Store) map[uint64]int8 {
	t.Helper()
	out := map[uint64]int8{}
	for _, e := range scanAll(t, st) {
		if !e.Leased {
			out[e.Seq] = e.Priority
		}
	}
	return out
}

// requireIndexed checks that the eviction index holds exactly the events
// waiting.
func requireIndexed(t *testing.T, st *Store, step string) {
	t.Helper()
	idx, complete, ok := evictIndex(t, st)
	require.True(t, ok && complete, "%s: the index is there", step)
	require.Equal(t, waiting(t, st), idx, "%s: the index holds the events waiting", step)
}

// evictions reads the whole ledger.
func evictions(t *testing.T, st *Store) []Eviction {
	t.Helper()
	out, next, err := st.Evictions(0, 1<<20)
	require.NoError(t, err)
	require.Zero(t, next)
	return out
}

func keysOf(evs []Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Key
	}
	return out
}

func TestEvict(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("LowestPriorityThenOldest", func(t *testing.T) {
		t.Parallel()
		var seen []Event
		o := Options{Full: FullDropOldest, MaxEvents: 6, Evicted: forget(&seen)}
		b := setup(t, o)
		start := b.clock.Now()
		seqs := enqueue(t, b.st,
			NewEvent{Function: "A", Key: "a1", Payload: []byte(`{"a":1}`)},
			NewEvent{Function: "A", Key: "a2", Priority: 1},
			NewEvent{Function: "B", Key: "b1", Priority: -1, Payload: []byte(`{"b":1}`)},
			NewEvent{Function: "B", Key: "b2", Due: b.st.Now().Add(time.Hour)},
			NewEvent{Function: "A", Key: "a3", Priority: -1},
			NewEvent{Function: "C", Key: "c1", Priority: 2},
		)
		holdKeys(t, b.st, "a1", "a2", "a3", "b1", "b2", "c1")
		got := lease(t, b.st, 1)
		require.Equal(t, "a2", got[0].Key, "A's most urgent")
		b.clock.Add(time.Second)

		enqueue(t, b.st, newEvents(3, "D")...)
		require.Equal(t, []string{"b1", "a3", "a1"}, keysOf(seen), "the lowest priority first, then the oldest; never the leased a2")
		require.Equal(t, []string{"a2", "b2", "c1"}, heldKeys(t, b.st), "their keys released in the enqueue's transaction")
		s := stats(t, b.st)
		require.Equal(t, int64(6), s.Events)
		require.Equal(t, int64(1), s.Scheduled)
		require.Equal(t, uint64(3), s.Evicted)
		fs := functionsOf(t, b.st)
		require.Equal(t, int64(1), fs["A"].Events)
		require.Equal(t, int64(1), fs["A"].Leased)
		require.Equal(t, int64(1), fs["B"].Events)
		require.Equal(t, int64(3), fs["D"].Events)
		var bytes int64
		for _, f := range fs {
			bytes += f.Bytes
		}
		require.Equal(t, s.Bytes, bytes)

		enq, evicted := time.Unix(0, start.UnixNano()), time.Unix(0, b.clock.Now().UnixNano())
		require.Equal(t, []Eviction{
			{Seq: seqs[0], Function: "A", Key: "a1", PayloadSize: 7, Enqueued: enq, Evicted: evicted, Reason: "full"},
			{Seq: seqs[2], Function: "B", Key: "b1", Priority: -1, PayloadSize: 7, Enqueued: enq, Evicted: evicted, Reason: "full"},
			{Seq: seqs[4], Function: "A", Key: "a3", Priority: -1, Enqueued: enq, Evicted: evicted, Reason: "full"},
		}, evictions(t, b.st))
		requireIndexed(t, b.st, "after evicting")

		checkClosed(t, b)
		b.reopenWith(t, o)
		require.Equal(t, uint64(3), stats(t, b.st).Evicted, "kept in the file")
		require.Equal(t, []uint64{seqs[1]}, seqsOf(lease(t, b.st, 10))[:1], "the lease returned at Open")
	})

	t.Run("MaxBytes", func(t *testing.T) {
		t.Parallel()
		one := LogicalSize(NewEvent{Function: "A", Payload: []byte(`{"n":0}`)})
		b := setup(t, Options{Full: FullDropOldest, MaxBytes: 3 * one})
		seqs := enqueue(t, b.st, newEvents(3, "A")...)
		big := NewEvent{Function: "A", Payload: make([]byte, one+7)}
		enqueue(t, b.st, big)
		got := evictions(t, b.st)
		require.Equal(t, seqs[:2], []uint64{got[0].Seq, got[1].Seq}, "as many as the bytes need")
		require.Len(t, got, 2)
		require.LessOrEqual(t, stats(t, b.st).Bytes, 3*one)
	})

	t.Run("AllOrNothing", func(t *testing.T) {
		t.Parallel()
		one := LogicalSize(NewEvent{Function: "A", Payload: []byte(`{"n":0}`)})
		b := setup(t, Options{Full: FullDropOldest, MaxEvents: 3, MaxBytes: 10 * one})
		seqs := enqueue(t, b.st, newEvents(3, "A")...)
		require.Len(t, lease(t, b.st, 2), 2)
		idx, _, _ := evictIndex(t, b.st)
		_, err := b.st.Enqueue(ctx, newEvents(2, "B"))
		require.ErrorIs(t, err, ErrFull, "one event waiting, two needed")
		s := stats(t, b.st)
		require.Equal(t, int64(3), s.Events)
		require.Zero(t, s.Evicted)
		require.Empty(t, evictions(t, b.st))
		after, _, _ := evictIndex(t, b.st)
		require.Equal(t, idx, after)
		_, err = b.st.Get(seqs[2])
		require.NoError(t, err, "the one waiting is still there")

		_, err = b.st.Enqueue(ctx, newEvents(4, "B"))
		require.ErrorIs(t, err, ErrFull, "more than the store holds")
		_, err = b.st.Enqueue(ctx, []NewEvent{{Function: "B", Payload: make([]byte, 10*one)}})
		require.ErrorIs(t, err, ErrFull, "bigger than the store holds")
		_, err = b.st.Insert(ctx, func(*Tx) ([]NewEvent, error) { return newEvents(2, "B"), nil }, nil)
		require.ErrorIs(t, err, ErrFull)
		require.Zero(t, stats(t, b.st).Evicted)
		enqueue(t, b.st, newEvents(1, "B")...)
		require.Equal(t, uint64(1), stats(t, b.st).Evicted, "room for one")
		checkClosed(t, b)
	})

	t.Run("CallbackErrorEvictsNothing", func(t *testing.T) {
		t.Parallel()
		boom := errors.New("boom")
		b := setup(t, Options{Full: FullDropOldest, MaxEvents: 2, Evicted: func(*Tx, Event) error { return boom }})
		seqs := enqueue(t, b.st, newEvents(2, "A")...)
		_, err := b.st.Enqueue(ctx, newEvents(1, "B"))
		require.ErrorIs(t, err, boom)
		require.Equal(t, seqs, seqsOf(scanAll(t, b.st)))
		require.Zero(t, stats(t, b.st).Evicted)
		require.Empty(t, evictions(t, b.st))
	})

	t.Run("EnqueueUniqueSparesTheEventsItsDuplicatesName", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{Full: FullDropOldest, MaxEvents: 2})
		w := bucketWindow{}
		res, err := b.st.EnqueueUnique(ctx, []NewEvent{{Function: "A", Key: "k"}, {Function: "A", Key: "j"}}, w)
		require.NoError(t, err)
		res2, err := b.st.EnqueueUnique(ctx, []NewEvent{{Function: "A", Key: "k"}, {Function: "A", Key: "z"}}, w)
		require.NoError(t, err)
		require.Equal(t, Result{Seq: res[0].Seq, Duplicate: true}, res2[0])
		require.False(t, res2[1].Duplicate)
		got := evictions(t, b.st)
		require.Len(t, got, 1)
		require.Equal(t, res[1].Seq, got[0].Seq, "not k's holder, though it is older")
		_, err = b.st.Get(res[0].Seq)
		require.NoError(t, err)
	})

	t.Run("Insert", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{Full: FullDropOldest, MaxEvents: 2})
		seqs := enqueue(t, b.st, newEvents(2, "A")...)
		in, err := b.st.Insert(ctx, func(*Tx) ([]NewEvent, error) { return newEvents(1, "B"), nil }, nil)
		require.NoError(t, err)
		require.Equal(t, []uint64{seqs[1], in[0]}, seqsOf(scanAll(t, b.st)))
	})

	t.Run("LedgerBound", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{Full: FullDropOldest, MaxEvents: 2, MaxEvictionRecords: 5})
		for range 10 {
			enqueue(t, b.st, newEvents(1, "A")...)
		}
		require.Equal(t, uint64(8), stats(t, b.st).Evicted)
		var got []uint64
		for _, e := range evictions(t, b.st) {
			got = append(got, e.Seq)
		}
		require.Equal(t, []uint64{4, 5, 6, 7, 8}, got, "the oldest records went")
		var pages [][]uint64
		for after := uint64(0); ; {
			page, next, err := b.st.Evictions(after, 2)
			require.NoError(t, err)
			var seqs []uint64
			for _, e := range page {
				seqs = append(seqs, e.Seq)
			}
			pages = append(pages, seqs)
			if next == 0 {
				break
			}
			after = next
		}
		require.Equal(t, [][]uint64{{4, 5}, {6, 7}, {8}}, pages)
		checkClosed(t, b)

		b.reopenWith(t, Options{Full: FullDropOldest, MaxEvents: 2, MaxEvictionRecords: -1})
		enqueue(t, b.st, newEvents(1, "A")...)
		require.Equal(t, uint64(9), stats(t, b.st).Evicted)
		require.Len(t, evictions(t, b.st), 5, "none kept")
		b.reopenWith(t, Options{Full: FullDropOldest, MaxEvents: 2, MaxEvictionRecords: 2})
		enqueue(t, b.st, newEvents(1, "A")...)
		got = nil
		for _, e := range evictions(t, b.st) {
			got = append(got, e.Seq)
		}
		require.Equal(t, []uint64{8, 10}, got, "a smaller bound applies at the next eviction")
		checkClosed(t, b)
	})

	t.Run("IndexFollowsEveryMove", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{Full: FullDropOldest})
		requireIndexed(t, b.st, "empty")
		var evs []NewEvent
		for i := range 30 {
			e := NewEvent{Function: fmt.Sprint("fn", i%3), Priority: int8(i%7) - 3}
			if i%5 == 0 {
				e.Due = b.st.Now().Add(time.Hour)
			}
			evs = append(evs, e)
		}
		seqs := enqueue(t, b.st, evs...)
		requireIndexed(t, b.st, "enqueue")
		got := lease(t, b.st, 12)
		requireIndexed(t, b.st, "lease")
		require.NoError(t, b.st.Release(ctx, true, got[0].Seq, got[1].Seq))
		requireIndexed(t, b.st, "release")
		require.NoError(t, b.st.Reschedule(ctx, got[2].Seq, b.st.Now().Add(time.Minute), ErrorInfo{Code: "E"}))
		requireIndexed(t, b.st, "reschedule")
		require.NoError(t, b.st.Ack(ctx, got[3].Seq))
		requireIndexed(t, b.st, "ack")
		_, err := b.st.Remove(ctx, got[4].Seq, nil)
		require.NoError(t, err)
		_, err = b.st.Remove(ctx, seqs[0], nil)
		require.NoError(t, err)
		requireIndexed(t, b.st, "remove")
		_, err = b.st.Cancel(ctx, []uint64{seqs[5], got[5].Seq}, nil)
		require.NoError(t, err)
		requireIndexed(t, b.st, "cancel")
		require.NoError(t, b.st.Release(ctx, false, got[5].Seq))
		requireIndexed(t, b.st, "release of a cancelled lease")
		_, _, err = b.st.AckAndLease(ctx, []uint64{got[6].Seq}, 3, time.Second, nil, nil)
		require.NoError(t, err)
		requireIndexed(t, b.st, "ack and lease")
		b.clock.Add(2 * time.Second)
		n, err := b.st.Reclaim(ctx)
		require.NoError(t, err)
		require.Equal(t, 3, n)
		requireIndexed(t, b.st, "reclaim")
		n, err = b.st.ReleaseAll(ctx)
		require.NoError(t, err)
		require.Equal(t, 5, n)
		requireIndexed(t, b.st, "release all")
		lease(t, b.st, 4)
		checkClosed(t, b) // reopens without FullDropOldest: returned leases, index gone
		_, _, ok := evictIndex(t, b.st)
		require.False(t, ok)
		b.reopenWith(t, Options{Full: FullDropOldest})
		requireIndexed(t, b.st, "built again at Open")
	})

	t.Run("SetAsideLeavesTheIndex", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{Full: FullDropOldest})
		seqs := enqueue(t, b.st, NewEvent{Function: "orders", Priority: 2}, NewEvent{Function: "billing"})
		require.NoError(t, b.st.Close())
		rawUpdate(t, b.path, func(tx *bolt.Tx) error {
			rec := clone(tx.Bucket(bucketEvents).Get(seqKey(seqs[0])))
			rec[len(rec)-1] ^= 1
			return tx.Bucket(bucketEvents).Put(seqKey(seqs[0]), rec)
		})
		b.reopenWith(t, Options{Full: FullDropOldest})
		require.Len(t, lease(t, b.st, 10), 1)
		require.Equal(t, int64(1), stats(t, b.st).Corrupt)
		idx, _, _ := evictIndex(t, b.st)
		require.Empty(t, idx)
	})

	t.Run("SalvageCopiesTheLedger", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{Full: FullDropOldest, MaxEvents: 2})
		for range 5 {
			enqueue(t, b.st, newEvents(1, "A")...)
		}
		want := evictions(t, b.st)
		require.NoError(t, b.st.Close())
		dst := filepath.Join(t.TempDir(), "salvaged.db")
		_, err := Salvage(b.path, dst)
		require.NoError(t, err)
		rep := checkFile(t, dst)
		require.Equal(t, 3, rep.Evictions)
		st, err := Open(dst, Options{})
		require.NoError(t, err)
		defer st.Close()
		require.Equal(t, want, evictions(t, st))
		require.Equal(t, uint64(3), stats(t, st).Evicted)
		_, _, ok := evictIndex(t, st)
		require.False(t, ok, "not copied: built by the first Open that wants it")
	})

	t.Run("CheckNamesDamage", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{Full: FullDropOldest, MaxEvents: 3})
		for range 4 {
			enqueue(t, b.st, newEvents(1, "A")...)
		}
		leased := lease(t, b.st, 1)[0].Seq
		require.NoError(t, b.st.Close())
		base := b.path
		for _, tc := range []struct {
			name string
			fn   func(tx *bolt.Tx) error
			want []Problem
		}{
			{"MissingKey", func(tx *bolt.Tx) error {
				return tx.Bucket(bucketEvictable).Delete(evictKey(0, 3))
			}, []Problem{{Where: "event 3", What: "waiting, but not in the eviction index"}}},
			{"MissingKeyOfABuildCutShort", func(tx *bolt.Tx) error {
				if err := tx.Bucket(bucketMeta).Delete(keyEvictable); err != nil {
					return err
				}
				return tx.Bucket(bucketEvictable).Delete(evictKey(0, 3))
			}, nil},
			{"LeasedInIt", func(tx *bolt.Tx) error {
				return tx.Bucket(bucketEvictable).Put(evictKey(0, leased), nil)
			}, []Problem{{Where: fmt.Sprintf("event %d", leased), What: "leased, and in the eviction index too"}}},
			{"WrongPriority", func(tx *bolt.Tx) error {
				return tx.Bucket(bucketEvictable).Put(evictKey(1, 3), nil)
			}, []Problem{{Where: "event 3", What: "in the eviction index 2 times"}}},
			{"KeyWithoutEvent", func(tx *bolt.Tx) error {
				return tx.Bucket(bucketEvictable).Put(evictKey(0, 99), nil)
			}, []Problem{{Where: "eviction index", What: "key of event 99, which the file does not hold"}}},
			{"MarkWithoutIndex", func(tx *bolt.Tx) error {
				return tx.DeleteBucket(bucketEvictable)
			}, []Problem{{Where: "meta", What: "marks the eviction index complete, but there is none"}}},
			{"LedgerRecord", func(tx *bolt.Tx) error {
				return tx.Bucket(bucketEvicted).Put(seqKey(1), []byte{evictionVersion, 9})
			}, []Problem{{Where: "eviction record 1", What: "truncated"}}},
			{"LedgerCount", func(tx *bolt.Tx) error {
				return tx.Bucket(bucketEvicted).SetSequence(7)
			}, []Problem{{Where: "eviction ledger", What: "counts 7 records, but holds 1"}}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				path := damaged(t, base, func([]byte, int) {})
				rawUpdate(t, path, tc.fn)
				rep, err := Check(path)
				require.NoError(t, err)
				require.ElementsMatch(t, tc.want, rep.Problems)
			})
		}
	})
}

// bucketWindow is a KeyWindow over the Keys bucket: key → sequence
// number, held for ever.
type bucketWindow struct{}

func (bucketWindow) Held(tx *Tx, key string, _ time.Time) (uint64, bool, error) {
	b, err := tx.Bucket(Keys)
	if err != nil {
		return 0, false, err
	}
	v := b.Get([]byte(key))
	if v == nil {
		return 0, false, nil
	}
	return seqOf(v), true, nil
}

func (bucketWindow) Hold(tx *Tx, key string, seq uint64, _ time.Time, _ time.Duration) error {
	b, err := tx.Bucket(Keys)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), seqKey(seq))
}

// setEvictBuild sets the index build's test knobs until the test ends.
// Tests that call it do not run in parallel: the knobs are the package's.
func setEvictBuild(t *testing.T, batch int, hook func(int) error) {
	t.Helper()
	evictBuildBatch, evictBuildHook = batch, hook
	t.Cleanup(func() { evictBuildBatch, evictBuildHook = 4096, nil })
}

// TestEvictionIndexAtOpen: the first Open with FullDropOldest builds the
// index in batches; one cut short leaves no mark and is built again; an
// Open without the option deletes it, so a later one never trusts an
// index that writes in between did not keep.
func TestEvictionIndexAtOpen(t *testing.T) {
	ctx := context.Background()
	b := setup(t, Options{})
	for i := range 10 {
		evs := newEvents(100, fmt.Sprint("fn", i))
		for j := range evs {
			evs[j].Priority = int8(j%7) - 3
		}
		enqueue(t, b.st, evs...)
	}
	lease(t, b.st, 50)
	_, _, ok := evictIndex(t, b.st)
	require.False(t, ok, "not kept without FullDropOldest")

	cut := errors.New("cut")
	setEvictBuild(t, 128, func(batch int) error {
		if batch == 3 {
			return cut
		}
		return nil
	})
	require.NoError(t, b.st.Close())
	_, err := Open(b.path, Options{Full: FullDropOldest, Now: b.clock.Now, Elapsed: b.clock.Elapsed})
	require.ErrorIs(t, err, cut)
	rep := checkFile(t, b.path)
	require.Zero(t, rep.Leased, "leases go back in Open's first transaction, before the build")
	b.open(t)
	idx, complete, ok := evictIndex(t, b.st)
	require.False(t, ok || complete, "an Open without the option deletes the part built: %d keys", len(idx))
	require.NoError(t, b.st.Close())
	_, err = Open(b.path, Options{Full: FullDropOldest, Now: b.clock.Now, Elapsed: b.clock.Elapsed})
	require.ErrorIs(t, err, cut)
	idx, complete, ok = func() (map[uint64]int8, bool, bool) {
		st, err := Open(b.path, Options{ReadOnly: true})
		require.NoError(t, err)
		defer st.Close()
		return evictIndex(t, st)
	}()
	require.True(t, ok)
	require.False(t, complete)
	require.Len(t, idx, 3*128, "the batches committed before the cut")

	setEvictBuild(t, 128, nil)
	b.reopenWith(t, Options{Full: FullDropOldest})
	requireIndexed(t, b.st, "built in batches")
	require.Len(t, waiting(t, b.st), 1000, "leases returned first")

	// Writes without the option: the index goes, and comes back right.
	b.reopenWith(t, Options{})
	_, _, ok = evictIndex(t, b.st)
	require.False(t, ok)
	got := lease(t, b.st, 100)
	require.NoError(t, b.st.Ack(ctx, seqsOf(got[:50])...))
	enqueue(t, b.st, newEvents(20, "late")...)
	b.reopenWith(t, Options{Full: FullDropOldest, MaxEvents: 970})
	requireIndexed(t, b.st, "built again")
	enqueue(t, b.st, newEvents(1, "late")...)
	require.Equal(t, uint64(1), stats(t, b.st).Evicted)
	require.NoError(t, b.st.Close())
	checkFile(t, b.path)
}
