package dispatcher_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
)

func TestDedupSameKeyFrom64Goroutines(t *testing.T) {
	t.Parallel()
	d, _ := open(t)
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
	require.Equal(t, uint64(63), st.Duplicates)
	require.Equal(t, uint64(1), st.Keys)
}

func TestDedupWithinABatch(t *testing.T) {
	t.Parallel()
	d, _ := open(t)
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
	d, _ := open(t, dispatcher.WithClock(clock), dispatcher.WithKeyWindow(time.Hour),
		dispatcher.WithKeySweep(5*time.Millisecond), dispatcher.WithMaxKeys(50))
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
	d, _ := open(t, dispatcher.WithKeyFunc(dispatcher.HashKey))
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
