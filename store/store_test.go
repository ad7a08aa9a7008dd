package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv("STORE_TEST_CHILD"); mode != "" {
		runChild(mode, os.Getenv("STORE_TEST_PATH"))
		return
	}
	goleak.VerifyTestMain(m)
}

// soakEnv, set to 1, makes the tests that scale run at the sizes that
// once were their defaults: more events. .ci/run runs them so after the
// README's test command. Child processes inherit it.
const soakEnv = "DISPATCH_SOAK"

// soak reports whether the long versions of the tests are asked for.
func soak() bool { return os.Getenv(soakEnv) == "1" }

// clock is a stub time source tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Elapsed drives the queue's clock from the same stub, so a test that
// moves one moves both.
func (c *clock) Elapsed() time.Duration { return c.Now().Sub(time.Unix(0, 0)) }

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type bundle struct {
	path  string
	clock *clock
	st    *Store
}

func setup(t *testing.T, o Options) *bundle {
	t.Helper()
	b := &bundle{path: filepath.Join(t.TempDir(), "q.db"), clock: newClock()}
	if o.Now == nil {
		o.Now, o.Elapsed = b.clock.Now, b.clock.Elapsed
	}
	st, err := Open(b.path, o)
	require.NoError(t, err)
	b.st = st
	t.Cleanup(func() {
		if err := b.st.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("close: %v", err)
		}
	})
	return b
}

func (b *bundle) reopen(t *testing.T) {
	t.Helper()
	require.NoError(t, b.st.Close())
	st, err := Open(b.path, Options{Now: b.clock.Now, Elapsed: b.clock.Elapsed})
	require.NoError(t, err)
	b.st = st
}

func newEvents(n int, fn string) []NewEvent {
	evs := make([]NewEvent, n)
	for i := range evs {
		evs[i] = NewEvent{Function: fn, Payload: fmt.Appendf(nil, `{"n":%d}`, i)}
	}
	return evs
}

func enqueue(t *testing.T, st *Store, evs ...NewEvent) []uint64 {
	t.Helper()
	seqs, err := st.Enqueue(context.Background(), evs)
	require.NoError(t, err)
	return seqs
}

func stats(t *testing.T, st *Store) Stats {
	t.Helper()
	s, err := st.Stats()
	require.NoError(t, err)
	return s
}

// scanAll reads every event, failing the test on error.
func scanAll(t *testing.T, st *Store) []Event {
	t.Helper()
	var evs []Event
	require.NoError(t, st.Scan(func(e Event) error { evs = append(evs, e); return nil }))
	return evs
}

func seqsOf(evs []Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, e := range evs {
		out[i] = e.Seq
	}
	return out
}

