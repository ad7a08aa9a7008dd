package dispatcher_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/lambdatest"
	"github.com/lambdadispatch/dispatcher/store"
)

// The crash tests kill real processes: the test binary re-executed as a
// child that plays one part, named by childModeEnv. Every part is
// registered in children, and started with startChild; TestMain runs the
// part a child is asked to play instead of the tests.

// childModeEnv names the part a re-executed test binary plays.
const childModeEnv = "DISPATCHER_TEST_CHILD"

// What the children read from their environment, beside the shared-key
// children's own in shared_test.go.
const (
	childPathEnv = "DISPATCHER_CRASH_PATH"  // the queue file
	childRound   = "DISPATCHER_CRASH_ROUND" // the round of TestCrashSafety
	runURLEnv    = "DISPATCHER_RUN_URL"     // the lambdatest server to invoke
)

// children are the parts a child process can play, by mode.
var children = map[string]func(){
	"enqueue":              crashChild,
	"run":                  runChild,
	"redrive":              redriveChild,
	"keyed":                keyedChild,
	"shared":               sharedChild,
	"stall-after-claim":    func() { stallChild("claim") },
	"stall-before-confirm": func() { stallChild("confirm") },
}

// startChild re-executes the test binary as a child process playing mode,
// with env added to its environment, and returns it started, with its
// standard output to read. The crash tests SIGKILL it.
func startChild(t *testing.T, mode string, env ...string) (*exec.Cmd, io.ReadCloser) {
	t.Helper()
	cmd := childCommand(mode, env...)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	return cmd, stdout
}

// childCommand is the command startChild starts, for a test that needs
// more of it, such as its standard input.
func childCommand(mode string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), childModeEnv+"="+mode), env...)
	cmd.Stderr = os.Stderr
	return cmd
}

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

// maxAckBatch mirrors the dispatcher's bound on one ack transaction.
const maxAckBatch = 256

// runChild dispatches the queue at DISPATCHER_CRASH_PATH to the lambdatest
// server at DISPATCHER_RUN_URL until it is empty, then exits 0.
func runChild() {
	client := lambda.New(lambda.Options{
		BaseEndpoint: aws.String(os.Getenv(runURLEnv)),
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
	})
	d, err := dispatcher.Open(os.Getenv(childPathEnv), dispatcher.WithLambda(client), dispatcher.WithConcurrency(16), dispatcher.WithPayloadMetadata("_dispatch"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	ctx, stop := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx) }()
	for d.Stats().Queued() > 0 {
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	if err := <-errc; err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	if err := d.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	os.Exit(0)
}

// TestCrashDuringDispatch SIGKILLs a child process in the middle of
// dispatching, restarts it, and checks that every event was invoked at
// least once, none was dead-lettered, and none is left behind.
//
// 500 events show what 2,000 did: the kill comes after 100 to 350
// invocations, with the child's workers and acks in full flow, and what
// may be repeated is bounded by what the child holds, not by the queue.
// DISPATCH_SOAK=1 runs 2,000.
func TestCrashDuringDispatch(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("kills child processes")
	}
	n := 500
	if soak() {
		n = 2000
	}
	srv := lambdatest.NewServer()
	defer srv.Close()
	srv.Register("fn", lambdatest.OK())
	path := filepath.Join(t.TempDir(), "events.db")
	d, err := dispatcher.Open(path)
	require.NoError(t, err)
	events := make([]dispatcher.Event, n)
	for i := range events {
		events[i] = dispatcher.Event{Function: "fn", Payload: fmt.Appendf(nil, `{"n":%d}`, i)}
	}
	rs, err := d.EnqueueBatch(context.Background(), events)
	require.NoError(t, err)
	require.NoError(t, d.Close())

	start := func() *exec.Cmd {
		cmd, _ := startChild(t, "run", childPathEnv+"="+path, runURLEnv+"="+srv.URL())
		return cmd
	}
	killAt := 100 + rand.IntN(n/2)
	first := start()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, srv.WaitCount(ctx, "fn", killAt))
	require.NoError(t, first.Process.Kill())
	_ = first.Wait()
	killedAfter := srv.Count("fn")

	second := start()
	require.NoError(t, second.Wait(), "the restarted child drains the queue and exits 0")

	seen := map[string]int{}
	for _, inv := range srv.Invocations("fn") {
		if inv.Status != 202 {
			continue // cut off by the kill: never answered
		}
		var m meta
		require.NoError(t, json.Unmarshal(inv.Payload, &m))
		seen[m.Dispatch.ID]++
	}
	for _, r := range rs {
		require.Positive(t, seen[r.ID], "event %s never invoked", r.ID)
	}
	answered := 0
	for _, c := range seen {
		answered += c
	}
	dups := answered - n
	t.Logf("killed after %d invocations; %d invoked twice (at least once: in flight at the kill)", killedAfter, dups)
	// Repeated are only the events the child held at the kill: up to twice
	// the concurrency leased, and delivered ones whose ack had not landed
	// (one ack transaction, and as many queued behind it as are held).
	require.LessOrEqual(t, dups, 2*16+maxAckBatch+2*16, "only events held at the kill may be repeated")

	d, err = dispatcher.Open(path)
	require.NoError(t, err)
	defer d.Close()
	st := d.Stats()
	require.Zero(t, st.Queued(), "nothing left behind")
	c, err := d.DeadLetters().Count()
	require.NoError(t, err)
	require.Zero(t, c)
}

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
	letters := deadletter.NewBolt(dispatcher.StoreForTest(d))
	require.NoError(t, dispatcher.StoreForTest(d).Update(context.Background(), func(tx *store.Tx) error {
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
	bl := deadletter.NewBolt(st)
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

// keyedChild enqueues 100 keyed events, says so, and waits to be killed.
func keyedChild() {
	d, err := dispatcher.Open(os.Getenv(childPathEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	for i := range 100 {
		if _, err := d.Enqueue(context.Background(), dispatcher.Event{Function: "fn", Key: fmt.Sprint("k", i), Payload: []byte(`{}`)}); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
	}
	fmt.Println("enqueued")
	time.Sleep(time.Hour)
}

// TestDedupSurvivesSIGKILL kills a process between enqueue and delivery:
// after a restart the keys still dedup, and each is delivered once.
func TestDedupSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "events.db")
	cmd, out := startChild(t, "keyed", childPathEnv+"="+path)
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "enqueued\n", line)
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()

	srv := lambdatest.NewServer()
	t.Cleanup(srv.Close)
	srv.Register("fn", lambdatest.OK())
	b := setup(t, atPath(path), with(dispatcher.WithLambda(srv.Client()), dispatcher.WithPayloadMetadata("_dispatch")))
	d := b.d
	for i := range 100 {
		r, err := d.Enqueue(context.Background(), dispatcher.Event{Function: "fn", Key: fmt.Sprint("k", i), Payload: []byte(`{}`)})
		require.NoError(t, err)
		require.True(t, r.Duplicate, "key k%d survived the kill", i)
	}
	b.start(t)
	waitStats(t, d, "delivered", func(s dispatcher.Stats) bool { return s.Delivered == 100 })
	seen := keysSeen(t, srv, "fn")
	require.Len(t, seen, 100)
	for k, n := range seen {
		require.Equal(t, 1, n, "key %s", k)
	}
}
