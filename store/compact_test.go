package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// setHooks installs the test hooks until the end of t. Tests that use them
// are not parallel: the hooks are package state.
func setHooks(t *testing.T, opened func(string), compact func(string, string)) {
	t.Helper()
	openedHook, compactHook = opened, compact
	t.Cleanup(func() { openedHook, compactHook = nil, nil })
}

// pauseCompaction makes the compaction of path stop at stage until release
// is closed, and returns a channel closed when it gets there.
func pauseCompaction(path, stage string, release <-chan struct{}) (func(string, string), <-chan struct{}) {
	reached := make(chan struct{})
	return func(p, s string) {
		if p == path && s == stage {
			close(reached)
			<-release
		}
	}, reached
}

func seqSet(t *testing.T, path string) map[uint64]bool {
	t.Helper()
	st, err := Open(path, Options{})
	require.NoError(t, err)
	defer st.Close()
	got := map[uint64]bool{}
	for _, e := range scanAll(t, st) {
		got[e.Seq] = true
	}
	return got
}

// TestOpenWaitingForCompactionWritesToTheCopy: an Open that waited for the
// lock of the file a compaction replaced must not write into that unlinked
// file, or what it acknowledges is lost.
func TestOpenWaitingForCompactionWritesToTheCopy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	st, err := Open(path, Options{})
	require.NoError(t, err)
	before := enqueue(t, st, newEvents(100, "fn")...)
	require.NoError(t, st.Close())

	release := make(chan struct{})
	hook, locked := pauseCompaction(path, "locked", release)
	setHooks(t, nil, hook)
	compacted := make(chan error, 1)
	go func() { _, _, err := Compact(path, 10*time.Second); compacted <- err }()
	<-locked

	// The compaction's own open is done: the next descriptor is Open's,
	// of the file about to be replaced.
	opened := make(chan struct{}, 1)
	openedHook = func(p string) {
		select {
		case opened <- struct{}{}:
		default:
		}
	}
	type result struct {
		st  *Store
		err error
	}
	openDone := make(chan result, 1)
	go func() {
		st, err := Open(path, Options{LockTimeout: 10 * time.Second})
		openDone <- result{st, err}
	}()
	<-opened
	close(release)
	require.NoError(t, <-compacted)
	r := <-openDone
	require.NoError(t, r.err)
	added := enqueue(t, r.st, newEvents(3, "late")...)
	require.NoError(t, r.st.Close())

	got := seqSet(t, path)
	for _, seq := range append(before, added...) {
		require.True(t, got[seq], "event %d is in the file at the path", seq)
	}
}

// TestOpenInAnotherProcessDuringCompaction is the same across processes,
// where flock is held per open file description: a child opens the file
// while this process compacts it, then enqueues and reports each id
// acknowledged.
func TestOpenInAnotherProcessDuringCompaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	st, err := Open(path, Options{})
	require.NoError(t, err)
	before := enqueue(t, st, newEvents(2000, "fn")...)
	require.NoError(t, st.Close())

	release := make(chan struct{})
	hook, locked := pauseCompaction(path, "locked", release)
	setHooks(t, nil, hook)
	compacted := make(chan error, 1)
	go func() { _, _, err := Compact(path, 10*time.Second); compacted <- err }()
	<-locked

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "STORE_TEST_CHILD=compact-enqueue", "STORE_TEST_PATH="+path)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	require.True(t, lines.Scan(), "child said nothing")
	require.Equal(t, "opened", lines.Text())
	close(release)
	require.NoError(t, <-compacted)

	var acked []uint64
	for lines.Scan() && lines.Text() != "done" {
		seq, err := strconv.ParseUint(lines.Text(), 10, 64)
		require.NoError(t, err, "child said %q", lines.Text())
		acked = append(acked, seq)
	}
	require.NoError(t, cmd.Wait())
	require.Len(t, acked, 20)

	got := seqSet(t, path)
	for _, seq := range append(before, acked...) {
		require.True(t, got[seq], "event %d is in the file at the path", seq)
	}
}

