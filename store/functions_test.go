package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// functionsOf returns Functions by name, failing the test on error.
func functionsOf(t *testing.T, st *Store) map[string]FunctionStats {
	t.Helper()
	fs, err := st.Functions()
	require.NoError(t, err)
	out := map[string]FunctionStats{}
	for i, f := range fs {
		if i > 0 {
			require.Less(t, fs[i-1].Name, f.Name, "sorted by name")
		}
		out[f.Name] = f
	}
	return out
}

// checkClosed closes st and checks its file.
func checkClosed(t *testing.T, b *bundle) {
	t.Helper()
	require.NoError(t, b.st.Close())
	rep, err := Check(b.path)
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
	b.open(t)
}

// open opens the bundle's file again once it was closed.
func (b *bundle) open(t *testing.T) {
	t.Helper()
	st, err := Open(b.path, Options{Now: b.clock.Now, Elapsed: b.clock.Elapsed})
	require.NoError(t, err)
	b.st = st
}

func TestPause(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, Options{})

	require.NoError(t, b.st.SetPaused(ctx, "A", true), "before any event of A")
	require.True(t, b.st.Paused("A"))
	require.Equal(t, map[string]FunctionStats{"A": {Name: "A", Paused: true}}, functionsOf(t, b.st))
	b.reopen(t)
	require.True(t, b.st.Paused("A"), "durable")

	now := b.clock.Now()
	enqueue(t, b.st, NewEvent{Function: "A", Due: now.Add(-time.Minute)}, NewEvent{Function: "A"})
	bSeqs := enqueue(t, b.st, NewEvent{Function: "B", Due: now.Add(time.Second)})
	due, ok, err := b.st.NextDue()
	require.NoError(t, err)
	require.True(t, ok)
	require.True(t, due.Equal(now.Add(time.Second)), "a paused function's events are not next: %v", due)
	got, err := b.st.Lease(ctx, 10, time.Minute)
	require.NoError(t, err)
	require.Empty(t, got, "A is paused, B not due")
	b.clock.Add(time.Second)
	got, err = b.st.Lease(ctx, 10, time.Minute)
	require.NoError(t, err)
	require.Equal(t, bSeqs, seqsOf(got))
	require.Equal(t, int64(2), stats(t, b.st).Ready, "paused events still count as ready")

	select { // drain the signals of the enqueues
	case <-b.st.Ready():
	default:
	}
	require.NoError(t, b.st.SetPaused(ctx, "A", false))
	select {
	case <-b.st.Ready():
	default:
		t.Fatal("resuming did not wake a waiting leaser")
	}
	got, err = b.st.Lease(ctx, 10, time.Minute)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"A": 2}, countBy(got))

	// Pausing leaves leases alone.
	require.NoError(t, b.st.SetPaused(ctx, "A", true))
	fs := functionsOf(t, b.st)["A"]
	require.Equal(t, FunctionStats{Name: "A", Paused: true, Events: 2, Leased: 2, Bytes: fs.Bytes}, fs)
	require.NoError(t, b.st.Release(ctx, false, seqsOf(got)...))
	got, err = b.st.Lease(ctx, 10, time.Minute)
	require.NoError(t, err)
	require.Empty(t, got)
	_, ok, err = b.st.NextDue()
	require.NoError(t, err)
	require.False(t, ok, "nothing due but A's, paused")
	checkClosed(t, b)
	want := functionsOf(t, b.st)
	require.Equal(t, FunctionStats{Name: "A", Paused: true, Events: 2, Ready: 2, Bytes: fs.Bytes}, want["A"])

	require.NoError(t, b.st.Close())
	ro, err := Open(b.path, Options{ReadOnly: true, Now: b.clock.Now, Elapsed: b.clock.Elapsed})
	require.NoError(t, err)
	require.True(t, ro.Paused("A"), "read-only too")
	require.Equal(t, want, functionsOf(t, ro))
	require.NoError(t, ro.Close())
	b.open(t)

	// A paused function with no events keeps its record; resumed, it
	// goes.
	require.NoError(t, b.st.SetPaused(ctx, "A", false))
	got, err = b.st.Lease(ctx, 10, time.Minute)
	require.NoError(t, err)
	require.NoError(t, b.st.Ack(ctx, seqsOf(got)...))
	require.NoError(t, b.st.SetPaused(ctx, "A", true))
	require.Len(t, functionsOf(t, b.st), 1)
	require.NoError(t, b.st.SetPaused(ctx, "A", false))
	require.Empty(t, functionsOf(t, b.st))
	require.False(t, b.st.Paused("A"))
	require.NoError(t, b.st.SetPaused(ctx, "never-seen", false))
	require.Empty(t, functionsOf(t, b.st))

	require.ErrorContains(t, b.st.SetPaused(ctx, "", true), "function name")
	checkClosed(t, b)
}

