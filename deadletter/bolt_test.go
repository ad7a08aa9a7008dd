package deadletter_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/store"
)

// bundle is what a test needs: a real queue file and a sink on it.
type bundle struct {
	path string
	st   *store.Store
	sink *deadletter.Bolt
}

func setup(t *testing.T) *bundle {
	t.Helper()
	path := filepath.Join(t.TempDir(), "queue.db")
	st, err := store.Open(path, store.Options{})
	require.NoError(t, err)
	b := &bundle{path: path, st: st, sink: deadletter.NewBolt(st)}
	// b.st, not st: bucketOnDisk opens the store again.
	t.Cleanup(func() { require.NoError(t, b.st.Close()) })
	return b
}

// bucketOnDisk reports whether the file holds the letters bucket at all,
// which no read through the store tells from an empty bucket: it closes
// the store, looks with bbolt read-only, and opens the store again.
func (b *bundle) bucketOnDisk(t *testing.T) bool {
	t.Helper()
	require.NoError(t, b.st.Close())
	db, err := bolt.Open(b.path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	require.NoError(t, err)
	var found bool
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		found = tx.Bucket([]byte(store.Letters.String())) != nil
		return nil
	}))
	require.NoError(t, db.Close())
	st, err := store.Open(b.path, store.Options{})
	require.NoError(t, err)
	b.st, b.sink = st, deadletter.NewBolt(st)
	return found
}

var at = time.Date(2026, 3, 1, 12, 0, 0, 5, time.UTC)

func letter(id uint64) deadletter.Letter {
	return deadletter.Letter{
		ID: strconv.FormatUint(id, 10), Function: "orders", Qualifier: "live", Key: fmt.Sprintf("order-%d", id),
		Payload: fmt.Appendf(nil, `{"order":%d}`, id), Enqueued: at, Reason: deadletter.Rejected, Attempts: 1,
		FirstAttempt: at.Add(time.Second), LastAttempt: at.Add(time.Second),
		LastError: deadletter.ErrorInfo{
			Code: "ResourceNotFoundException", Message: "Function not found: orders:live", StatusCode: 404, RequestID: "req-" + strconv.FormatUint(id, 10),
		},
		DeadLettered: at.Add(2 * time.Second),
	}
}

// keys counts the bucket's keys the slow way, to check Count.
func (b *bundle) keys(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, b.st.View(func(tx *store.Tx) error {
		bk, err := tx.Bucket(store.Letters)
		if err != nil {
			return err
		}
		n = 0
		c := bk.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			n++
		}
		return nil
	}))
	return n
}

func (b *bundle) count(t *testing.T) int {
	t.Helper()
	n, err := b.sink.Count()
	require.NoError(t, err)
	require.Equal(t, b.keys(t), n, "Count disagrees with the bucket")
	return n
}