// compactChild runs the child side of the compaction tests.
func compactChild(mode, path string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	switch mode {
	case "compact-enqueue":
		var said bool
		openedHook = func(string) {
			if !said {
				said = true
				fmt.Println("opened")
			}
		}
		st, err := Open(path, Options{LockTimeout: 10 * time.Second})
		if err != nil {
			fail(err)
		}
		for i := range 20 {
			seqs, err := st.Enqueue(context.Background(), newEvents(1, fmt.Sprint("child-", i)))
			if err != nil {
				fail(err)
			}
			fmt.Println(seqs[0])
		}
		if err := st.Close(); err != nil {
			fail(err)
		}
		fmt.Println("done")
	case "compact-kill":
		compactTxBytes = 64 << 10
		compactHook = func(_, stage string) {
			if stage == "copying" {
				fmt.Println("copying")
				select {} // until SIGKILL
			}
		}
		_, _, err := Compact(path, 10*time.Second)
		fail(fmt.Errorf("compaction was not paused: %v", err))
	default:
		fail(fmt.Errorf("unknown child mode %q", mode))
	}
}

// TestCompactKeepsOwnerAndMode: root compacting a service's file must not
// hand it to root, nor widen its mode.
func TestCompactKeepsOwnerAndMode(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	enqueue(t, b.st, newEvents(10, "fn")...)
	require.NoError(t, b.st.Close())
	require.NoError(t, os.Chmod(b.path, 0o640))
	root := os.Geteuid() == 0
	if root {
		require.NoError(t, os.Chown(b.path, 1234, 5678))
	}

	_, _, err := Compact(b.path, time.Second)
	require.NoError(t, err)
	fi, err := os.Stat(b.path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o640), fi.Mode().Perm())
	if !root {
		t.Skip("owner not checked: changing a file's owner needs root")
	}
	sys := fi.Sys().(*syscall.Stat_t)
	require.Equal(t, uint32(1234), sys.Uid)
	require.Equal(t, uint32(5678), sys.Gid)
}

// fileSize returns the size of the file at path and the bytes its pages
// use (bbolt's high-water mark).
func fileSize(t *testing.T, path string) (size, used int64) {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	db, err := bolt.Open(path, 0, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil }))
	return fi.Size(), used
}

// writeCycle leases every event, then returns them all: each record is
// rewritten once, a little longer, as a retry cycle rewrites it.
func writeCycle(t *testing.T, st *Store) {
	t.Helper()
	ctx := context.Background()
	for {
		evs, err := st.Lease(ctx, 1000, time.Hour)
		require.NoError(t, err)
		if len(evs) == 0 {
			break
		}
	}
	_, err := st.ReleaseAll(ctx)
	require.NoError(t, err)
}

// TestCompactedFileIsNotLarger: compaction packs pages as full as the
// writer does, so a compacted queue is not larger than the original, and
// stays so after the next write cycle.
//
// 3,000 events show what 20,000 did: a copy that packs "events" full, as
// bbolt.Compact does, ends a write cycle 12% larger than the original on
// 3,000 (on 20,000, 5%), and the test fails on either; 20,000 cost ten
// seconds under -race. DISPATCH_SOAK=1 runs 20,000.
func TestCompactedFileIsNotLarger(t *testing.T) {
	t.Parallel()
	n := 3000
	if soak() {
		n = 20000
	}
	b := setup(t, Options{})
	ctx := context.Background()
	for i := range n / 1000 {
		evs := make([]NewEvent, 1000)
		for j := range evs {
			evs[j] = NewEvent{Function: "orders", Key: fmt.Sprint("order-", i*1000+j),
				Payload: fmt.Appendf(nil, `{"order":%d,"note":"%0100d"}`, i*1000+j, 0)}
		}
		_, err := b.st.Enqueue(ctx, evs)
		require.NoError(t, err)
	}
	// Close moves the payloads the log kept into the file, as the
	// compacted file holds them: both write cycles start from that.
	require.NoError(t, b.st.Close())
	st, err := Open(b.path, Options{Now: b.clock.Now})
	require.NoError(t, err)
	b.st = st
	writeCycle(t, b.st)
	want := scanAll(t, b.st)
	require.NoError(t, b.st.Close())
	size, used := fileSize(t, b.path)

	before, after, err := Compact(b.path, time.Second)
	require.NoError(t, err)
	require.Equal(t, size, before)
	csize, cused := fileSize(t, b.path)
	require.Equal(t, csize, after)
	t.Logf("%d events, one write cycle: file %d bytes (pages %d); compacted %d (pages %d)", n, size, used, csize, cused)
	require.LessOrEqual(t, csize, size, "the compacted file is not larger")
	require.LessOrEqual(t, cused, used, "nor are its pages")

	st, err = Open(b.path, Options{Now: b.clock.Now})
	require.NoError(t, err)
	b.st = st
	require.Equal(t, want, scanAll(t, st))
	writeCycle(t, st)
	require.NoError(t, st.Close())
	_, again := fileSize(t, b.path)
	t.Logf("after another write cycle: pages %d", again)
	require.LessOrEqual(t, again, used, "records grow in place without splitting the compacted pages")
}

