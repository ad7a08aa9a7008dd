package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// fingerprint is what a read-only open must leave alone.
type fingerprint struct {
	sum   [32]byte
	mtime time.Time
}

func fingerprintOf(t *testing.T, path string) fingerprint {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	return fingerprint{sha256.Sum256(b), fi.ModTime()}
}

func TestReadOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, Options{})
	seqs := enqueue(t, b.st, newEvents(5, "fn")...)
	_, err := b.st.Lease(ctx, 2, time.Hour)
	require.NoError(t, err)
	require.NoError(t, b.st.Close())
	stale := b.path + ".compact"
	require.NoError(t, os.WriteFile(stale, []byte("half a copy"), 0o600))
	was := fingerprintOf(t, b.path)

	st, err := Open(b.path, Options{ReadOnly: true, Now: b.clock.Now})
	require.NoError(t, err)
	require.Equal(t, os.O_RDONLY, openFlags(t, b.path)&(os.O_RDONLY|os.O_WRONLY|os.O_RDWR))
	s := stats(t, st)
	require.Equal(t, int64(5), s.Events)
	require.Equal(t, int64(2), s.Leased, "leases are left as found")
	require.Equal(t, uint64(0), s.Recovered)
	require.Equal(t, seqs, seqsOf(scanAll(t, st)))
	ev, err := st.Get(seqs[4])
	require.NoError(t, err)
	require.Equal(t, "fn", ev.Function)

	_, err = st.Enqueue(ctx, newEvents(1, "fn"))
	require.ErrorIs(t, err, ErrReadOnly)
	_, err = st.Lease(ctx, 1, time.Minute)
	require.ErrorIs(t, err, ErrReadOnly)
	require.ErrorIs(t, st.Ack(ctx, seqs[0]), ErrReadOnly)
	_, err = st.ReleaseAll(ctx)
	require.ErrorIs(t, err, ErrReadOnly)

	_, err = Open(b.path, Options{LockTimeout: 100 * time.Millisecond})
	require.ErrorIs(t, err, ErrLocked, "a writer waits for readers")
	require.NoError(t, st.Close())
	require.ErrorIs(t, st.Close(), ErrClosed)

	require.Equal(t, was, fingerprintOf(t, b.path), "not a byte written")
	require.FileExists(t, stale, "a read-only open removes nothing")
}

// openFlags returns the flags of this process's descriptor of path, from
// /proc: the proof that it was opened O_RDONLY.
func openFlags(t *testing.T, path string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("open flags not checked: no /proc/self/fd (%v)", err)
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err != nil || target != path {
			continue
		}
		info, err := os.ReadFile(filepath.Join("/proc/self/fdinfo", fd.Name()))
		require.NoError(t, err)
		for line := range strings.Lines(string(info)) {
			if v, ok := strings.CutPrefix(line, "flags:"); ok {
				flags, err := strconv.ParseInt(strings.TrimSpace(v), 8, 64)
				require.NoError(t, err)
				return int(flags)
			}
		}
	}
	t.Fatalf("no descriptor of %s", path)
	return 0
}

// TestReadOnlyRefusesWhatIsNotAQueue: a read-only open never turns a file
// into a queue, nor creates one.
func TestReadOnlyRefusesWhatIsNotAQueue(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ro := Options{ReadOnly: true, LockTimeout: time.Second}

	missing := filepath.Join(dir, "missing.db")
	_, err := Open(missing, ro)
	require.ErrorIs(t, err, os.ErrNotExist)
	require.NoFileExists(t, missing)

	empty := filepath.Join(dir, "empty.db")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	other := filepath.Join(dir, "other.db")
	db, err := bolt.Open(other, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("x")); return err }))
	require.NoError(t, db.Close())
	garbage := filepath.Join(dir, "garbage.db")
	require.NoError(t, os.WriteFile(garbage, []byte(strings.Repeat("not bbolt ", 2000)), 0o600))

	for _, path := range []string{empty, other, garbage} {
		was := fingerprintOf(t, path)
		_, err := Open(path, ro)
		var ce *CorruptError
		require.True(t, errors.As(err, &ce), "%s: %v", path, err)
		require.Equal(t, was, fingerprintOf(t, path), "%s left as it was", path)
	}
}
