package dispatcher_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/lambdatest"
	"github.com/lambdadispatch/dispatcher/store"
)

func TestDedupSameKeyFrom64Goroutines(t *testing.T) {
	t.Parallel()
	d := setup(t).d
	var wg sync.WaitGroup
	receipts := make([]dispatcher.Receipt, 64)
	for i := range receipts {
		wg.Go(func() {
			r, err := d.Enqueue(context.Background(), dispatcher.Event{Function: "fn", Key: "order-42", Payload: fmt.Appendf(nil, `{"from":%d}`, i)})
			if err != nil {
				t.Error(err)
			}
			receipts[i] = r
		})
	}
	wg.Wait()
	var originals []string
	for _, r := range receipts {
		if !r.Duplicate {
			originals = append(originals, r.ID)
		}
	}
	require.Len(t, originals, 1, "exactly one wins")
	for _, r := range receipts {
		require.Equal(t, originals[0], r.ID, "duplicates carry the original id")
	}
	st := d.Stats()
	require.Equal(t, int64(1), st.Queued())
	require.Equal(t, uint64(63), st.DuplicatesRefused)
	require.Equal(t, uint64(1), st.Keys)
}

func TestDedupWithinABatch(t *testing.T) {
	t.Parallel()
	d := setup(t).d
	rs, err := d.EnqueueBatch(context.Background(), []dispatcher.Event{
		{Function: "fn", Key: "a"}, {Function: "fn", Key: "b"}, {Function: "fn", Key: "a"}, {Function: "fn"},
	})
	require.NoError(t, err)
	require.False(t, rs[0].Duplicate)
	require.False(t, rs[1].Duplicate)
	require.True(t, rs[2].Duplicate)
	require.Equal(t, rs[0].ID, rs[2].ID)
	require.False(t, rs[3].Duplicate, "no key, never a duplicate")
	require.Equal(t, int64(3), d.Stats().Queued())

	rs, err = d.EnqueueBatch(context.Background(), []dispatcher.Event{{Function: "fn", Key: "b"}, {Function: "fn", Key: "c"}})
	require.NoError(t, err)
	require.True(t, rs[0].Duplicate)
	require.False(t, rs[1].Duplicate)
	require.Equal(t, int64(4), d.Stats().Queued())
}

// TestDedupReplayAfterRestart reopens the file: a replay within the window
// is a duplicate, one after it is queued.
func TestDedupReplayAfterRestart(t *testing.T) {
	t.Parallel()
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	path := filepath.Join(t.TempDir(), "events.db")
	ev := dispatcher.Event{Function: "fn", Key: "reading-7", Payload: []byte(`{"t":21.5}`)}

	d, err := dispatcher.Open(path, dispatcher.WithClock(clock), dispatcher.WithKeyWindow(time.Hour))
	require.NoError(t, err)
	first, err := d.Enqueue(context.Background(), ev)
	require.NoError(t, err)
	require.NoError(t, d.Close())

	d, err = dispatcher.Open(path, dispatcher.WithClock(clock), dispatcher.WithKeyWindow(time.Hour))
	require.NoError(t, err)
	defer d.Close()
	again, err := d.Enqueue(context.Background(), ev)
	require.NoError(t, err)
	require.True(t, again.Duplicate, "within the window after a restart")
	require.Equal(t, first.ID, again.ID)

	offset.Add(int64(2 * time.Hour))
	later, err := d.Enqueue(context.Background(), ev)
	require.NoError(t, err)
	require.False(t, later.Duplicate, "after the window")
	require.NotEqual(t, first.ID, later.ID)

	short := ev
	short.Window = time.Minute
	short.Key = "short"
	_, err = d.Enqueue(context.Background(), short)
	require.NoError(t, err)
	offset.Add(int64(2 * time.Minute))
	r, err := d.Enqueue(context.Background(), short)
	require.NoError(t, err)
	require.False(t, r.Duplicate, "a per-event window overrides the dispatcher's")
}