func TestOpen(t *testing.T) {
	t.Parallel()

	t.Run("CreatesFileWithMode0600", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		fi, err := os.Stat(b.path)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	})

	t.Run("ReopenKeepsEventsAndSequence", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		first := enqueue(t, b.st, newEvents(3, "fn")...)
		b.reopen(t)
		evs := scanAll(t, b.st)
		require.Equal(t, first, seqsOf(evs))
		require.Equal(t, `{"n":2}`, string(evs[2].Payload))
		next := enqueue(t, b.st, newEvents(1, "fn")...)
		require.Equal(t, first[2]+1, next[0], "sequence numbers are never reused")
		require.Equal(t, int64(4), stats(t, b.st).Events)
	})

	t.Run("SecondOpenInProcessFailsAtOnce", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		start := time.Now()
		_, err := Open(b.path, Options{LockTimeout: time.Minute})
		require.ErrorIs(t, err, ErrLocked)
		require.Less(t, time.Since(start), 30*time.Second, "must not wait out the lock timeout")
	})

	t.Run("SecondOpenInAnotherProcessTimesOut", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "q.db")
		child, _ := startChild(t, "hold", path)
		defer child.Process.Kill()
		_, err := Open(path, Options{LockTimeout: 100 * time.Millisecond})
		require.ErrorIs(t, err, ErrLocked)
		require.Contains(t, err.Error(), "in use")
	})

	t.Run("CloseTwiceReturnsErrClosed", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		require.NoError(t, b.st.Close())
		require.ErrorIs(t, b.st.Close(), ErrClosed)
		_, err := b.st.Enqueue(context.Background(), newEvents(1, "fn"))
		require.ErrorIs(t, err, ErrClosed)
		_, err = b.st.Lease(context.Background(), 1, time.Minute)
		require.ErrorIs(t, err, ErrClosed)
		_, err = b.st.Stats()
		require.ErrorIs(t, err, ErrClosed)
		// The file is released: it opens again.
		st, err := Open(b.path, Options{})
		require.NoError(t, err)
		require.NoError(t, st.Close())
	})

	t.Run("NotAQueueFile", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		text := filepath.Join(dir, "text")
		require.NoError(t, os.WriteFile(text, []byte("hello, this is not a database at all, but long enough to be read as one..."), 0o600))
		_, err := Open(text, Options{})
		var ce *CorruptError
		require.ErrorAs(t, err, &ce)

		foreign := filepath.Join(dir, "foreign")
		db, err := bolt.Open(foreign, 0o600, nil)
		require.NoError(t, err)
		require.NoError(t, db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("theirs")); return err }))
		require.NoError(t, db.Close())
		_, err = Open(foreign, Options{})
		require.ErrorAs(t, err, &ce)
		require.Contains(t, err.Error(), "not a dispatcher queue")
	})

	t.Run("NewerFormatIsRefused", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		require.NoError(t, b.st.Close())
		rawUpdate(t, b.path, func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyFormat, []byte{formatVersion + 1}) })
		_, err := Open(b.path, Options{})
		require.ErrorContains(t, err, "newer than this library reads")
	})

	t.Run("CorruptCountersAreNamed", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		enqueue(t, b.st, newEvents(1, "fn")...)
		require.NoError(t, b.st.Close())
		rawUpdate(t, b.path, func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyCounters, []byte{1, 0xff}) })
		_, err := Open(b.path, Options{})
		var ce *CorruptError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, "counters", ce.What)
	})
}

