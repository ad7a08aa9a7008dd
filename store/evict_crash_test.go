package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// crashOptions are the options of both sides of TestEvictionKilled: a
// small queue, and a ledger that keeps every record so that each
// eviction can be accounted for.
func crashOptions() Options {
	return Options{Full: FullDropOldest, MaxEvents: 40, MaxEvictionRecords: 1 << 20}
}

// TestEvictionKilled has a child enqueue into a full queue under
// FullDropOldest, leasing and acking on the side, and SIGKILLs it, round
// after round: at whatever point its output has reached, and stopped
// inside an enqueue's transaction between two evictions. After each kill
// the file checks, and every event whose enqueue returned is in the
// queue or in the ledger exactly once (unless its ack was under way),
// the enqueue cut short is there whole or not at all, and the counters
// agree with the events and the ledger.
//
// Eight rounds show what sixteen did: four kills at points of the child's
// output and four between two evictions, each at a point of its own, over
// some 350 events enqueued and 250 evicted (sixteen: 700 and 550), each
// round a child process to start. DISPATCH_SOAK=1 runs sixteen.
func TestEvictionKilled(t *testing.T) {
	t.Parallel()
	rounds := 8
	if soak() {
		rounds = 16
	}
	path := filepath.Join(t.TempDir(), "q.db")
	var kl killLog
	var stopped, killed, evicted int
	for round := range rounds {
		mode := "run"
		if round%2 == 1 {
			mode = "stop"
		}
		stopAt := 20 + round*13%60
		kl.run(t, fmt.Sprintf("evict-%d-%s", round, mode), path, func(word string, read int) bool {
			if word == "evicting" {
				stopped++
			}
			kill := word == "evicting" || mode == "run" && read == stopAt
			if kill {
				killed++
			}
			return kill
		})

		rep := checkFile(t, path)
		st, err := Open(path, crashOptions())
		require.NoError(t, err)
		requireIndexed(t, st, fmt.Sprintf("round %d", round))
		held := map[string]int{}
		for _, e := range scanAll(t, st) {
			require.Equal(t, e.Key, string(e.Payload), "event %d", e.Seq)
			held[e.Key]++
		}
		ledger := evictions(t, st)
		for _, e := range ledger {
			held[e.Key]++
		}
		kl.check(t, fmt.Sprintf("round %d", round), held)
		s := stats(t, st)
		require.Equal(t, int64(len(scanAll(t, st))), s.Events)
		require.LessOrEqual(t, s.Events, int64(40))
		require.Equal(t, uint64(len(ledger)), s.Evicted, "round %d: every eviction has its record", round)
		require.Equal(t, len(ledger), rep.Evictions)
		evicted = len(ledger)
		require.NoError(t, st.Close())
	}
	require.Equal(t, rounds/2, stopped, "half the rounds stopped between two evictions")
	require.Equal(t, rounds, killed)
	require.Greater(t, len(kl.acked), 200)
	require.Greater(t, evicted, 100)
}

// killLog is what the children of a kill test said, round after round:
// each line is a word and the keys it concerns ("try", "ok", "acking",
// "acked", or a word of the test's own).
type killLog struct {
	acked    map[string]bool // an enqueue returned: must never be lost
	acking   map[string]bool // an ack was under way: may be gone
	consumed map[string]bool // acked: must be gone
	tried    []string        // the keys of the last enqueue begun
	pending  bool            // ... and not returned
}

// run starts a child in mode and reads its output to the end, killing it
// when kill, given each line's word and count, says so.
func (k *killLog) run(t *testing.T, mode, path string, kill func(word string, read int) bool) {
	t.Helper()
	if k.acked == nil {
		k.acked, k.acking, k.consumed = map[string]bool{}, map[string]bool{}, map[string]bool{}
	}
	k.tried, k.pending = nil, false
	cmd, lines := startEvictChild(t, mode, path)
	read := 0
	for lines.Scan() {
		word, rest, _ := strings.Cut(lines.Text(), " ")
		keys := strings.Fields(rest)
		switch word {
		case "try":
			k.tried, k.pending = keys, true
		case "ok":
			for _, key := range keys {
				k.acked[key] = true
			}
			k.pending = false
		case "acking":
			for _, key := range keys {
				k.acking[key] = true
			}
		case "acked":
			for _, key := range keys {
				k.consumed[key] = true
			}
		}
		if read++; kill(word, read) {
			require.NoError(t, cmd.Process.Kill())
		}
	}
	_ = cmd.Wait()
}