func TestDedupSweepAndEviction(t *testing.T) {
	t.Parallel()
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	d := setup(t, with(dispatcher.WithClock(clock), dispatcher.WithKeyWindow(time.Hour),
		dispatcher.WithKeySweep(5*time.Millisecond), dispatcher.WithMaxKeys(50))).d
	for i := range 80 {
		_, err := d.Enqueue(context.Background(), dispatcher.Event{Function: "fn", Key: fmt.Sprint("k", i)})
		require.NoError(t, err)
	}
	// The sweeper may run while the keys are still coming: wait for the
	// counts to settle, then check they agree.
	st := waitStats(t, d, "keys evicted down to the cap", func(s dispatcher.Stats) bool { return s.KeysEvicted == 30 })
	require.Equal(t, uint64(50), st.Keys)
	offset.Add(int64(2 * time.Hour))
	st = waitStats(t, d, "expired keys swept", func(s dispatcher.Stats) bool { return s.KeysSwept == 50 })
	require.Zero(t, st.Keys)
	require.Equal(t, uint64(30), st.KeysEvicted, "nothing evicted twice")
}

func TestDedupHashKey(t *testing.T) {
	t.Parallel()
	d := setup(t, with(dispatcher.WithKeyFunc(dispatcher.HashKey))).d
	ctx := context.Background()
	a, err := d.Enqueue(ctx, dispatcher.Event{Function: "fn", Payload: []byte(`{"x":1}`)})
	require.NoError(t, err)
	b, err := d.Enqueue(ctx, dispatcher.Event{Function: "fn", Payload: []byte(`{"x":1}`)})
	require.NoError(t, err)
	c, err := d.Enqueue(ctx, dispatcher.Event{Function: "other", Payload: []byte(`{"x":1}`)})
	require.NoError(t, err)
	require.False(t, a.Duplicate)
	require.True(t, b.Duplicate)
	require.Equal(t, a.ID, b.ID)
	require.False(t, c.Duplicate, "another function, another key")
}

// TestDedupEndToEnd enqueues 2,000 events of which 30 % repeat a key, in
// random order, while Run delivers: the function sees each key once.
//
// 2,000 events in 20 batches show what 10,000 did: a repeat arrives before,
// during and after the delivery of its key's first event, since Run sends
// while the batches are still coming. DISPATCH_SOAK=1 runs 10,000.
func TestDedupEndToEnd(t *testing.T) {
	t.Parallel()
	b := setup(t, withServer(), with(dispatcher.WithConcurrency(32)))
	b.srv.Register("fn", lambdatest.OK())
	total, unique := 2_000, 1_400
	if soak() {
		total, unique = 10_000, 7_000
	}
	keys := make([]string, total)
	for i := range keys {
		if i < unique {
			keys[i] = fmt.Sprint("key-", i)
		} else {
			keys[i] = fmt.Sprint("key-", rand.IntN(unique))
		}
	}
	rand.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	b.start(t)
	batch := make([]dispatcher.Event, 0, 100)
	dups := 0
	for i, k := range keys {
		batch = append(batch, dispatcher.Event{Function: "fn", Key: k, Payload: fmt.Appendf(nil, `{"i":%d}`, i)})
		if len(batch) == cap(batch) {
			rs, err := b.d.EnqueueBatch(context.Background(), batch)
			require.NoError(t, err)
			for _, r := range rs {
				if r.Duplicate {
					dups++
				}
			}
			batch = batch[:0]
		}
	}
	require.Equal(t, total-unique, dups)
	st := waitStats(t, b.d, "all unique keys delivered", func(s dispatcher.Stats) bool { return s.Delivered == uint64(unique) })
	require.Equal(t, uint64(total-unique), st.DuplicatesRefused)
	require.Equal(t, uint64(unique), st.Enqueued)
	require.Zero(t, st.Queued())
	seen := keysSeen(t, b.srv, "fn")
	require.Len(t, seen, unique)
	for k, n := range seen {
		require.Equal(t, 1, n, "key %s reached the function %d times", k, n)
	}
}

// TestDedupDeliverySide marks a queued event's key delivered, as another
// delivery would: the event is acked without an invoke.
func TestDedupDeliverySide(t *testing.T) {
	t.Parallel()
	b := setup(t, withServer())
	b.srv.Register("fn", lambdatest.OK())
	r, err := b.d.Enqueue(context.Background(), dispatcher.Event{Function: "fn", Key: "k1"})
	require.NoError(t, err)
	var seq uint64
	_, err = fmt.Sscan(r.ID, &seq)
	require.NoError(t, err)
	keys := idempotency.New(dispatcher.StoreForTest(b.d))
	require.NoError(t, dispatcher.StoreForTest(b.d).Update(context.Background(), func(tx *store.Tx) error {
		return keys.Mark(tx, "k1", seq, idempotency.Delivered)
	}))
	b.start(t)
	st := waitStats(t, b.d, "settled", func(s dispatcher.Stats) bool { return s.Delivered == 1 })
	require.Equal(t, uint64(1), st.DuplicatesSkipped)
	require.Zero(t, b.srv.Count("fn"), "no invoke")
}