func TestFunctions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, Options{})
	now := b.clock.Now()
	size := func(e NewEvent) int64 { return LogicalSize(e) }

	a := []NewEvent{
		{Function: "A", Qualifier: "live", Key: "k1", Payload: []byte(`{"x":1}`)},
		{Function: "A", Payload: []byte(`{"x":22}`)},
		{Function: "A", Payload: []byte(`{}`), Due: now.Add(time.Hour)},
	}
	z := []NewEvent{{Function: "Z", Payload: []byte(`[1,2,3]`)}}
	aSeqs := enqueue(t, b.st, a...)
	zSeqs := enqueue(t, b.st, z...)
	aBytes := size(a[0]) + size(a[1]) + size(a[2])
	require.Equal(t, map[string]FunctionStats{
		"A": {Name: "A", Events: 3, Bytes: aBytes, Scheduled: 1, Ready: 2},
		"Z": {Name: "Z", Events: 1, Bytes: size(z[0]), Ready: 1},
	}, functionsOf(t, b.st))

	got, err := b.st.Lease(ctx, 2, time.Minute)
	require.NoError(t, err)
	require.Equal(t, []uint64{aSeqs[0], zSeqs[0]}, seqsOf(got))
	require.Equal(t, map[string]FunctionStats{
		"A": {Name: "A", Events: 3, Leased: 1, Bytes: aBytes, Scheduled: 1, Ready: 1},
		"Z": {Name: "Z", Events: 1, Leased: 1, Bytes: size(z[0])},
	}, functionsOf(t, b.st))

	require.NoError(t, b.st.Reschedule(ctx, aSeqs[0], now.Add(time.Minute), ErrorInfo{Code: "x"}))
	require.NoError(t, b.st.Ack(ctx, zSeqs[0]))
	require.Equal(t, map[string]FunctionStats{
		"A": {Name: "A", Events: 3, Bytes: aBytes, Scheduled: 2, Ready: 1},
	}, functionsOf(t, b.st), "Z gone with its last event")

	_, err = b.st.Remove(ctx, aSeqs[1], nil)
	require.NoError(t, err)
	aBytes -= size(a[1])
	require.Equal(t, map[string]FunctionStats{
		"A": {Name: "A", Events: 2, Bytes: aBytes, Scheduled: 2},
	}, functionsOf(t, b.st))
	st := stats(t, b.st)
	require.Equal(t, int64(2), st.Scheduled)
	require.Equal(t, aBytes, st.Bytes)

	b.clock.Add(2 * time.Hour)
	got, _, err = b.st.AckAndLease(ctx, nil, 10, time.Minute, nil, nil)
	require.NoError(t, err)
	require.Len(t, got, 2)
	_, _, err = b.st.AckAndLease(ctx, seqsOf(got), 0, time.Minute, nil, nil)
	require.NoError(t, err)
	require.Empty(t, functionsOf(t, b.st))
	checkClosed(t, b)
	require.Empty(t, functionsOf(t, b.st), "after reopening too")
}

// TestRegistryIsBounded: a record goes with its function's last event,
// whatever the number of names seen.
func TestRegistryIsBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, Options{})
	evs := make([]NewEvent, 500)
	for i := range evs {
		evs[i] = NewEvent{Function: fmt.Sprintf("fn-%03d", i)}
	}
	enqueue(t, b.st, evs...)
	require.Len(t, functionsOf(t, b.st), 500)
	got, err := b.st.Lease(ctx, 1000, time.Minute)
	require.NoError(t, err)
	require.Len(t, got, 500)
	require.NoError(t, b.st.Ack(ctx, seqsOf(got)...))
	require.Empty(t, functionsOf(t, b.st))
	require.NoError(t, b.st.db.View(func(tx *bolt.Tx) error {
		require.Zero(t, tx.Bucket(bucketFunctions).Stats().KeyN)
		require.Zero(t, tx.Bucket(bucketFnReady).Stats().KeyN)
		return nil
	}))
	b.st.statMu.Lock()
	require.Empty(t, b.st.fns)
	require.Empty(t, b.st.fnNames)
	b.st.statMu.Unlock()
	// A name seen again gets a new id: a key of the old one cannot be
	// taken for it.
	enqueue(t, b.st, NewEvent{Function: "fn-000"})
	require.NoError(t, b.st.flush())
	b.st.statMu.Lock()
	require.Equal(t, uint32(501), b.st.fns["fn-000"].id)
	b.st.statMu.Unlock()
}

