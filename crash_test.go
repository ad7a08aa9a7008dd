package dispatcher_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/store"
)

const (
	childPathEnv = "DISPATCHER_CRASH_PATH"
	childRound   = "DISPATCHER_CRASH_ROUND"
)

// crashPayload is what producer p of round r sends as its i-th event. The
// padding makes it about 1 KiB, so commits span pages as real ones do.
type crashPayload struct {
	Round, Producer, I int
	Pad                string
}

func makeCrashPayload(r, p, i int) []byte {
	b, _ := json.Marshal(crashPayload{Round: r, Producer: p, I: i, Pad: strings.Repeat("x", 960)})
	return b
}

// crashChild enqueues as fast as it can from several producers and prints
// "id round producer i" for each acknowledged event, one write per line and
// unbuffered, so a printed line always follows a durable commit.
func crashChild() {
	round, _ := strconv.Atoi(os.Getenv(childRound))
	d, err := dispatcher.Open(os.Getenv(childPathEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	var out sync.Mutex
	var wg sync.WaitGroup
	for p := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				ev := dispatcher.Event{Function: "fn", Payload: makeCrashPayload(round, p, i)}
				var r dispatcher.Receipt
				var err error
				if i%5 == 4 { // some batches too
					var rs []dispatcher.Receipt
					rs, err = d.EnqueueBatch(context.Background(), []dispatcher.Event{ev})
					if err == nil {
						r = rs[0]
					}
				} else {
					r, err = d.Enqueue(context.Background(), ev)
				}
				if err != nil {
					fmt.Fprintln(os.Stderr, "child:", err)
					os.Exit(2)
				}
				out.Lock()
				fmt.Fprintf(os.Stdout, "%s %d %d %d\n", r.ID, round, p, i)
				out.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestCrashSafety SIGKILLs a child that is enqueueing at full speed, at a
// different point each round, and checks after each kill that every
// acknowledged event is on disk, intact, and nothing is duplicated.
//
// The kill comes within the first 1,000 acknowledged events of a round:
// the child commits in groups from eight producers from its first event
// on, so a kill there lands mid-commit as surely as one after 3,000 does,
// and the file still grows over five rounds. DISPATCH_SOAK=1 kills within
// the first 3,000.
func TestCrashSafety(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("kills child processes")
	}
	path := filepath.Join(t.TempDir(), "events.db")
	acked := map[string][3]int{} // id → round, producer, i
	const rounds = 5
	killWithin := 1000
	if soak() {
		killWithin = 3000
	}
	for round := range rounds {
		killAfter := 1 + rand.IntN(killWithin)
		cmd, stdout := startChild(t, "enqueue", childPathEnv+"="+path, childRound+"="+strconv.Itoa(round))
		lines := bufio.NewScanner(stdout)
		n := 0
		for lines.Scan() {
			n++
			var id string
			var r, p, i int
			_, err := fmt.Sscanf(lines.Text(), "%s %d %d %d", &id, &r, &p, &i)
			require.NoError(t, err, "line %q", lines.Text())
			_, dup := acked[id]
			require.False(t, dup, "id %s acknowledged twice", id)
			acked[id] = [3]int{r, p, i}
			if n == killAfter {
				require.NoError(t, cmd.Process.Kill())
			}
		}
		_ = cmd.Wait()
		require.GreaterOrEqual(t, n, killAfter, "round %d: the child died before the kill", round)
		t.Logf("round %d: killed after %d acknowledged events (%d read in all)", round, killAfter, n)

		// Every acknowledged event is there and intact; nothing twice.
		seen := map[[3]int]bool{}
		onDisk := map[string]bool{}
		st, err := store.Open(path, store.Options{})
		require.NoError(t, err)
		require.NoError(t, st.Scan(func(e store.Event) error {
			var cp crashPayload
			require.NoError(t, json.Unmarshal(e.Payload, &cp), "event %d", e.Seq)
			require.Equal(t, string(makeCrashPayload(cp.Round, cp.Producer, cp.I)), string(e.Payload))
			k := [3]int{cp.Round, cp.Producer, cp.I}
			require.False(t, seen[k], "event %v stored twice", k)
			seen[k] = true
			onDisk[fmt.Sprint(e.Seq)] = true
			if want, ok := acked[fmt.Sprint(e.Seq)]; ok {
				require.Equal(t, want, k, "id %d holds another event's payload", e.Seq)
			}
			return nil
		}))
		s, err := st.Stats()
		require.NoError(t, err)
		require.Equal(t, int64(len(onDisk)), s.Events, "persisted counts agree with the scan")
		require.NoError(t, st.Close())
		for id := range acked {
			require.True(t, onDisk[id], "acknowledged id %s lost", id)
		}
	}
}
