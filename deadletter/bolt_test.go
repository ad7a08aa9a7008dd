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

// bundle is what a test needs: a real bbolt file and a sink on it.
type bundle struct {
	db   *bolt.DB
	sink *deadletter.Bolt
}

func setup(t *testing.T) *bundle {
	t.Helper()
	// NoSync: these tests are about what is written, not about the disk, and
	// a fsync per Put makes them slow on a busy machine.
	db, err := bolt.Open(filepath.Join(t.TempDir(), "queue.db"), 0o600, &bolt.Options{Timeout: time.Second, NoSync: true})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return &bundle{db: db, sink: deadletter.NewBolt(db)}
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
	require.NoError(t, b.db.View(func(tx *bolt.Tx) error {
		if bk := tx.Bucket([]byte("deadletters")); bk != nil {
			n = bk.Stats().KeyN
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
		require.NoError(t, b.db.View(func(tx *bolt.Tx) error {
			require.Nil(t, tx.Bucket([]byte("deadletters")), "reads must not create the bucket")
			return nil
		}))
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
		require.NoError(t, b.db.Update(func(tx *bolt.Tx) error {
			q, err := tx.CreateBucketIfNotExists([]byte("queue"))
			require.NoError(t, err)
			require.NoError(t, q.Put([]byte("event-7"), []byte("x")))
			return nil
		}))
		require.NoError(t, b.db.Update(func(tx *bolt.Tx) error {
			if err := tx.Bucket([]byte("queue")).Delete([]byte("event-7")); err != nil {
				return err
			}
			return b.sink.PutTx(tx, letter(7))
		}))
		require.Equal(t, 1, b.count(t))
		got, err := b.sink.Get("7")
		require.NoError(t, err)
		require.Equal(t, letter(7), got)
		require.NoError(t, b.db.View(func(tx *bolt.Tx) error {
			require.Nil(t, tx.Bucket([]byte("queue")).Get([]byte("event-7")))
			return nil
		}))
	})

	t.Run("RolledBackTxLeavesNoLetter", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.NoError(t, b.sink.Put(ctx, letter(1)))
		boom := errors.New("boom")
		err := b.db.Update(func(tx *bolt.Tx) error {
			q, err := tx.CreateBucketIfNotExists([]byte("queue"))
			require.NoError(t, err)
			require.NoError(t, q.Put([]byte("event-2"), []byte("x")))
			require.NoError(t, b.sink.PutTx(tx, letter(2)))
			return boom
		})
		require.ErrorIs(t, err, boom)
		require.Equal(t, 1, b.count(t))
		_, err = b.sink.Get("2")
		require.ErrorIs(t, err, deadletter.ErrNotFound)
		require.NoError(t, b.db.View(func(tx *bolt.Tx) error {
			require.Nil(t, tx.Bucket([]byte("queue")), "the other write rolled back too")
			return nil
		}))
	})

	t.Run("RolledBackFirstLetterLeavesNoBucket", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		tx, err := b.db.Begin(true)
		require.NoError(t, err)
		require.NoError(t, b.sink.PutTx(tx, letter(1)))
		require.NoError(t, tx.Rollback())
		require.Zero(t, b.count(t))
	})

	t.Run("PutTxIsIdempotent", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.NoError(t, b.db.Update(func(tx *bolt.Tx) error {
			require.NoError(t, b.sink.PutTx(tx, letter(5)))
			return b.sink.PutTx(tx, letter(5))
		}))
		require.NoError(t, b.db.Update(func(tx *bolt.Tx) error { return b.sink.PutTx(tx, letter(5)) }))
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
				// Batch may run a function more than once.
				require.NoError(t, b.db.Batch(func(tx *bolt.Tx) error { return b.sink.PutTx(tx, letter(uint64(i))) }))
			})
		}
		wg.Wait()
		require.Equal(t, 50, b.count(t))
	})

	t.Run("PutTxInReadTx", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.Error(t, b.db.View(func(tx *bolt.Tx) error { return b.sink.PutTx(tx, letter(1)) }))
		require.Zero(t, b.count(t))
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
		require.NoError(t, b.db.Update(func(tx *bolt.Tx) error {
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
		require.NoError(t, b.db.Update(func(tx *bolt.Tx) error {
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
		require.ErrorIs(t, b.db.Update(func(tx *bolt.Tx) error { return b.sink.PutTx(tx, bad) }), deadletter.ErrInvalidLetter)
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
		require.NoError(t, b.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("deadletters")).Put([]byte{0, 0, 0, 0, 0, 0, 0, 2}, []byte("\x01{\"function\":"))
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
	require.NoError(t, deadletter.NewBolt(s.DB()).Put(ctx, letter(99)))
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
	got, err := deadletter.NewBolt(s.DB()).Get("99")
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