// TestStaleCopyIsRemoved: the copy a killed compaction left goes at the
// next Open or compaction, which hold the lock, so neither can remove a
// running compaction's copy.
func TestStaleCopyIsRemoved(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	seqs := enqueue(t, b.st, newEvents(10, "fn")...)
	require.NoError(t, b.st.Close())
	stale := b.path + ".compact"

	require.NoError(t, os.WriteFile(stale, []byte("half a copy"), 0o600))
	_, _, err := Compact(b.path, time.Second)
	require.NoError(t, err)
	require.NoFileExists(t, stale)
	require.Equal(t, seqs, seqsOf(scanAllAt(t, b.path)))

	require.NoError(t, os.WriteFile(stale, []byte("half a copy"), 0o600))
	st, err := Open(b.path, Options{})
	require.NoError(t, err)
	require.NoFileExists(t, stale)
	require.NoError(t, st.Close())
}

func scanAllAt(t *testing.T, path string) []Event {
	t.Helper()
	st, err := Open(path, Options{})
	require.NoError(t, err)
	defer st.Close()
	return scanAll(t, st)
}

// TestCompactRefusesWhatIsNotAQueue: a bbolt file of something else, and
// an empty file, are refused and left as they were.
func TestCompactRefusesWhatIsNotAQueue(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	other := filepath.Join(dir, "other.db")
	db, err := bolt.Open(other, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("x"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("v"))
	}))
	require.NoError(t, db.Close())
	empty := filepath.Join(dir, "empty.db")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))

	for _, path := range []string{other, empty} {
		was, err := os.ReadFile(path)
		require.NoError(t, err)
		_, _, err = Compact(path, time.Second)
		var ce *CorruptError
		require.ErrorAs(t, err, &ce, path)
		is, err := os.ReadFile(path)
		require.NoError(t, err)
		require.Equal(t, was, is, "%s left as it was", path)
		require.NoFileExists(t, path+".compact")
	}
}

// TestKilledCompactionLeavesTheFileIntact kills a child in the middle of
// its copy: the file is untouched, and the next Open removes the copy.
func TestKilledCompactionLeavesTheFileIntact(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	big := make([]NewEvent, 500)
	for i := range big {
		big[i] = NewEvent{Function: "fn", Payload: fmt.Appendf(nil, `{"n":%d,"pad":"%01000d"}`, i, 0)}
	}
	enqueue(t, b.st, big...)
	want := scanAll(t, b.st)
	require.NoError(t, b.st.Close())
	was, err := os.ReadFile(b.path)
	require.NoError(t, err)

	child, said := startChild(t, "compact-kill", b.path)
	require.Equal(t, "copying", said)
	require.FileExists(t, b.path+".compact", "killed in the middle of the copy")
	require.NoError(t, child.Process.Kill())
	_ = child.Wait()

	is, err := os.ReadFile(b.path)
	require.NoError(t, err)
	require.Equal(t, was, is, "the file is untouched")
	st, err := Open(b.path, Options{Now: b.clock.Now})
	require.NoError(t, err)
	b.st = st
	require.NoFileExists(t, b.path+".compact")
	require.Equal(t, want, scanAll(t, st))
}

// TestCompactProgress: the copy reports its count every
// compactProgressEvery keys and ends on the number of keys in the copy.
func TestCompactProgress(t *testing.T) {
	t.Parallel()
	path := buildQueue(t, 600)
	var calls []int64
	_, _, err := CompactWith(path, CompactOptions{Progress: func(n int64) { calls = append(calls, n) }})
	require.NoError(t, err)
	require.NotEmpty(t, calls)
	for i, n := range calls[:len(calls)-1] {
		require.Equal(t, int64(i+1)*compactProgressEvery, n, "call %d", i)
	}

	// Every key below the top-level buckets, nested buckets included.
	var keys int64
	var count func(b *bolt.Bucket)
	count = func(b *bolt.Bucket) {
		_ = b.ForEach(func(k, v []byte) error {
			keys++
			if v == nil {
				count(b.Bucket(k))
			}
			return nil
		})
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(_ []byte, b *bolt.Bucket) error { count(b); return nil })
	}))
	require.Greater(t, keys, compactProgressEvery, "the file is big enough to report before the end")
	require.Equal(t, keys, calls[len(calls)-1], "the last call is the total")
}
