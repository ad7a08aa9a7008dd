package main_test

import (
	"context"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/lambdadispatch/dispatcher/store"
)

type fingerprint struct {
	sum   [32]byte
	mtime time.Time
	size  int64
}

func fingerprintOf(t *testing.T, path string) fingerprint {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	return fingerprint{sha256.Sum256(b), fi.ModTime(), fi.Size()}
}

// readOnlyCommands are the commands that only look, each with the
// arguments before FILE.
var readOnlyCommands = [][]string{
	{"stats"}, {"--json", "stats"}, {"ls"}, {"ls", "--state", "dead"}, {"--json", "ls", "--state", "leased"},
	{"show", "1"}, {"show", "100"}, {"--json", "show", "2"}, {"export"}, {"export", "--dead"},
}

// seedWithLease is seed with event 1 leased by a process that is gone: an
// Open that writes would return it to the queue.
func seedWithLease(t *testing.T) string {
	t.Helper()
	path := seed(t)
	st, err := store.Open(path, store.Options{})
	require.NoError(t, err)
	leased, err := st.Lease(context.Background(), 1, time.Hour)
	require.NoError(t, err)
	require.Len(t, leased, 1)
	require.NoError(t, st.Close())
	return path
}

func TestReadOnlyCommandsChangeNothing(t *testing.T) {
	t.Parallel()
	path := seedWithLease(t)
	stale := path + ".compact"
	require.NoError(t, os.WriteFile(stale, []byte("left by a killed compaction"), 0o600))
	was := fingerprintOf(t, path)
	for _, args := range readOnlyCommands {
		r := ctl(t, "", append(args, path)...)
		require.Equal(t, 0, r.code, "%v: %s", args, r.stderr)
		require.NotEmpty(t, r.stdout, "%v", args)
		require.Equal(t, was, fingerprintOf(t, path), "%v changed the file", args)
	}
	require.Equal(t, int64(1), stats(t, path).Leased, "the lease is left as found")
	require.FileExists(t, stale, "read-only commands remove nothing")
}

// TestReadOnlyCommandsOnReadOnlyMount runs each read-only command on a
// read-only bind mount of the file's directory, where opening the file
// for writing fails: they must open it O_RDONLY.
func TestReadOnlyCommandsOnReadOnlyMount(t *testing.T) {
	t.Parallel()
	path := seedWithLease(t)
	dir := filepath.Dir(path)
	probe := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" && ! touch "$1/probe" 2>/dev/null`, "sh", dir)
	if out, err := probe.CombinedOutput(); err != nil {
		t.Skipf("read-only mount not checked: unshare -m and a read-only bind mount are not available here (%v: %s)", err, out)
	}
	was := fingerprintOf(t, path)
	for _, args := range readOnlyCommands {
		cmd := exec.Command("unshare", append([]string{"-m", "--propagation", "private", "sh", "-c",
			`mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" && shift && exec "$@"`, "sh", dir, bin},
			append(args, path)...)...)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		require.NoError(t, err, "%v on a read-only mount: %s", args, errb.String())
		require.NotEmpty(t, out.String(), "%v", args)
	}
	require.Equal(t, was, fingerprintOf(t, path))
	// The control: a command that writes fails there.
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" && shift && exec "$@"`, "sh", dir, bin, "purge", "--all", "--yes", path)
	require.Error(t, cmd.Run(), "purge cannot write on a read-only mount")
}

// TestReadOnlyCommandsDoNotMakeAQueue: on an empty file, or a missing one,
// a read-only command fails and leaves it as it was.
func TestReadOnlyCommandsDoNotMakeAQueue(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.db")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	missing := filepath.Join(dir, "missing.db")
	for _, args := range readOnlyCommands {
		r := ctl(t, "", append(args, empty)...)
		require.Equal(t, 1, r.code, "%v", args)
		require.Contains(t, r.stderr, empty+" is not a dispatcher queue", "%v", args)
		fi, err := os.Stat(empty)
		require.NoError(t, err)
		require.Zero(t, fi.Size(), "%v wrote to the empty file", args)

		r = ctl(t, "", append(args, missing)...)
		require.Equal(t, 1, r.code, "%v", args)
		require.Contains(t, r.stderr, "no such file", "%v", args)
		require.NoFileExists(t, missing, "%v", args)
	}
}

// TestCompactRefusesWhatIsNotAQueue: a bbolt file of something else is
// refused, unchanged.
func TestCompactRefusesWhatIsNotAQueue(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "other.db")
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("x"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("v"))
	}))
	require.NoError(t, db.Close())
	was := fingerprintOf(t, path)

	for _, args := range [][]string{{"compact", path}, {"stats", path}} {
		r := ctl(t, "", args...)
		require.Equal(t, 1, r.code, "%v", args)
		require.Contains(t, r.stderr, path+" is not a dispatcher queue", "%v", args)
		require.Contains(t, r.stderr, "no meta bucket", "%v", args)
		require.Equal(t, was, fingerprintOf(t, path), "%v", args)
	}
	require.NoFileExists(t, path+".compact")
}