func rawUpdate(t *testing.T, path string, fn func(*bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	require.NoError(t, err)
	require.NoError(t, db.Update(fn))
	require.NoError(t, db.Close())
}

func TestLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("DueOrderThenFIFO", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		now := b.clock.Now()
		seqs := enqueue(t, b.st,
			NewEvent{Function: "a", Due: now.Add(2 * time.Second)},
			NewEvent{Function: "b"},
			NewEvent{Function: "c", Due: now.Add(time.Second)},
			NewEvent{Function: "d"},
		)
		got, err := b.st.Lease(ctx, 10, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []uint64{seqs[1], seqs[3]}, seqsOf(got), "only due events, first in first out")
		b.clock.Add(5 * time.Second)
		got, err = b.st.Lease(ctx, 10, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []uint64{seqs[2], seqs[0]}, seqsOf(got), "earlier due first")
	})

	t.Run("CountsAttemptsAndTimes", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		seq := enqueue(t, b.st, NewEvent{Function: "fn", Qualifier: "prod", Key: "k1", Payload: []byte(`{"a":1}`)})[0]
		t0 := b.clock.Now()
		got, err := b.st.Lease(ctx, 1, time.Minute)
		require.NoError(t, err)
		require.Len(t, got, 1)
		e := got[0]
		require.Equal(t, seq, e.Seq)
		require.Equal(t, "fn", e.Function)
		require.Equal(t, "prod", e.Qualifier)
		require.Equal(t, "k1", e.Key)
		require.Equal(t, `{"a":1}`, string(e.Payload))
		require.Equal(t, 1, e.Attempts)
		require.True(t, e.Leased)
		require.True(t, e.FirstAttempt.Equal(t0))
		require.True(t, e.LeaseUntil.Equal(t0.Add(time.Minute)))
		st := stats(t, b.st)
		require.Equal(t, Stats{Events: 1, Leased: 1, Bytes: st.Bytes, Enqueued: 1, LeasesTaken: 1, Commits: 2}, st)

		lastErr := ErrorInfo{Code: "TooManyRequestsException", Message: "slow down", StatusCode: 429, RequestID: "r-1"}
		b.clock.Add(time.Second)
		require.NoError(t, b.st.Reschedule(ctx, seq, b.clock.Now().Add(10*time.Second), lastErr))
		st = stats(t, b.st)
		require.Equal(t, int64(1), st.Scheduled)
		require.Equal(t, int64(0), st.Ready)
		none, err := b.st.Lease(ctx, 1, time.Minute)
		require.NoError(t, err)
		require.Empty(t, none, "not due yet")

		b.clock.Add(10 * time.Second)
		got, err = b.st.Lease(ctx, 1, time.Minute)
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Equal(t, 2, got[0].Attempts)
		require.Equal(t, lastErr, got[0].LastError)
		require.True(t, got[0].FirstAttempt.Equal(t0), "first attempt time is kept")
		require.True(t, got[0].LastAttempt.Equal(b.clock.Now()))

		require.NoError(t, b.st.Ack(ctx, seq))
		st = stats(t, b.st)
		require.Equal(t, int64(0), st.Events)
		require.Equal(t, int64(0), st.Bytes)
		require.Equal(t, uint64(1), st.Acked)
		_, err = b.st.Get(seq)
		require.ErrorIs(t, err, ErrNotFound)
	})

	t.Run("ReleaseKeepsPlaceAndCanRefund", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		seqs := enqueue(t, b.st, newEvents(3, "fn")...)
		got, err := b.st.Lease(ctx, 1, time.Minute)
		require.NoError(t, err)
		require.Equal(t, seqs[0], got[0].Seq)
		require.NoError(t, b.st.Release(ctx, true, seqs[0]))
		got, err = b.st.Lease(ctx, 3, time.Minute)
		require.NoError(t, err)
		require.Equal(t, seqs, seqsOf(got), "a released event keeps its place in line")
		require.Equal(t, 1, got[0].Attempts, "the refunded attempt is not counted")
		require.True(t, got[0].FirstAttempt.Equal(b.clock.Now()))
		require.NoError(t, b.st.Release(ctx, false, seqs...))
		got, err = b.st.Lease(ctx, 1, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 2, got[0].Attempts)
	})

	t.Run("WrongStateChangesNothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		seqs := enqueue(t, b.st, newEvents(2, "fn")...)
		got, err := b.st.Lease(ctx, 1, time.Minute)
		require.NoError(t, err)
		require.Len(t, got, 1)
		before := stats(t, b.st)
		require.ErrorIs(t, b.st.Ack(ctx, seqs[0], seqs[1]), ErrNotLeased)
		require.ErrorIs(t, b.st.Ack(ctx, 999), ErrNotFound)
		require.ErrorIs(t, b.st.Reschedule(ctx, seqs[1], b.clock.Now(), ErrorInfo{}), ErrNotLeased)
		require.ErrorIs(t, b.st.Release(ctx, false, seqs[1]), ErrNotLeased)
		after := stats(t, b.st)
		require.Equal(t, before.Events, after.Events)
		require.Equal(t, before.Leased, after.Leased)
		require.Equal(t, before.Ready, after.Ready)
		require.Equal(t, uint64(0), after.Acked)
		require.Len(t, scanAll(t, b.st), 2)
	})

	t.Run("ReclaimExpired", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		seqs := enqueue(t, b.st, newEvents(2, "fn")...)
		_, err := b.st.Lease(ctx, 1, time.Second)
		require.NoError(t, err)
		_, err = b.st.Lease(ctx, 1, time.Hour)
		require.NoError(t, err)
		n, err := b.st.Reclaim(ctx)
		require.NoError(t, err)
		require.Zero(t, n)
		b.clock.Add(2 * time.Second)
		n, err = b.st.Reclaim(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		ev, err := b.st.Get(seqs[0])
		require.NoError(t, err)
		require.False(t, ev.Leased)
		require.Equal(t, 1, ev.Attempts)
		require.ErrorIs(t, b.st.Ack(ctx, seqs[0]), ErrNotLeased, "a reclaimed lease cannot be acked")
		require.NoError(t, b.st.Ack(ctx, seqs[1]))
	})
}

