package idempotency_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/idempotency/sharedtest"
)

const (
	window = 10 * time.Minute
	lease  = 30 * time.Second
)

var t0 = time.UnixMilli(1_800_000_000_000)

func TestFileWindowConformance(t *testing.T) {
	t.Parallel()
	sharedtest.Run(t, func(t *testing.T) idempotency.Shared {
		return openFileWindow(t, filepath.Join(t.TempDir(), "keys.db"))
	})
}

func openFileWindow(t *testing.T, path string, opts ...idempotency.FileOption) *idempotency.FileWindow {
	t.Helper()
	w, err := idempotency.OpenFileWindow(path, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = w.Close() })
	return w
}

func claim(t *testing.T, w idempotency.Shared, key, owner, token string, now time.Time) bool {
	t.Helper()
	_, ok, err := w.Claim(t.Context(), idempotency.Claim{Key: key, Owner: owner, Token: token, Window: window, Lease: lease}, now)
	require.NoError(t, err)
	return ok
}

func TestFileWindowReopen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keys.db")
	w := openFileWindow(t, path)
	require.True(t, claim(t, w, "k", "A", "tA", t0))
	require.NoError(t, w.Confirm(t.Context(), idempotency.Ref{Key: "k", Owner: "A", Token: "tA", ID: "e"}))
	require.True(t, claim(t, w, "c", "A", "tC", t0))
	require.NoError(t, w.Close())

	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	w = openFileWindow(t, path)
	got, err := w.Lookup(t.Context(), []string{"k", "c"}, t0)
	require.NoError(t, err)
	require.Equal(t, "e", got["k"].ID)
	require.Equal(t, idempotency.Queued, got["k"].State)
	require.Equal(t, idempotency.Claimed, got["c"].State)
	require.True(t, got["c"].Lease.Equal(t0.Add(lease)))
	require.False(t, claim(t, w, "k", "B", "tB", t0), "held across the reopen")
}

func TestFileWindowInUse(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keys.db")
	w := openFileWindow(t, path)

	// In this process: at once, whatever the lock timeout.
	start := time.Now()
	_, err := idempotency.OpenFileWindow(path, idempotency.WithFileLockTimeout(time.Minute))
	require.ErrorIs(t, err, idempotency.ErrFileWindowInUse)
	require.ErrorContains(t, err, "open in this process")
	require.Less(t, time.Since(start), 10*time.Second)

	// Once closed, it opens again.
	require.NoError(t, w.Close())
	w = openFileWindow(t, path)
	require.NoError(t, w.Close())

	// Held by another handle, as another process would hold it: bbolt's
	// flock conflicts across open files, so this waits out the timeout.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	require.NoError(t, err)
	defer db.Close()
	start = time.Now()
	_, err = idempotency.OpenFileWindow(path, idempotency.WithFileLockTimeout(100*time.Millisecond))
	require.ErrorIs(t, err, idempotency.ErrFileWindowInUse)
	require.ErrorContains(t, err, "lock not acquired within 100ms")
	require.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)
	require.NoError(t, db.Close())

	// The failed opens left nothing behind.
	openFileWindow(t, path)
}

func TestFileWindowBadOptionsAndFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, err := idempotency.OpenFileWindow(filepath.Join(dir, "a.db"), idempotency.WithFileLockTimeout(0))
	require.ErrorContains(t, err, "must be positive")

	// A bbolt file of something else, such as a queue file, is refused.
	other := filepath.Join(dir, "queue.db")
	db, err := bolt.Open(other, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("keys"))
		return err
	}))
	require.NoError(t, db.Close())
	_, err = idempotency.OpenFileWindow(other)
	require.ErrorContains(t, err, "not a key window file")

	// Not a bbolt file at all.
	junk := filepath.Join(dir, "junk.db")
	require.NoError(t, os.WriteFile(junk, make([]byte, 8192), 0o600))
	_, err = idempotency.OpenFileWindow(junk)
	require.Error(t, err)
	require.NotErrorIs(t, err, idempotency.ErrFileWindowInUse)

	// A failed open does not keep the path: it opens once mended.
	require.NoError(t, os.Remove(junk))
	openFileWindow(t, junk)
}