func TestFunctionIDsWrap(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	enqueue(t, b.st, newEvents(1, "one")...) // id 1
	require.NoError(t, b.st.Close())
	rawUpdate(t, b.path, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketFunctions).SetSequence(math.MaxUint32 - 1)
	})
	b.open(t)
	enqueue(t, b.st, newEvents(1, "two")...)
	enqueue(t, b.st, newEvents(1, "three")...)
	require.NoError(t, b.st.flush()) // the registry takes logged events at the checkpoint
	b.st.statMu.Lock()
	ids := map[string]uint32{}
	for name, f := range b.st.fns {
		ids[name] = f.id
	}
	b.st.statMu.Unlock()
	require.Equal(t, map[string]uint32{"one": 1, "two": math.MaxUint32, "three": 2}, ids, "wrapped, past the id in use")
	got, err := b.st.Lease(context.Background(), 10, time.Minute)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"one": 1, "two": 1, "three": 1}, countBy(got))
	checkClosed(t, b)
}

func TestEnqueueRefusesFunctionNamesNoKeyCanHold(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	for _, name := range []string{"", string(bytes.Repeat([]byte{'f'}, MaxKeySize+1))} {
		_, err := b.st.Enqueue(context.Background(), []NewEvent{{Function: "ok"}, {Function: name}})
		require.ErrorContains(t, err, "function name")
	}
	require.Zero(t, stats(t, b.st).Events, "nothing of the batch")
}

// TestSetAsideKeepsTheCounts: a record set aside at its lease leaves the
// global and the per-function counts as the file is.
func TestSetAsideKeepsTheCounts(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	seqs := enqueue(t, b.st, newEvents(3, "orders")...)
	require.NoError(t, b.st.Close())
	rawUpdate(t, b.path, func(tx *bolt.Tx) error {
		events := tx.Bucket(bucketEvents)
		rec := bytes.Clone(events.Get(seqKey(seqs[1])))
		rec[bytes.Index(rec, []byte("orders"))] ^= 0x20
		return events.Put(seqKey(seqs[1]), rec)
	})
	b.open(t)
	got, err := b.st.Lease(context.Background(), 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, got, 2)
	fs := functionsOf(t, b.st)["orders"]
	require.Equal(t, int64(2), fs.Events)
	require.Equal(t, int64(2), fs.Leased)
	require.Equal(t, stats(t, b.st).Bytes, fs.Bytes)
	checkClosed(t, b)
}

func TestFnRecordRoundTrip(t *testing.T) {
	for _, r := range []fnRecord{
		{id: 1},
		{id: math.MaxUint32, paused: true, events: math.MaxInt64, leased: math.MaxInt64, bytes: math.MaxInt64},
		{id: 7, events: 3, leased: 1, bytes: 300},
	} {
		got, err := decodeFnRecord(r.encode())
		require.NoError(t, err)
		require.Equal(t, r, got)
	}
	for _, tc := range []struct {
		r    fnRecord
		want string
	}{
		{fnRecord{}, "id: zero"},
		{fnRecord{id: 1, events: 1, leased: 2}, "inconsistent"},
		{fnRecord{id: 1, bytes: -1}, "negative"},
	} {
		_, err := decodeFnRecord(tc.r.encode())
		require.ErrorContains(t, err, tc.want)
	}
	b := fnRecord{id: 9, events: 1}.encode()
	b[5] = 0x02 // an unknown flag, under a checksum that matches
	sum := len(b) - recordSumSize
	_, err := decodeFnRecord(binary.BigEndian.AppendUint32(b[:sum:sum], checksum(b[:sum])))
	require.ErrorContains(t, err, "unknown bits")
}

// FuzzDecodeFnRecord: the registry record's decoder never panics, and what
// it accepts encodes back to the same bytes. The seed corpus is in
// testdata/fuzz/FuzzDecodeFnRecord and runs with every go test.
func FuzzDecodeFnRecord(f *testing.F) {
	f.Add(fnRecord{id: 1, events: 2, leased: 1, bytes: 130}.encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeFnRecord(b)
		if err != nil {
			return
		}
		if r.id == 0 || r.events < 0 || r.leased < 0 || r.leased > r.events || r.bytes < 0 {
			t.Fatalf("accepted %+v", r)
		}
		if again := r.encode(); !bytes.Equal(again, b) {
			t.Fatalf("decoded %x but re-encodes as %x", b, again)
		}
	})
}