func TestCapacity(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("MaxEventsRefusesWholeBatch", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{MaxEvents: 5})
		enqueue(t, b.st, newEvents(3, "fn")...)
		_, err := b.st.Enqueue(ctx, newEvents(3, "fn"))
		require.ErrorIs(t, err, ErrFull)
		require.Equal(t, int64(3), stats(t, b.st).Events, "nothing of the batch is written")
		require.Len(t, scanAll(t, b.st), 3)
		enqueue(t, b.st, newEvents(2, "fn")...)
	})

	t.Run("MaxBytes", func(t *testing.T) {
		t.Parallel()
		one := LogicalSize(NewEvent{Function: "fn", Payload: []byte(`{"n":0}`)})
		b := setup(t, Options{MaxBytes: 2 * one})
		enqueue(t, b.st, newEvents(2, "fn")...)
		require.Equal(t, 2*one, stats(t, b.st).Bytes)
		_, err := b.st.Enqueue(ctx, newEvents(1, "fn"))
		require.ErrorIs(t, err, ErrFull)
		// Room comes back as events leave.
		got, err := b.st.Lease(ctx, 1, time.Minute)
		require.NoError(t, err)
		require.NoError(t, b.st.Ack(ctx, got[0].Seq))
		enqueue(t, b.st, newEvents(1, "fn")...)
	})
}

func TestRemove(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, Options{})
	seqs := enqueue(t, b.st, newEvents(3, "fn")...)
	_, err := b.st.Lease(ctx, 1, time.Minute)
	require.NoError(t, err)

	letters := []byte(Letters.String())
	move := func(tx *Tx, ev Event) error {
		bk, err := tx.Bucket(Letters)
		if err != nil {
			return err
		}
		return bk.Put(seqKey(ev.Seq), ev.Payload)
	}
	fail := func(*Tx, Event) error { return errors.New("sink down") }

	_, err = b.st.Remove(ctx, seqs[0], fail)
	require.ErrorContains(t, err, "sink down")
	_, err = b.st.Get(seqs[0])
	require.NoError(t, err, "a failed move leaves the event queued")

	for _, seq := range []uint64{seqs[0], seqs[1]} { // one leased, one ready
		ev, err := b.st.Remove(ctx, seq, move)
		require.NoError(t, err)
		require.Equal(t, seq, ev.Seq)
	}
	_, err = b.st.Remove(ctx, seqs[0], move)
	require.ErrorIs(t, err, ErrNotFound)

	st := stats(t, b.st)
	require.Equal(t, int64(1), st.Events)
	require.Equal(t, int64(0), st.Leased)
	require.Equal(t, uint64(2), st.Removed)
	require.NoError(t, b.st.db.View(func(tx *bolt.Tx) error {
		require.Equal(t, `{"n":0}`, string(tx.Bucket(letters).Get(seqKey(seqs[0]))))
		require.Equal(t, `{"n":1}`, string(tx.Bucket(letters).Get(seqKey(seqs[1]))))
		return nil
	}))
	got, err := b.st.Lease(ctx, 5, time.Minute)
	require.NoError(t, err)
	require.Equal(t, []uint64{seqs[2]}, seqsOf(got))
}

