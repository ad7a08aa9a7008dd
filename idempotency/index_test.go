package idempotency

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/lambdadispatch/dispatcher/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func setup(t *testing.T) (*store.Store, *Index) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "k.db"), store.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st, New(st)
}

// claim is what Index.Claim was: the event holding key if one does (and
// true), else it gives key to seq and returns 0 and false.
func claim(x *Index, tx *store.Tx, key string, seq uint64, now time.Time, window time.Duration) (uint64, bool, error) {
	held, ok, err := x.Held(tx, key, now)
	if err != nil || ok {
		return held, ok, err
	}
	return 0, false, x.Hold(tx, key, seq, now, window)
}

// Update's fn runs on the store's writer goroutine, and may run more than
// once: the tests below record what they see inside it and assert outside.

func TestClaimMarkForget(t *testing.T) {
	t.Parallel()
	st, x := setup(t)
	now := time.Unix(1_700_000_000, 0)
	type seen struct {
		seq1, seq2     uint64
		dup1, dup2     bool
		afterOther     Entry
		afterOtherOK   bool
		afterMark      Entry
		dup3           bool
		afterTakeover  Entry
		afterForgetOK  bool
		afterOtherErr  error
		afterForgetErr error
	}
	var s seen
	require.NoError(t, st.Update(t.Context(), func(tx *store.Tx) error {
		s = seen{}
		var err error
		if s.seq1, s.dup1, err = claim(x, tx, "k", 1, now, time.Hour); err != nil {
			return err
		}
		if s.seq2, s.dup2, err = claim(x, tx, "k", 2, now.Add(time.Minute), time.Hour); err != nil {
			return err
		}
		if err := x.Mark(tx, "k", 2, Delivered); err != nil {
			return err
		}
		s.afterOther, s.afterOtherOK, s.afterOtherErr = x.Lookup(tx, "k", now)
		if err := x.Mark(tx, "k", 1, Delivered); err != nil {
			return err
		}
		s.afterMark, _, _ = x.Lookup(tx, "k", now)

		if _, s.dup3, err = claim(x, tx, "k", 3, now.Add(2*time.Hour), time.Hour); err != nil {
			return err
		}
		s.afterTakeover, _, _ = x.Lookup(tx, "k", now.Add(2*time.Hour))
		if err := x.Forget(tx, "k"); err != nil {
			return err
		}
		_, s.afterForgetOK, s.afterForgetErr = x.Lookup(tx, "k", now)
		return nil
	}))
	require.False(t, s.dup1)
	require.Zero(t, s.seq1)
	require.True(t, s.dup2, "held within the transaction that claimed it")
	require.Equal(t, uint64(1), s.seq2)
	require.NoError(t, s.afterOtherErr)
	require.True(t, s.afterOtherOK)
	require.Equal(t, Queued, s.afterOther.State, "another event's mark is ignored")
	require.Equal(t, Delivered, s.afterMark.State)
	require.True(t, s.afterMark.Expires.Equal(now.Add(time.Hour)))
	require.False(t, s.dup3, "expired: taken over")
	require.Equal(t, uint64(3), s.afterTakeover.Seq)
	require.Equal(t, Queued, s.afterTakeover.State)
	require.NoError(t, s.afterForgetErr)
	require.False(t, s.afterForgetOK)
	n, err := x.Len()
	require.NoError(t, err)
	require.Zero(t, n)
}

// count returns the number of keys in bucket n.
func count(t *testing.T, st *store.Store, n store.BucketName) int {
	t.Helper()
	keys := 0
	require.NoError(t, st.View(func(tx *store.Tx) error {
		b, err := tx.Bucket(n)
		if err != nil {
			return err
		}
		c := b.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			keys++
		}
		return nil
	}))
	return keys
}

func TestSweepAndEvictInBatches(t *testing.T) {
	t.Parallel()
	st, x := setup(t)
	now := time.Unix(1_700_000_000, 0)
	require.NoError(t, st.Update(t.Context(), func(tx *store.Tx) error {
		for i := range 2500 {
			if _, _, err := claim(x, tx, string(rune('a'+i%26))+time.Duration(i).String(), uint64(i+1), now, time.Duration(i+1)*time.Second); err != nil {
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
	require.Equal(t, 1500, count(t, st, store.Keys))
	require.Equal(t, 1500, count(t, st, store.KeyExpiry))
}

func TestCorruptEntry(t *testing.T) {
	t.Parallel()
	st, x := setup(t)
	var lookupErr, claimErr, holdErr error
	errDone := errors.New("roll back")
	err := st.Update(t.Context(), func(tx *store.Tx) error {
		b, err := tx.Bucket(store.Keys)
		if err != nil {
			return err
		}
		if err := b.Put([]byte("bad"), []byte{9}); err != nil {
			return err
		}
		_, _, lookupErr = x.Lookup(tx, "bad", time.Now())
		_, _, claimErr = claim(x, tx, "bad", 1, time.Now(), time.Hour)
		holdErr = x.Hold(tx, "bad", 1, time.Now(), time.Hour)
		return errDone
	})
	require.ErrorIs(t, err, errDone)
	require.ErrorIs(t, lookupErr, ErrCorrupt)
	require.ErrorIs(t, claimErr, ErrCorrupt)
	require.ErrorIs(t, holdErr, ErrCorrupt)
}

// TestClaimHugeWindow: a window whose end is past what Unix nanoseconds
// hold keeps the key (saturated at the largest expiry) instead of wrapping
// to an expiry in the past.
func TestClaimHugeWindow(t *testing.T) {
	t.Parallel()
	st, x := setup(t)
	now := time.Unix(1_700_000_000, 0)
	later := now.Add(100 * 365 * 24 * time.Hour)
	var (
		e        Entry
		ok, dup  bool
		seq      uint64
		lookErr  error
		claimErr error
	)
	require.NoError(t, st.Update(t.Context(), func(tx *store.Tx) error {
		if _, _, err := claim(x, tx, "k", 1, now, time.Duration(math.MaxInt64)); err != nil {
			return err
		}
		e, ok, lookErr = x.Lookup(tx, "k", later)
		seq, dup, claimErr = claim(x, tx, "k", 2, later, time.Hour)
		return nil
	}))
	require.NoError(t, lookErr)
	require.True(t, ok, "held a century later")
	require.Equal(t, int64(math.MaxInt64), e.Expires.UnixNano())
	require.NoError(t, claimErr)
	require.True(t, dup)
	require.Equal(t, uint64(1), seq)
	n, err := x.Sweep(context.Background(), now.Add(200*365*24*time.Hour), 10)
	require.NoError(t, err)
	require.Zero(t, n, "not swept as expired")
}