// check holds the file to what the children said, given how many times
// each key is held after the kill (queued, or in the eviction ledger):
// every key at most once and none acked, every enqueue that returned
// there (unless its ack was under way), and the enqueue cut short whole
// or not at all.
func (k *killLog) check(t *testing.T, where string, held map[string]int) {
	t.Helper()
	for key, n := range held {
		require.Equal(t, 1, n, "%s: key %s held %d times", where, key, n)
		require.False(t, k.consumed[key], "%s: key %s acked, but still there", where, key)
	}
	for key := range k.acked {
		if !k.acking[key] {
			require.Equal(t, 1, held[key], "%s: key %s was enqueued and is gone", where, key)
		}
	}
	if k.pending {
		n := 0
		for _, key := range k.tried {
			n += held[key]
		}
		require.True(t, n == 0 || n == len(k.tried), "%s: the enqueue cut short is there whole or not at all: %d of %d", where, n, len(k.tried))
	}
}

// startEvictChild starts a child in mode and returns its output, line by
// line.
func startEvictChild(t *testing.T, mode, path string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "STORE_TEST_CHILD="+mode, "STORE_TEST_PATH="+path)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, bufio.NewScanner(stdout)
}

// evictChild is the child of TestEvictionKilled: "evict-<round>-run"
// enqueues until killed; "evict-<round>-stop" stops inside the
// transaction of an enqueue, after one of its evictions, and says so.
// Each event's key and payload are the same unique string.
func evictChild(mode, path string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	parts := strings.Split(mode, "-")
	round, err := strconv.Atoi(parts[1])
	if err != nil {
		fail(err)
	}
	if parts[2] == "stop" {
		n, at := 0, 10+round*7%40
		evictHook = func(uint64) {
			if n++; n == at {
				fmt.Println("evicting")
				select {} // until SIGKILL
			}
		}
	}
	st, err := Open(path, crashOptions())
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	for i := 0; ; i++ {
		evs := make([]NewEvent, 1+i%5)
		keys := make([]string, len(evs))
		for j := range evs {
			keys[j] = fmt.Sprintf("r%d-%d-%d", round, i, j)
			evs[j] = NewEvent{Function: fmt.Sprint("fn", (i+j)%3), Key: keys[j], Payload: []byte(keys[j]), Priority: int8((i+j)%7) - 3}
		}
		fmt.Println("try", strings.Join(keys, " "))
		if _, err := st.Enqueue(ctx, evs); err != nil {
			fail(err)
		}
		fmt.Println("ok", strings.Join(keys, " "))
		switch i % 4 {
		case 1:
			// Leased events are never evicted: they stay leased until
			// the kill, and Open returns them.
			if _, err := st.Lease(ctx, 2, time.Hour); err != nil {
				fail(err)
			}
		case 3:
			leaseAndAck(ctx, st, fail)
		}
	}
}

// leaseAndAck is a child's work on the side: it leases up to two events
// and acks them, saying "acking" and "acked" with their keys, for
// killLog to read.
func leaseAndAck(ctx context.Context, st *Store, fail func(error)) {
	got, err := st.Lease(ctx, 2, time.Hour)
	if err != nil {
		fail(err)
	}
	if len(got) == 0 {
		return
	}
	fmt.Println("acking", strings.Join(keysOf(got), " "))
	if err := st.Ack(ctx, seqsOf(got)...); err != nil {
		fail(err)
	}
	fmt.Println("acked", strings.Join(keysOf(got), " "))
}