func TestCorruptRecordIsSetAside(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, Options{})
	seqs := enqueue(t, b.st, newEvents(3, "fn")...)
	require.NoError(t, b.st.Close())
	rawUpdate(t, b.path, func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketEvents).Put(seqKey(seqs[0]), []byte{recordV1, 7}); err != nil {
			return err
		}
		return tx.Bucket(bucketPayloads).Put(seqKey(seqs[1]), []byte(`{"n":9}`))
	})
	st, err := Open(b.path, Options{Now: b.clock.Now, Elapsed: b.clock.Elapsed})
	require.NoError(t, err)
	b.st = st

	_, err = st.Get(seqs[0])
	var ce *CorruptError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, fmt.Sprintf("event %d", seqs[0]), ce.What)
	require.ErrorContains(t, err, "state")
	_, err = st.Get(seqs[1])
	require.ErrorContains(t, err, "checksum mismatch")

	got, err := st.Lease(ctx, 10, time.Minute)
	require.NoError(t, err)
	require.Equal(t, []uint64{seqs[2]}, seqsOf(got), "unreadable events do not block the queue")
	s := stats(t, st)
	require.Equal(t, int64(2), s.Corrupt)
	require.Equal(t, int64(1), s.Events)
}

func TestCancelledContextWritesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := b.st.Enqueue(ctx, newEvents(1, "fn"))
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, int64(0), stats(t, b.st).Events)
	require.Empty(t, scanAll(t, b.st))
}

// TestCancelledWhileWaiting holds the writer busy, cancels a queued
// Enqueue, and checks that it returns and is never written.
func TestCancelledWhileWaiting(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	release := make(chan struct{})
	busy := make(chan struct{})
	go func() {
		_ = b.st.do(context.Background(), func(*txn) error { close(busy); <-release; return nil })
	}()
	<-busy
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := b.st.Enqueue(ctx, newEvents(1, "fn")); errc <- err }()
	waitFor(t, func() bool { return len(b.st.ops) == 1 })
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
	close(release)
	enqueue(t, b.st, newEvents(1, "later")...) // the writer has moved past the cancelled op
	evs := scanAll(t, b.st)
	require.Len(t, evs, 1)
	require.Equal(t, "later", evs[0].Function)
}

// TestGroupCommit queues several writes behind a busy writer and checks
// they commit in one transaction.
func TestGroupCommit(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	release := make(chan struct{})
	busy := make(chan struct{})
	go func() {
		_ = b.st.do(context.Background(), func(*txn) error { close(busy); <-release; return nil })
	}()
	<-busy
	const n = 20
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { enqueue(t, b.st, newEvents(1, "fn")...) })
	}
	waitFor(t, func() bool { return len(b.st.ops) == n })
	close(release)
	wg.Wait()
	s := stats(t, b.st)
	require.Equal(t, uint64(n), s.Enqueued)
	require.Equal(t, uint64(2), s.Commits, "the busy op, then all twenty in one commit")
}

