package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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
	default:
		fail(fmt.Errorf("unknown child mode %q", mode))
	}
}