func TestFileWindowClosed(t *testing.T) {
	t.Parallel()
	w, err := idempotency.OpenFileWindow(filepath.Join(t.TempDir(), "keys.db"))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	ctx := t.Context()
	_, _, err = w.Claim(ctx, idempotency.Claim{Key: "k", Owner: "A", Token: "t", Window: window, Lease: lease}, t0)
	require.ErrorIs(t, err, idempotency.ErrFileWindowClosed)
	require.ErrorIs(t, w.Confirm(ctx, idempotency.Ref{Key: "k", Owner: "A", Token: "t", ID: "e"}), idempotency.ErrFileWindowClosed)
	require.ErrorIs(t, w.Mark(ctx, idempotency.Ref{Key: "k", Owner: "A", ID: "e"}, idempotency.Delivered), idempotency.ErrFileWindowClosed)
	require.ErrorIs(t, w.Release(ctx, idempotency.Ref{Key: "k", Owner: "A", Token: "t"}), idempotency.ErrFileWindowClosed)
	_, err = w.Lookup(ctx, []string{"k"}, t0)
	require.ErrorIs(t, err, idempotency.ErrFileWindowClosed)
	_, err = w.Sweep(ctx, t0, 10)
	require.ErrorIs(t, err, idempotency.ErrFileWindowClosed)
	require.ErrorIs(t, w.Close(), idempotency.ErrFileWindowClosed)
	require.NotErrorIs(t, err, idempotency.ErrUnavailable, "a file window is never unavailable")
}