// TestFailingOpDoesNotFailItsNeighbours shares a transaction between a
// failing move and ordinary enqueues.
func TestFailingOpDoesNotFailItsNeighbours(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	seq := enqueue(t, b.st, newEvents(1, "fn")...)[0]
	release := make(chan struct{})
	busy := make(chan struct{})
	go func() {
		_ = b.st.do(context.Background(), func(*txn) error { close(busy); <-release; return nil })
	}()
	<-busy
	var wg sync.WaitGroup
	var removeErr error
	wg.Go(func() {
		_, removeErr = b.st.Remove(context.Background(), seq, func(*Tx, Event) error { return errors.New("boom") })
	})
	waitFor(t, func() bool { return len(b.st.ops) == 1 })
	for range 5 {
		wg.Go(func() { enqueue(t, b.st, newEvents(1, "fn")...) })
	}
	waitFor(t, func() bool { return len(b.st.ops) == 6 })
	close(release)
	wg.Wait()
	require.ErrorContains(t, removeErr, "boom")
	require.Equal(t, int64(6), stats(t, b.st).Events)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestConcurrentProducersAndConsumers runs producers and lease/ack loops at
// once; every event must be acked exactly once.
func TestConcurrentProducersAndConsumers(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{Now: time.Now})
	const producers, perProducer, consumers = 16, 100, 8
	ctx := context.Background()
	var produced sync.WaitGroup
	for p := range producers {
		produced.Go(func() {
			for i := range perProducer {
				_, err := b.st.Enqueue(ctx, []NewEvent{{Function: "fn", Payload: fmt.Appendf(nil, `{"p":%d,"i":%d}`, p, i)}})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var mu sync.Mutex
	seen := map[uint64]int{}
	var acked atomic.Int64
	var consumed sync.WaitGroup
	for range consumers {
		consumed.Go(func() {
			for acked.Load() < producers*perProducer {
				evs, err := b.st.Lease(ctx, 8, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if len(evs) == 0 {
					select {
					case <-b.st.Ready():
					case <-time.After(10 * time.Millisecond):
					}
					continue
				}
				seqs := make([]uint64, len(evs))
				mu.Lock()
				for i, e := range evs {
					seen[e.Seq]++
					seqs[i] = e.Seq
				}
				mu.Unlock()
				if err := b.st.Ack(ctx, seqs...); err != nil {
					t.Error(err)
					return
				}
				acked.Add(int64(len(evs)))
			}
		})
	}
	produced.Wait()
	consumed.Wait()
	require.Len(t, seen, producers*perProducer)
	for seq, n := range seen {
		require.Equal(t, 1, n, "event %d leased more than once", seq)
	}
	s := stats(t, b.st)
	require.Equal(t, int64(0), s.Events)
	require.Equal(t, uint64(producers*perProducer), s.Acked)
	require.Less(t, s.Commits, s.Enqueued+s.LeasesTaken+s.Acked, "writes were grouped")
}

// TestLeasesOfKilledProcessReturn has a child lease events, spend attempts
// on them, and get SIGKILLed holding the leases.
func TestLeasesOfKilledProcessReturn(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "q.db")
	child, out := startChild(t, "lease", path)
	require.Equal(t, "leased", out)
	require.NoError(t, child.Process.Kill())
	_ = child.Wait()

	st, err := Open(path, Options{})
	require.NoError(t, err)
	defer st.Close()
	s := stats(t, st)
	require.Equal(t, int64(10), s.Events)
	require.Equal(t, int64(0), s.Leased)
	require.Equal(t, int64(10), s.Ready)
	require.Equal(t, uint64(4), s.Recovered)
	evs := scanAll(t, st)
	for i, e := range evs {
		want := 0
		if i < 4 {
			want = 2
		}
		require.Equal(t, want, e.Attempts, "event %d", e.Seq)
		require.False(t, e.Leased)
	}
	got, err := st.Lease(context.Background(), 10, time.Minute)
	require.NoError(t, err)
	require.Equal(t, seqsOf(evs), seqsOf(got), "recovered events keep their place in line")
}

// startChild re-executes the test binary in a child mode and returns once
// the child printed its first line.
func startChild(t *testing.T, mode, path string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "STORE_TEST_CHILD="+mode, "STORE_TEST_PATH="+path)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err, "child said nothing")
	return cmd, line[:len(line)-1]
}

func runChild(mode, path string) {
	if strings.HasPrefix(mode, "compact-") {
		compactChild(mode, path)
		return
	}
	if strings.HasPrefix(mode, "migrate-") {
		migrateChild(mode, path)
		return
	}
	if strings.HasPrefix(mode, "wal-") {
		walChild(mode, path)
		return
	}
	if strings.HasPrefix(mode, "evict-") {
		evictChild(mode, path)
		return
	}
	st, err := Open(path, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx := context.Background()
	switch mode {
	case "hold":
	case "lease":
		must := func(err error) {
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
		}
		_, err := st.Enqueue(ctx, newEvents(10, "fn"))
		must(err)
		evs, err := st.Lease(ctx, 4, time.Hour)
		must(err)
		for _, e := range evs {
			must(st.Reschedule(ctx, e.Seq, e.Due, ErrorInfo{Code: "ServiceException"}))
		}
		_, err = st.Lease(ctx, 4, time.Hour)
		must(err)
	}
	fmt.Println(map[string]string{"hold": "holding", "lease": "leased"}[mode])
	time.Sleep(time.Hour) // until SIGKILL
}

func TestAckAndLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, Options{})
	seqs := enqueue(t, b.st, newEvents(5, "fn")...)
	first, err := b.st.Lease(ctx, 2, time.Minute)
	require.NoError(t, err)
	commits := stats(t, b.st).Commits

	got, notLeased, err := b.st.AckAndLease(ctx, []uint64{seqs[0], seqs[1], seqs[4], 999}, 2, time.Minute, nil, nil)
	require.NoError(t, err)
	require.Equal(t, []uint64{seqs[2], seqs[3]}, seqsOf(got))
	require.Equal(t, []uint64{seqs[4]}, notLeased, "not leased (ready) is reported, gone is skipped, neither is fatal")
	st := stats(t, b.st)
	require.Equal(t, commits+1, st.Commits, "one transaction")
	require.Equal(t, uint64(2), st.Acked)
	require.Equal(t, int64(3), st.Events)
	require.Equal(t, int64(2), st.Leased)
	for _, e := range first {
		_, err := b.st.Get(e.Seq)
		require.ErrorIs(t, err, ErrNotFound)
	}
}

func TestReleaseAll(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, Options{})
	enqueue(t, b.st, newEvents(3, "fn")...)
	_, err := b.st.Lease(ctx, 2, time.Hour)
	require.NoError(t, err)
	n, err := b.st.ReleaseAll(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	st := stats(t, b.st)
	require.Zero(t, st.Leased)
	require.Equal(t, int64(3), st.Ready)
	for _, e := range scanAll(t, b.st)[:2] {
		require.Equal(t, 1, e.Attempts, "attempts kept")
	}
}

func TestInsert(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, Options{MaxEvents: 2})
	side := []byte(Letters.String())
	mark := func(tx *Tx) error {
		bk, err := tx.Bucket(Letters)
		if err != nil {
			return err
		}
		return bk.Put([]byte("k"), []byte("v"))
	}
	seqs, err := b.st.Insert(ctx, func(tx *Tx) ([]NewEvent, error) {
		return newEvents(2, "fn"), mark(tx)
	}, nil)
	require.NoError(t, err)
	require.Len(t, seqs, 2)

	require.NoError(t, b.st.db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(side) }))
	_, err = b.st.Insert(ctx, func(tx *Tx) ([]NewEvent, error) {
		return newEvents(1, "fn"), mark(tx)
	}, nil)
	require.ErrorIs(t, err, ErrFull)
	require.NoError(t, b.st.db.View(func(tx *bolt.Tx) error {
		require.Nil(t, tx.Bucket(side), "what fn wrote is rolled back with the refused events")
		return nil
	}))
	require.Equal(t, int64(2), stats(t, b.st).Events)
}

func TestCompact(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, Options{})
	enqueue(t, b.st, newEvents(2000, "fn")...)
	for {
		evs, err := b.st.Lease(ctx, 256, time.Minute)
		require.NoError(t, err)
		if len(evs) <= 10 {
			break
		}
		seqs := make([]uint64, len(evs))
		for i, e := range evs {
			seqs[i] = e.Seq
		}
		require.NoError(t, b.st.Ack(ctx, seqs...))
	}
	_, _, err := Compact(b.path, 50*time.Millisecond)
	require.ErrorIs(t, err, ErrLocked, "an open file is not compacted")
	before := scanAll(t, b.st)
	require.NoError(t, b.st.Close())

	sizeBefore, sizeAfter, err := Compact(b.path, time.Second)
	require.NoError(t, err)
	require.Less(t, sizeAfter, sizeBefore)
	st, err := Open(b.path, Options{Now: b.clock.Now, Elapsed: b.clock.Elapsed})
	require.NoError(t, err)
	b.st = st
	require.Equal(t, before, scanAll(t, st))
}
