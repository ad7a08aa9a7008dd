package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// walOptions are the options of both sides of TestLogKilled: the key
// window the log's keyed events hold their keys in.
func walOptions() Options {
	return Options{KeyWindow: func(*Store) KeyWindow { return bucketWindow{} }}
}

// TestLogKilled has a child enqueue through the write-ahead log (keyed
// batches of one to four events) while leasing and acking on the side,
// and SIGKILLs it, round after round: at a random point of its output
// ("run"), inside the transaction of a checkpoint after its writes
// ("checkpoint"), and inside Open's replay of what the previous child
// left in the log ("replay"). After each kill the file checks, every
// event whose enqueue returned is in the queue exactly once (unless its
// ack was under way), the enqueue cut short is there whole or not at
// all, every event queued holds its key, and the counters agree with
// the events. Nine rounds by default, eighteen under DISPATCH_SOAK=1.
func TestLogKilled(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "q.db")
	var kl killLog
	stops := map[string]int{}
	rounds := 9
	switch {
	case soak():
		rounds = 18
	case testing.Short():
		rounds = 6
	}
	for round := range rounds {
		kind := []string{"run", "replay", "checkpoint"}[round%3]
		stopAt := 15 + round*17%70
		kl.run(t, fmt.Sprintf("wal-%d-%s", round, kind), path, func(word string, read int) bool {
			inside := word == "applying" || word == "replaying"
			if inside {
				stops[word]++
			}
			return inside || kind == "run" && read == stopAt || read == 400
		})

		checkFile(t, path)
		// The checks open a copy, file and log: the next child is the
		// first to open the original after the kill, and so replays what
		// this one left in the log.
		cp := copyWithLog(t, path)
		st, err := Open(cp, walOptions())
		require.NoError(t, err, "round %d", round)
		held := map[string]int{}
		evs := scanAll(t, st)
		for _, e := range evs {
			require.Equal(t, e.Key, string(e.Payload), "event %d", e.Seq)
			held[e.Key]++
		}
		require.NoError(t, st.View(func(tx *Tx) error {
			for k := range held {
				if _, ok, err := (bucketWindow{}).Held(tx, k, time.Now()); err != nil || !ok {
					return fmt.Errorf("round %d: key %s queued but not held (%v)", round, k, err)
				}
			}
			return nil
		}))
		kl.check(t, fmt.Sprintf("round %d", round), held)
		s := stats(t, st)
		require.Equal(t, int64(len(evs)), s.Events, "round %d", round)
		require.NoError(t, st.Close())
	}
	require.Greater(t, len(kl.acked), 300*rounds/18)
	if !testing.Short() {
		require.Positive(t, stops["applying"], "some rounds stopped inside a checkpoint")
		require.Positive(t, stops["replaying"], "some rounds stopped inside a replay")
	}
}

// copyWithLog copies the queue at path and its write-ahead log to a new
// directory and returns the copy's path.
func copyWithLog(t *testing.T, path string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(path))
	copyFile(t, path, dst)
	require.NoError(t, os.MkdirAll(logDir(dst), 0o700))
	ents, err := os.ReadDir(logDir(path))
	require.NoError(t, err)
	for _, e := range ents {
		// Segments only: a segment the log is preparing in the
		// background (".tmp") is not part of it yet, and may be renamed
		// under the copy.
		if strings.HasSuffix(e.Name(), ".wal") {
			copyFile(t, filepath.Join(logDir(path), e.Name()), filepath.Join(logDir(dst), e.Name()))
		}
	}
	return dst
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(to, b, 0o600))
}

// walChild is the child of TestLogKilled: "wal-<round>-<kind>" enqueues
// keyed batches until killed, leasing and acking on the side; with kind
// "checkpoint" it stops inside the first checkpoint transaction that
// follows a few enqueues, and with "replay" inside Open's application of
// the log, if the last child left anything in it.
func walChild(mode, path string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	parts := strings.Split(mode, "-")
	round, err := strconv.Atoi(parts[1])
	if err != nil {
		fail(err)
	}
	opening := true
	enqueued := 0
	switch parts[2] {
	case "replay":
		logApplyHook = func() {
			if opening {
				fmt.Println("replaying")
				select {} // until SIGKILL
			}
		}
	case "checkpoint":
		logApplyHook = func() {
			if !opening && enqueued >= 8 {
				fmt.Println("applying")
				select {}
			}
		}
	}
	st, err := Open(path, walOptions())
	if err != nil {
		fail(err)
	}
	opening = false
	ctx := context.Background()
	for i := 0; ; i++ {
		evs := make([]NewEvent, 1+i%4)
		keys := make([]string, len(evs))
		for j := range evs {
			keys[j] = fmt.Sprintf("r%d-%d-%d", round, i, j)
			evs[j] = NewEvent{Function: fmt.Sprint("fn", (i+j)%3), Key: keys[j], Payload: []byte(keys[j]), Window: time.Hour}
		}
		fmt.Println("try", strings.Join(keys, " "))
		res, err := st.EnqueueUnique(ctx, evs, bucketWindow{})
		if err != nil {
			fail(err)
		}
		for _, r := range res {
			if r.Duplicate {
				fail(fmt.Errorf("fresh keys %v reported duplicate", keys))
			}
		}
		fmt.Println("ok", strings.Join(keys, " "))
		enqueued += len(evs)
		if i%3 == 2 {
			leaseAndAck(ctx, st, fail)
		}
	}
}