func TestBolt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("EmptyFile", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.Zero(t, b.count(t))
		ls, next, err := b.sink.List(ctx, "", 10)
		require.NoError(t, err)
		require.Empty(t, ls)
		require.Empty(t, next)
		_, err = b.sink.Get("1")
		require.ErrorIs(t, err, deadletter.ErrNotFound)
		require.False(t, b.bucketOnDisk(t), "reads must not create the bucket")
		require.NoError(t, b.sink.Put(ctx, letter(1)))
		require.True(t, b.bucketOnDisk(t), "the first letter creates it")
	})

	t.Run("PutThenGetListCount", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for _, id := range []uint64{20, 3, 100} {
			require.NoError(t, b.sink.Put(ctx, letter(id)))
		}
		require.Equal(t, 3, b.count(t))
		got, err := b.sink.Get("3")
		require.NoError(t, err)
		require.Equal(t, letter(3), got)
		ls, next, err := b.sink.List(ctx, "", 10)
		require.NoError(t, err)
		require.Empty(t, next)
		require.Equal(t, []deadletter.Letter{letter(3), letter(20), letter(100)}, ls, "in event order, not put order")
		ls, next, err = b.sink.List(ctx, "3", 10)
		require.NoError(t, err)
		require.Empty(t, next)
		require.Equal(t, []deadletter.Letter{letter(20), letter(100)}, ls)
		ls, _, err = b.sink.List(ctx, "4", 10) // a cursor need not name a letter
		require.NoError(t, err)
		require.Len(t, ls, 2)
	})

	t.Run("PutTxCommitsWithTheCallersWrite", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		seqs, err := b.st.Enqueue(ctx, []store.NewEvent{{Function: "orders", Payload: []byte(`{"order":1}`)}})
		require.NoError(t, err)
		seq := seqs[0]
		// The caller's write is the queue's own: Remove takes the event out
		// in the transaction it hands to move.
		_, err = b.st.Remove(ctx, seq, func(tx *store.Tx, ev store.Event) error {
			return b.sink.PutTx(tx, letter(ev.Seq))
		})
		require.NoError(t, err)
		require.Equal(t, 1, b.count(t))
		got, err := b.sink.Get(strconv.FormatUint(seq, 10))
		require.NoError(t, err)
		require.Equal(t, letter(seq), got)
		_, err = b.st.Get(seq)
		require.ErrorIs(t, err, store.ErrNotFound, "the event left the queue with the letter")
	})

	t.Run("RolledBackTxLeavesNoLetter", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.NoError(t, b.sink.Put(ctx, letter(1)))
		boom := errors.New("boom")
		err := b.st.Update(ctx, func(tx *store.Tx) error {
			// The other write in the transaction: removing letter 1.
			n, err := b.sink.DeleteTx(tx, "1")
			require.NoError(t, err)
			require.Equal(t, 1, n)
			require.NoError(t, b.sink.PutTx(tx, letter(2)))
			return boom
		})
		require.ErrorIs(t, err, boom)
		require.Equal(t, 1, b.count(t))
		_, err = b.sink.Get("2")
		require.ErrorIs(t, err, deadletter.ErrNotFound)
		got, err := b.sink.Get("1")
		require.NoError(t, err, "the other write rolled back too")
		require.Equal(t, letter(1), got)
	})

	t.Run("RolledBackFirstLetterLeavesNoBucket", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		boom := errors.New("boom")
		require.ErrorIs(t, b.st.Update(ctx, func(tx *store.Tx) error {
			require.NoError(t, b.sink.PutTx(tx, letter(1)))
			return boom
		}), boom)
		require.Zero(t, b.count(t))
		require.False(t, b.bucketOnDisk(t))
	})

	t.Run("PutTxIsIdempotent", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.NoError(t, b.st.Update(ctx, func(tx *store.Tx) error {
			require.NoError(t, b.sink.PutTx(tx, letter(5)))
			return b.sink.PutTx(tx, letter(5))
		}))
		require.NoError(t, b.st.Update(ctx, func(tx *store.Tx) error { return b.sink.PutTx(tx, letter(5)) }))
		require.NoError(t, b.sink.Put(ctx, letter(5)))
		require.Equal(t, 1, b.count(t))
		got, err := b.sink.Get("5")
		require.NoError(t, err)
		require.Equal(t, letter(5), got)
	})

	t.Run("PutTxInBatch", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() {
				// The writer shares one transaction among the calls waiting,
				// and may run a function more than once.
				require.NoError(t, b.st.Update(ctx, func(tx *store.Tx) error { return b.sink.PutTx(tx, letter(uint64(i))) }))
			})
		}
		wg.Wait()
		require.Equal(t, 50, b.count(t))
	})

	t.Run("PutTxInReadTx", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.Error(t, b.st.View(func(tx *store.Tx) error { return b.sink.PutTx(tx, letter(1)) }))
		require.Zero(t, b.count(t))
		// Nor once the bucket exists.
		require.NoError(t, b.sink.Put(ctx, letter(2)))
		require.Error(t, b.st.View(func(tx *store.Tx) error { return b.sink.PutTx(tx, letter(1)) }))
		require.Equal(t, 1, b.count(t))
	})

	t.Run("ConcurrentPuts", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 25 {
					require.NoError(t, b.sink.Put(ctx, letter(uint64(g*100+i))))
				}
			})
		}
		for range 4 { // readers alongside
			wg.Go(func() {
				_, _, err := b.sink.List(ctx, "", 50)
				require.NoError(t, err)
			})
		}
		wg.Wait()
		require.Equal(t, 200, b.count(t))
	})

	t.Run("Paging", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		const n = 2500
		require.NoError(t, b.st.Update(ctx, func(tx *store.Tx) error {
			for i := uint64(1); i <= n; i++ {
				if err := b.sink.PutTx(tx, letter(i*3)); err != nil {
					return err
				}
			}
			return nil
		}))
		require.Equal(t, n, b.count(t))
		var (
			seen  []deadletter.Letter
			pages int
		)
		for after := ""; ; {
			ls, next, err := b.sink.List(ctx, after, 1000)
			require.NoError(t, err)
			pages++
			seen = append(seen, ls...)
			if next == "" {
				break
			}
			require.Len(t, ls, 1000)
			require.Equal(t, ls[len(ls)-1].ID, next)
			after = next
		}
		require.Equal(t, 3, pages)
		require.Len(t, seen, n)
		for i, l := range seen {
			require.Equal(t, letter(uint64(i+1)*3), l)
		}
	})

	t.Run("ListLimits", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.NoError(t, b.st.Update(ctx, func(tx *store.Tx) error {
			for i := range uint64(deadletter.MaxListLimit + 5) {
				if err := b.sink.PutTx(tx, letter(i)); err != nil {
					return err
				}
			}
			return nil
		}))
		ls, next, err := b.sink.List(ctx, "", 1_000_000)
		require.NoError(t, err)
		require.Len(t, ls, deadletter.MaxListLimit)
		require.Equal(t, strconv.Itoa(deadletter.MaxListLimit-1), next)
		// A full last page says there is no more rather than costing a call.
		ls, next, err = b.sink.List(ctx, next, 5)
		require.NoError(t, err)
		require.Len(t, ls, 5)
		require.Empty(t, next)

		_, _, err = b.sink.List(ctx, "", 0)
		require.ErrorContains(t, err, "limit 0")
		_, _, err = b.sink.List(ctx, "07", 10)
		require.ErrorContains(t, err, `cursor: "07" is not a decimal sequence number`)
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		_, _, err = b.sink.List(cancelled, "", 10)
		require.ErrorIs(t, err, context.Canceled)
	})

	t.Run("GetUnknown", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.NoError(t, b.sink.Put(ctx, letter(1)))
		for _, id := range []string{"2", "", "abc", "01", "-1"} {
			_, err := b.sink.Get(id)
			require.ErrorIs(t, err, deadletter.ErrNotFound, "id %q", id)
		}
	})

	t.Run("InvalidLetterWritesNothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		bad := letter(1)
		bad.ID = "evt-1"
		require.ErrorIs(t, b.sink.Put(ctx, bad), deadletter.ErrInvalidLetter)
		bad = letter(1)
		bad.Function = ""
		require.ErrorIs(t, b.st.Update(ctx, func(tx *store.Tx) error { return b.sink.PutTx(tx, bad) }), deadletter.ErrInvalidLetter)
		require.Zero(t, b.count(t))
	})

	t.Run("PutHeedsContext", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		require.ErrorIs(t, b.sink.Put(cancelled, letter(1)), context.Canceled)
		require.Zero(t, b.count(t))
	})

	t.Run("CorruptValue", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for _, id := range []uint64{1, 2, 3} {
			require.NoError(t, b.sink.Put(ctx, letter(id)))
		}
		require.NoError(t, b.st.Update(ctx, func(tx *store.Tx) error {
			bk, err := tx.Bucket(store.Letters)
			if err != nil {
				return err
			}
			return bk.Put([]byte{0, 0, 0, 0, 0, 0, 0, 2}, []byte("\x01{\"function\":"))
		}))
		_, err := b.sink.Get("2")
		var ce *deadletter.CorruptError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, "2", ce.ID)
		require.ErrorContains(t, err, "deadletter: corrupt letter 2: version 1: unexpected end of JSON input")

		ls, _, err := b.sink.List(ctx, "", 10)
		require.ErrorAs(t, err, &ce)
		require.Equal(t, "2", ce.ID)
		require.Nil(t, ls)
		ls, next, err := b.sink.List(ctx, ce.ID, 10) // skip it
		require.NoError(t, err)
		require.Empty(t, next)
		require.Equal(t, []deadletter.Letter{letter(3)}, ls)

		got, err := b.sink.Get("3")
		require.NoError(t, err, "one bad letter does not spoil the others")
		require.Equal(t, letter(3), got)
	})
}