// TestDedupMarksAndRedrive: a delivered key is marked delivered, a
// dead-lettered one dead-lettered, and a redrive sends it again under its
// key.
func TestDedupMarksAndRedrive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, withServer())
	b.srv.Register("ok", lambdatest.OK())
	_, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "ok", Key: "good", Payload: []byte(`{}`)})
	require.NoError(t, err)
	bad, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "missing", Key: "bad", Payload: []byte(`{}`)})
	require.NoError(t, err)
	b.start(t)
	waitStats(t, b.d, "settled", func(s dispatcher.Stats) bool { return s.Delivered == 1 && s.DeadLettered == 1 })
	state := func(key string) idempotency.State {
		var e idempotency.Entry
		require.NoError(t, dispatcher.StoreForTest(b.d).View(func(tx *store.Tx) error {
			var err error
			e, _, err = idempotency.New(dispatcher.StoreForTest(b.d)).Lookup(tx, key, time.Now())
			return err
		}))
		return e.State
	}
	require.Equal(t, idempotency.Delivered, state("good"))
	require.Equal(t, idempotency.DeadLettered, state("bad"))
	again, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "missing", Key: "bad", Payload: []byte(`{}`)})
	require.NoError(t, err)
	require.True(t, again.Duplicate, "a dead-lettered key still holds its window")
	require.Equal(t, bad.ID, again.ID)

	b.srv.Register("fixed", lambdatest.OK())
	n, err := b.d.DeadLetters().Redrive(ctx, []string{bad.ID}, dispatcher.RedriveOptions{Function: "fixed"})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	waitStats(t, b.d, "redriven and delivered", func(s dispatcher.Stats) bool { return s.Delivered == 2 })
	require.Equal(t, idempotency.Delivered, state("bad"), "the redrive cleared the mark and the delivery set it again")
	require.Equal(t, map[string]int{"bad": 1}, keysSeen(t, b.srv, "fixed"))
}

// TestKeyWindowOverflow: a key window whose end does not fit Unix
// nanoseconds used to wrap the key's expiry into the past, so the key
// expired at once and deduplication was silently off. Open refuses such
// a WithKeyWindow and Enqueue such an Event.Window, with a
// *ValidationError whose Field is Window; the longest window that fits
// still deduplicates.
func TestKeyWindowOverflow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	clock := dispatcher.WithClock(func() time.Time { return now })
	longest := time.Duration(math.MaxInt64 - now.UnixNano())

	for _, w := range []time.Duration{longest + 1, math.MaxInt64} {
		d, err := dispatcher.Open(filepath.Join(t.TempDir(), "bad.db"), clock, dispatcher.WithKeyWindow(w))
		require.Nil(t, d)
		var ve *dispatcher.ValidationError
		require.ErrorAs(t, err, &ve, "window %v", w)
		require.Equal(t, "Window", ve.Field)
		require.Contains(t, err.Error(), "WithKeyWindow")
	}

	d := setup(t, with(clock, dispatcher.WithKeyWindow(longest))).d
	before := take(t, d)
	for _, w := range []time.Duration{longest + 1, math.MaxInt64} {
		_, err := d.EnqueueBatch(ctx, []dispatcher.Event{
			{Function: "fn", Key: "a"},
			{Function: "fn", Key: "b", Window: w},
		})
		var ve *dispatcher.ValidationError
		require.ErrorAs(t, err, &ve, "window %v", w)
		require.ErrorIs(t, err, dispatcher.ErrInvalidEvent)
		require.Equal(t, "Window", ve.Field)
		require.Equal(t, 1, ve.Index)
	}
	require.Equal(t, before, take(t, d), "nothing written")

	for _, w := range []time.Duration{0, longest} { // the option's, and an event's own
		key := "k" + w.String()
		r, err := d.Enqueue(ctx, dispatcher.Event{Function: "fn", Key: key, Window: w})
		require.NoError(t, err)
		require.False(t, r.Duplicate)
		now = now.Add(100 * 365 * 24 * time.Hour)
		r, err = d.Enqueue(ctx, dispatcher.Event{Function: "fn", Key: key})
		require.NoError(t, err)
		require.True(t, r.Duplicate, "window %v: still held a century on", w)
		now = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	}
}
