package store

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestQueueClock checks the clock due times run on: a step of the wall
// clock while open moves nothing, and a reopen with the wall clock behind
// what the file recorded carries on from the record.
func TestQueueClock(t *testing.T) {
	t.Parallel()
	var wallOff, mono atomic.Int64
	base := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	wall := func() time.Time { return base.Add(time.Duration(wallOff.Load())) }
	elapsed := func() time.Duration { return time.Duration(mono.Load()) }
	path := filepath.Join(t.TempDir(), "q.db")
	o := Options{Now: wall, Elapsed: elapsed}
	st, err := Open(path, o)
	require.NoError(t, err)
	require.True(t, st.Now().Equal(base), "starts at the wall clock")

	seqs, err := st.Enqueue(context.Background(), []NewEvent{{Function: "fn"}})
	require.NoError(t, err)
	wallOff.Add(int64(-2 * time.Hour))
	require.True(t, st.Now().Equal(base), "a step of the wall clock moves nothing")
	mono.Add(int64(time.Minute))
	require.True(t, st.Now().Equal(base.Add(time.Minute)), "the monotonic clock moves it")
	s, err := st.Stats()
	require.NoError(t, err)
	require.Equal(t, int64(1), s.Ready)

	ev, err := st.Get(seqs[0])
	require.NoError(t, err)
	require.True(t, ev.Enqueued.Equal(base), "enqueue time is the wall clock's")
	require.NoError(t, st.Close())

	// Reopen two hours behind: the file's record wins, and the event is
	// still due.
	st, err = Open(path, o)
	require.NoError(t, err)
	defer st.Close()
	require.False(t, st.Now().Before(base), "never before what the file recorded at its last commit")
	got, err := st.Lease(context.Background(), 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, got, 1)
}

// TestCountsWithoutClock reads counters written before the queue clock.
func TestCountsWithoutClock(t *testing.T) {
	c := counts{nextSeq: 7, events: 3, bytes: 300, leased: 1, corrupt: 2, clock: 99}
	b := c.encode()
	got, err := decodeCounts(b)
	require.NoError(t, err)
	require.Equal(t, c, got)

	// Before cancel and eviction the counters ended after the clock, and
	// before the queue clock, before it: each field zero is one byte.
	b = c.encode()
	got, err = decodeCounts(b[:len(b)-2])
	require.NoError(t, err)
	require.Equal(t, c, got)
	c.clock = 0
	b = c.encode()
	got, err = decodeCounts(b[:len(b)-3])
	require.NoError(t, err)
	require.Equal(t, c, got)

	c.cancelled, c.evicted = 5, 6
	b = c.encode()
	got, err = decodeCounts(b)
	require.NoError(t, err)
	require.Equal(t, c, got)
	// A later version's fields are dropped, not refused.
	got, err = decodeCounts(append(b, 1, 2, 3))
	require.NoError(t, err)
	require.Equal(t, c, got)
}