// TestFileWindowCloseWhileBusy: Close waits for the calls under way, and
// every call after it returns ErrFileWindowClosed.
func TestFileWindowCloseWhileBusy(t *testing.T) {
	t.Parallel()
	w, err := idempotency.OpenFileWindow(filepath.Join(t.TempDir(), "keys.db"))
	require.NoError(t, err)
	var wg, started sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		started.Add(1)
		wg.Go(func() {
			for i := 0; ; i++ {
				_, _, err := w.Claim(context.Background(), idempotency.Claim{
					Key: fmt.Sprintf("k%d-%d", g, i), Owner: "A", Token: "t", Window: window, Lease: lease,
				}, t0)
				if i == 0 {
					started.Done()
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	started.Wait() // every goroutine has made a claim and goes on
	require.NoError(t, w.Close())
	wg.Wait()
	close(errs)
	for err := range errs {
		require.ErrorIs(t, err, idempotency.ErrFileWindowClosed)
	}
}

func TestFileWindowSweep(t *testing.T) {
	t.Parallel()
	w := openFileWindow(t, filepath.Join(t.TempDir(), "keys.db"))
	ctx := t.Context()
	// Key i is claimed at t0 + i seconds, so it expires at t0 + window + i s.
	const n = 250
	for i := range n {
		require.True(t, claim(t, w, fmt.Sprintf("k%03d", i), "A", "t", t0.Add(time.Duration(i)*time.Second)))
	}
	// k000 is claimed again (expired, by B): its old expiry must not
	// sweep the new claim.
	require.True(t, claim(t, w, "k000", "B", "tB", t0.Add(window)))
	// k001 is released: nothing left to sweep.
	require.NoError(t, w.Release(ctx, idempotency.Ref{Key: "k001", Owner: "A", Token: "t"}))

	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%03d", i)
	}
	// At t0 + window + 100s, keys 2..100 have expired (expires <= now).
	now := t0.Add(window + 100*time.Second)
	removed, err := w.Sweep(ctx, now, 7)
	require.NoError(t, err)
	require.Equal(t, 99, removed)
	again, err := w.Sweep(ctx, now, 7)
	require.NoError(t, err)
	require.Zero(t, again)

	// Looked up at a time when nothing had expired, the swept keys are
	// gone and the others are not.
	got, err := w.Lookup(ctx, keys, t0)
	require.NoError(t, err)
	require.Len(t, got, n-1-99)
	require.Equal(t, "B", got["k000"].Owner)
	for i := 2; i <= 100; i++ {
		require.NotContains(t, got, keys[i])
	}
	for i := 101; i < n; i++ {
		require.Contains(t, got, keys[i])
	}

	// The rest, k000's new claim included, in the default batch.
	removed, err = w.Sweep(ctx, t0.Add(3*window), 0)
	require.NoError(t, err)
	require.Equal(t, n-1-99, removed)
	got, err = w.Lookup(ctx, keys, t0)
	require.NoError(t, err)
	require.Empty(t, got)

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = w.Sweep(canceled, now, 1)
	require.ErrorIs(t, err, context.Canceled)
}

// TestFileWindowMilliseconds: times are kept to the millisecond, as in
// package dynamo, so that the two decide alike.
func TestFileWindowMilliseconds(t *testing.T) {
	t.Parallel()
	w := openFileWindow(t, filepath.Join(t.TempDir(), "keys.db"))
	now := t0.Add(999 * time.Microsecond)
	require.True(t, claim(t, w, "k", "A", "tA", now))
	got, err := w.Lookup(t.Context(), []string{"k"}, now)
	require.NoError(t, err)
	require.True(t, got["k"].Expires.Equal(t0.Add(window)), "truncated: %v", got["k"].Expires)
	require.True(t, got["k"].Lease.Equal(t0.Add(lease)))
	// Expired at t0 + window, within the millisecond the claim was made in.
	require.True(t, claim(t, w, "k", "B", "tB", t0.Add(window)))
}

func TestFileWindowLongKey(t *testing.T) {
	t.Parallel()
	w := openFileWindow(t, filepath.Join(t.TempDir(), "keys.db"))
	long := string(make([]byte, bolt.MaxKeySize))
	_, _, err := w.Claim(t.Context(), idempotency.Claim{Key: long, Owner: "A", Token: "t", Window: window, Lease: lease}, t0)
	require.ErrorContains(t, err, "more than the store's")
	fits := string(make([]byte, bolt.MaxKeySize-8))
	require.True(t, claim(t, w, fits, "A", "t", t0))
	_, err = w.Sweep(t.Context(), t0.Add(window), 0)
	require.NoError(t, err)
}

// ExampleFileWindow shares one key window between two dispatchers' owners
// in one process: the second claim of a key is refused while the first
// holds it.
func ExampleFileWindow() {
	dir, err := os.MkdirTemp("", "filewindow")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	w, err := idempotency.OpenFileWindow(filepath.Join(dir, "keys.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()

	ctx := context.Background()
	now := time.Now()
	for _, owner := range []string{"shard-0", "shard-1"} {
		holder, claimed, err := w.Claim(ctx, idempotency.Claim{
			Key: "order-42", Owner: owner, Token: "claim-" + owner,
			Window: 24 * time.Hour, Lease: 30 * time.Second,
		}, now)
		switch {
		case err != nil:
			log.Fatal(err)
		case claimed:
			fmt.Printf("%s: order-42 is ours\n", owner)
		default:
			fmt.Printf("%s: order-42 is held by %s (%v)\n", owner, holder.Owner, holder.State)
		}
	}
	err = w.Confirm(ctx, idempotency.Ref{Key: "order-42", Owner: "shard-0", Token: "claim-shard-0", ID: "event-1"})
	fmt.Println("confirmed:", err == nil)
	err = w.Mark(ctx, idempotency.Ref{Key: "order-42", Owner: "shard-1", ID: "event-9"}, idempotency.Delivered)
	fmt.Println("shard-1 lost:", errors.Is(err, idempotency.ErrLost))
	// Output:
	// shard-0: order-42 is ours
	// shard-1: order-42 is held by shard-0 (claimed)
	// confirmed: true
	// shard-1 lost: true
}
