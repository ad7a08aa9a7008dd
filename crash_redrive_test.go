package dispatcher_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/store"
)

// redriveChild redrives every letter of the file and exits.
func redriveChild() {
	d, err := dispatcher.Open(os.Getenv(childPathEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	fmt.Println("redriving")
	if _, err := d.DeadLetters().RedriveMatching(context.Background(), dispatcher.LetterFilter{}, dispatcher.RedriveOptions{}); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	os.Exit(0)
}

// TestCrashDuringRedrive SIGKILLs a child in the middle of redriving
// thousands of letters: afterwards each is exactly once in the queue or in
// the dead letters.
func TestCrashDuringRedrive(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("kills child processes")
	}
	const n = 5000
	path := filepath.Join(t.TempDir(), "events.db")
	d, err := dispatcher.Open(path)
	require.NoError(t, err)
	letters := deadletter.NewBolt(dispatcher.DBForTest(d))
	require.NoError(t, dispatcher.DBForTest(d).Update(func(tx *bolt.Tx) error {
		for i := 1; i <= n; i++ {
			l := deadletter.Letter{ID: fmt.Sprint(i), Function: "fn", Reason: deadletter.RetriesExhausted, Attempts: 3, Payload: fmt.Appendf(nil, `{"n":%d}`, i)}
			if err := letters.PutTx(tx, l); err != nil {
				return err
			}
		}
		return nil
	}))
	require.NoError(t, d.Close())

	cmd, stdout := startChild(t, "redrive", childPathEnv+"="+path)
	_, err = bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond) // a kill point, not synchronisation
	_ = cmd.Process.Kill()
	_ = cmd.Wait()

	seen := map[int]string{}
	note := func(where string, payload []byte) {
		var p struct{ N int }
		require.NoError(t, json.Unmarshal(payload, &p))
		require.Empty(t, seen[p.N], "event %d is both %s and %s", p.N, seen[p.N], where)
		seen[p.N] = where
	}
	st, err := store.Open(path, store.Options{})
	require.NoError(t, err)
	require.NoError(t, st.Scan(func(e store.Event) error { note("queued", e.Payload); return nil }))
	bl := deadletter.NewBolt(st.DB())
	after := ""
	for {
		page, next, err := bl.List(context.Background(), after, 1000)
		require.NoError(t, err)
		for _, l := range page {
			note("a letter", l.Payload)
		}
		if next == "" {
			break
		}
		after = next
	}
	c, err := bl.Count()
	require.NoError(t, err)
	s, err := st.Stats()
	require.NoError(t, err)
	require.NoError(t, st.Close())
	require.Len(t, seen, n, "every letter is somewhere")
	require.Equal(t, n, c+int(s.Events), "counts agree with the scans")
	t.Logf("killed with %d redriven and %d still letters", s.Events, c)
}