// TestBoltBesideStore: the sink shares the queue's file without disturbing
// it, and the letters outlive a reopen.
func TestBoltBesideStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := store.Open(path, store.Options{})
	require.NoError(t, err)
	_, err = s.Enqueue(ctx, []store.NewEvent{{Function: "orders", Payload: []byte(`{}`)}})
	require.NoError(t, err)
	before, err := s.Stats()
	require.NoError(t, err)
	require.NoError(t, deadletter.NewBolt(s).Put(ctx, letter(99)))
	after, err := s.Stats()
	require.NoError(t, err)
	require.Equal(t, before.Events, after.Events)
	require.NoError(t, s.Close())

	s, err = store.Open(path, store.Options{})
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	st, err := s.Stats()
	require.NoError(t, err)
	require.Equal(t, int64(1), st.Events)
	require.Zero(t, st.Corrupt)
	got, err := deadletter.NewBolt(s).Get("99")
	require.NoError(t, err)
	require.Equal(t, letter(99), got)
}

func TestSinkFunc(t *testing.T) {
	t.Parallel()
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "v")
	var got []deadletter.Letter
	var sink deadletter.Sink = deadletter.SinkFunc(func(ctx context.Context, l deadletter.Letter) error {
		require.Equal(t, "v", ctx.Value(key{}))
		got = append(got, l)
		if l.ID == "2" {
			return errors.New("sink down")
		}
		return nil
	})
	require.NoError(t, sink.Put(ctx, letter(1)))
	require.EqualError(t, sink.Put(ctx, letter(2)), "sink down")
	require.Equal(t, []deadletter.Letter{letter(1), letter(2)}, got)
}
