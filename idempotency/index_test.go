package idempotency

import (
	"context"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func setup(t *testing.T) (*bolt.DB, *Index) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "k.db"), 0o600, &bolt.Options{Timeout: time.Second, NoSync: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db, New(db)
}

func TestClaimMarkForget(t *testing.T) {
	t.Parallel()
	db, x := setup(t)
	now := time.Unix(1_700_000_000, 0)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		seq, dup, err := x.Claim(tx, "k", 1, now, time.Hour)
		require.NoError(t, err)
		require.False(t, dup)
		require.Zero(t, seq)
		seq, dup, err = x.Claim(tx, "k", 2, now.Add(time.Minute), time.Hour)
		require.NoError(t, err)
		require.True(t, dup, "held within the transaction that claimed it")
		require.Equal(t, uint64(1), seq)
		require.NoError(t, x.Mark(tx, "k", 2, Delivered), "another event's mark is ignored")
		e, ok, err := x.Lookup(tx, "k", now)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, Queued, e.State)
		require.NoError(t, x.Mark(tx, "k", 1, Delivered))
		e, _, _ = x.Lookup(tx, "k", now)
		require.Equal(t, Delivered, e.State)
		require.True(t, e.Expires.Equal(now.Add(time.Hour)))

		_, dup, err = x.Claim(tx, "k", 3, now.Add(2*time.Hour), time.Hour)
		require.NoError(t, err)
		require.False(t, dup, "expired: taken over")
		e, _, _ = x.Lookup(tx, "k", now.Add(2*time.Hour))
		require.Equal(t, uint64(3), e.Seq)
		require.Equal(t, Queued, e.State)
		require.NoError(t, x.Forget(tx, "k"))
		_, ok, err = x.Lookup(tx, "k", now)
		require.NoError(t, err)
		require.False(t, ok)
		return nil
	}))
	n, err := x.Len()
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestSweepAndEvictInBatches(t *testing.T) {
	t.Parallel()
	db, x := setup(t)
	now := time.Unix(1_700_000_000, 0)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		for i := range 2500 {
			if _, _, err := x.Claim(tx, string(rune('a'+i%26))+time.Duration(i).String(), uint64(i+1), now, time.Duration(i+1)*time.Second); err != nil {
				return err
			}
		}
		return nil
	}))
	n, err := x.Evict(context.Background(), 2000, 300)
	require.NoError(t, err)
	require.Equal(t, 500, n)
	n, err = x.Sweep(context.Background(), now.Add(1000*time.Second+1), 300)
	require.NoError(t, err)
	require.Equal(t, 500, n, "keys 501..1000 had expired; 1..500 were evicted")
	left, err := x.Len()
	require.NoError(t, err)
	require.Equal(t, 1500, left)
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		require.Equal(t, 1500, tx.Bucket(bucketKeys).Stats().KeyN)
		require.Equal(t, 1500, tx.Bucket(bucketExp).Stats().KeyN)
		return nil
	}))
}

func TestCorruptEntry(t *testing.T) {
	t.Parallel()
	db, x := setup(t)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketKeys)
		require.NoError(t, err)
		require.NoError(t, b.Put([]byte("bad"), []byte{9}))
		_, _, err = x.Lookup(tx, "bad", time.Now())
		require.ErrorIs(t, err, ErrCorrupt)
		_, _, err = x.Claim(tx, "bad", 1, time.Now(), time.Hour)
		require.ErrorIs(t, err, ErrCorrupt)
		return nil
	}))
}

// TestClaimHugeWindow: a window whose end is past what Unix nanoseconds
// hold keeps the key (saturated at the largest expiry) instead of wrapping
// to an expiry in the past.
func TestClaimHugeWindow(t *testing.T) {
	t.Parallel()
	db, x := setup(t)
	now := time.Unix(1_700_000_000, 0)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		_, _, err := x.Claim(tx, "k", 1, now, time.Duration(math.MaxInt64))
		require.NoError(t, err)
		later := now.Add(100 * 365 * 24 * time.Hour)
		e, ok, err := x.Lookup(tx, "k", later)
		require.NoError(t, err)
		require.True(t, ok, "held a century later")
		require.Equal(t, int64(math.MaxInt64), e.Expires.UnixNano())
		seq, dup, err := x.Claim(tx, "k", 2, later, time.Hour)
		require.NoError(t, err)
		require.True(t, dup)
		require.Equal(t, uint64(1), seq)
		return nil
	}))
	n, err := x.Sweep(context.Background(), now.Add(200*365*24*time.Hour), 10)
	require.NoError(t, err)
	require.Zero(t, n, "not swept as expired")
}
