package dispatcher_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/idempotency/dynamo"
	"github.com/lambdadispatch/dispatcher/internal/dynalitetest"
	"github.com/lambdadispatch/dispatcher/lambdatest"
	"github.com/lambdadispatch/dispatcher/store"
)

// What the shared-window children read from their environment.
const (
	dynamoURLEnv   = "DISPATCHER_TEST_DYNAMO_URL"
	dynamoTableEnv = "DISPATCHER_TEST_DYNAMO_TABLE"
	sharedOrderEnv = "DISPATCHER_TEST_KEY_ORDER" // "up" or "down"
	sharedCountEnv = "DISPATCHER_TEST_COUNT"
	sharedKeyEnv   = "DISPATCHER_TEST_KEY"
)

// childWindow is the shared window a child process uses: the table the
// parent names, on the dynalite it runs.
func childWindow() *dynamo.Window {
	client := dynamodb.New(dynamodb.Options{
		BaseEndpoint: aws.String(os.Getenv(dynamoURLEnv)),
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
	})
	w, err := dynamo.New(client, os.Getenv(dynamoTableEnv))
	if err != nil {
		childFail(err)
	}
	return w
}

func childFail(err error) {
	fmt.Fprintln(os.Stderr, "child:", err)
	os.Exit(2)
}

// sharedChild enqueues n keyed events with 64 producers, keys in the
// order it is given, while Run delivers them; it exits when its queue is
// empty and every claim is confirmed, printing how many it queued (its
// Enqueue said not a duplicate), how many of those hold their key in the
// table at the end, and its Stats.Shared.Lost and MarksSkipped. It says
// "ready" once Run is started, and starts its producers when a line comes
// on its standard input, so that two children start them together.
func sharedChild() {
	n, _ := strconv.Atoi(os.Getenv(sharedCountEnv))
	client := lambda.New(lambda.Options{
		BaseEndpoint: aws.String(os.Getenv(runURLEnv)),
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
	})
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	w := childWindow()
	d, err := dispatcher.Open(os.Getenv(childPathEnv), dispatcher.WithLambda(client), dispatcher.WithLogger(logger),
		dispatcher.WithSharedKeys(w), dispatcher.WithPayloadMetadata("_dispatch"), dispatcher.WithConcurrency(32))
	if err != nil {
		childFail(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx) }()
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		childFail(fmt.Errorf("waiting for the start: %w", err))
	}
	next := make(chan int)
	go func() {
		for i := range n {
			if os.Getenv(sharedOrderEnv) == "down" {
				i = n - 1 - i
			}
			next <- i
		}
		close(next)
	}()
	var wg sync.WaitGroup
	var mu sync.Mutex
	queued := map[string]string{} // key: the ID of the event queued for it
	for range 64 {
		wg.Go(func() {
			for i := range next {
				key := fmt.Sprint("order-", i)
				r, err := d.Enqueue(context.Background(), dispatcher.Event{Function: "fn", Key: key, Payload: []byte(`{}`)})
				if err != nil {
					childFail(err)
				}
				if !r.Duplicate {
					mu.Lock()
					queued[key] = r.ID
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	for st := d.Stats(); st.Queued() > 0 || st.Shared.Unconfirmed > 0; st = d.Stats() {
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	if err := <-errc; err != nil {
		childFail(err)
	}
	st := d.Stats().Shared
	keys := slices.Collect(maps.Keys(queued))
	hs, err := w.Lookup(context.Background(), keys, time.Now())
	if err != nil {
		childFail(err)
	}
	kept := 0
	for _, key := range keys {
		if h := hs[key]; h.Owner == d.Owner() && h.ID == queued[key] {
			kept++
		}
	}
	if err := d.Close(); err != nil {
		childFail(err)
	}
	fmt.Println("queued", len(queued), "kept", kept, "lost", st.Lost, "skipped", st.MarksSkipped)
	os.Exit(0)
}

// stallingWindow stops the process at one step of an Enqueue, so that the
// parent can SIGKILL it there: after the claim (before the commit), or
// before the confirm (after the commit).
type stallingWindow struct {
	idempotency.Shared
	at string
}

func (w stallingWindow) Claim(ctx context.Context, c idempotency.Claim, now time.Time) (idempotency.Holder, bool, error) {
	h, ok, err := w.Shared.Claim(ctx, c, now)
	if w.at == "claim" && ok && err == nil {
		fmt.Println("claimed")
		select {}
	}
	return h, ok, err
}

func (w stallingWindow) Confirm(ctx context.Context, r idempotency.Ref) error {
	if w.at == "confirm" {
		fmt.Println("committed", r.ID)
		select {}
	}
	return w.Shared.Confirm(ctx, r)
}

func stallChild(at string) {
	d, err := dispatcher.Open(os.Getenv(childPathEnv), dispatcher.WithSharedKeys(stallingWindow{childWindow(), at}), dispatcher.WithClaimLease(time.Second))
	if err != nil {
		childFail(err)
	}
	_, err = d.Enqueue(context.Background(), dispatcher.Event{Function: "fn", Key: os.Getenv(sharedKeyEnv), Payload: []byte(`{}`)})
	childFail(fmt.Errorf("enqueue returned instead of stalling: %v", err))
}

// dynalite is the package's dynalite server and a table of a test's own.
type dynalite struct {
	url, table string
	client     *dynamodb.Client
}

// sharedDynalite is the one dynalite of the package's tests, each on a
// table of its own; TestMain stops it.
var sharedDynalite dynalitetest.Server

// startDynalite makes a table for t on the package's dynalite, starting it
// if need be.
func startDynalite(t *testing.T) dynalite {
	t.Helper()
	url := sharedDynalite.Endpoint(t)
	client := dynalitetest.Client(t, url)
	return dynalite{url: url, table: dynalitetest.Table(t, client), client: client}
}

func (dl dynalite) window(t *testing.T) *dynamo.Window {
	t.Helper()
	w, err := dynamo.New(dl.client, dl.table)
	require.NoError(t, err)
	return w
}

func (dl dynalite) env() []string {
	return []string{dynamoURLEnv + "=" + dl.url, dynamoTableEnv + "=" + dl.table}
}

// holder reads key's holder from the table.
func (dl dynalite) holder(t *testing.T, key string) (idempotency.Holder, bool) {
	t.Helper()
	hs, err := dl.window(t).Lookup(context.Background(), []string{key}, time.Now())
	require.NoError(t, err)
	h, ok := hs[key]
	return h, ok
}

// TestSharedKeysTwoProcesses runs two dispatchers in two processes, each
// with its own file, sharing one table: both enqueue the same 250 keys at
// once, in opposite orders, with 64 producers each, while delivering. The
// function sees each key exactly once.
//
// 250 keys show what 5,000 did: every key is enqueued by both processes,
// so every key is a race between them, and with 64 producers a side the
// two orders cross in the middle while both are claiming, confirming and
// delivering at full speed. The children start their producers together,
// once both are running, so that they cross in the middle however few the
// keys (started as they came up, one had often queued most of 200 keys
// before the other began). More keys only repeat that race; they cost a
// minute and a half under -race, and 500 cost 13 s of CPU, most of it
// dynalite's, on a machine of two cores. DISPATCH_SOAK=1 runs 5,000.
func TestSharedKeysTwoProcesses(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs child processes")
	}
	n := 250
	if soak() {
		n = 5000
	}
	dl := startDynalite(t)
	srv := lambdatest.NewServer()
	defer srv.Close()
	srv.Register("fn", lambdatest.OK())
	dir := t.TempDir()
	type result struct {
		queued, kept, lost, skipped int
		err                         error
	}
	results := make(chan result, 2)
	ready := make(chan struct{}, 2)
	var starts []io.WriteCloser
	for _, order := range []string{"up", "down"} {
		env := append(dl.env(), childPathEnv+"="+filepath.Join(dir, order+".db"), runURLEnv+"="+srv.URL(),
			sharedOrderEnv+"="+order, sharedCountEnv+"="+strconv.Itoa(n))
		cmd := childCommand("shared", env...)
		start, err := cmd.StdinPipe()
		require.NoError(t, err)
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		starts = append(starts, start)
		out := bufio.NewReader(stdout)
		go func() {
			line, _ := out.ReadString('\n')
			ready <- struct{}{}
			if line == "ready\n" {
				line, _ = out.ReadString('\n')
			}
			err := cmd.Wait()
			var r result
			if _, serr := fmt.Sscanf(line, "queued %d kept %d lost %d skipped %d", &r.queued, &r.kept, &r.lost, &r.skipped); err == nil && serr != nil {
				err = fmt.Errorf("child printed %q: %v", line, serr)
			}
			r.err = err
			results <- r
		}()
	}
	// Both children are open and running: start their producers at once,
	// so that the two orders cross in the middle of the keys.
	for range 2 {
		select {
		case <-ready:
		case <-time.After(time.Minute):
			t.Fatal("children did not start")
		}
	}
	for _, start := range starts {
		_, _ = io.WriteString(start, "go\n") // a child that failed says so in its result
	}
	kept := 0
	for range 2 {
		select {
		case r := <-results:
			require.NoError(t, r.err)
			t.Logf("child: %+v", r)
			// An Enqueue whose confirm failed reports its event queued; if
			// the lease then passed and the other process took the key
			// over, the event was removed as a duplicate before any invoke
			// and counted in Stats.Shared.Lost. A claim taken over while
			// its Enqueue was still confirming it (a table slower than the
			// lease) is counted in Lost too, but that Enqueue reports the
			// event a duplicate, so Lost may count more than these.
			require.LessOrEqual(t, r.queued-r.kept, r.lost, "events queued that lost their key were lost to a takeover")
			kept += r.kept
		case <-time.After(5 * time.Minute):
			t.Fatal("children did not finish")
		}
	}
	require.Equal(t, n, kept, "each key held by an event whose Enqueue reported it queued")
	seen := keysSeen(t, srv, "fn")
	require.Len(t, seen, n)
	for k, c := range seen {
		require.Equal(t, 1, c, "key %s invoked %d times", k, c)
	}
	// Delivered, or still Queued where a mark was skipped: under load a
	// slow table puts delivery-side marks on hold (Stats.Shared.MarksSkipped)
	// rather than slow delivery down.
	for _, k := range []string{"order-0", fmt.Sprint("order-", n/2), fmt.Sprint("order-", n-1)} {
		h, ok := dl.holder(t, k)
		require.True(t, ok, k)
		require.Contains(t, []idempotency.State{idempotency.Queued, idempotency.Delivered}, h.State, k)
		require.NotEmpty(t, h.ID, k)
	}
}

// stallAndKill starts a child that stalls at one step of enqueueing key
// into path, waits for it to say it got there, and SIGKILLs it. It returns
// what the child printed.
func stallAndKill(t *testing.T, dl dynalite, mode, path, key string) string {
	t.Helper()
	cmd, out := startChild(t, mode, append(dl.env(), childPathEnv+"="+path, sharedKeyEnv+"="+key)...)
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	return strings.TrimSpace(line)
}

// TestSharedKeysCrashBetweenClaimAndCommit kills a process after it
// claimed a key and before it committed the event. Replayed on the same
// file, the Enqueue takes its own claim back at once and queues the event
// exactly once; replayed on another dispatcher, it waits out the lease and
// takes the claim over.
func TestSharedKeysCrashBetweenClaimAndCommit(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("kills child processes")
	}
	dl := startDynalite(t)
	dir := t.TempDir()
	ctx := context.Background()

	t.Run("same file", func(t *testing.T) {
		path := filepath.Join(dir, "same.db")
		require.Equal(t, "claimed", stallAndKill(t, dl, "stall-after-claim", path, "k1"))
		h, ok := dl.holder(t, "k1")
		require.True(t, ok)
		require.Equal(t, idempotency.Claimed, h.State)

		d := setup(t, atPath(path), with(dispatcher.WithSharedKeys(dl.window(t)))).d
		require.Equal(t, h.Owner, d.Owner(), "the file keeps its owner across the crash")
		require.Zero(t, d.Stats().Queued(), "the killed child committed nothing")
		r, err := d.Enqueue(ctx, dispatcher.Event{Function: "fn", Key: "k1", Payload: []byte(`{}`)})
		require.NoError(t, err)
		require.False(t, r.Duplicate, "the replay must not be refused by its own dead claim")
		r2, err := d.Enqueue(ctx, dispatcher.Event{Function: "fn", Key: "k1", Payload: []byte(`{}`)})
		require.NoError(t, err)
		require.True(t, r2.Duplicate)
		require.Equal(t, r.ID, r2.ID)
		require.EqualValues(t, 1, d.Stats().Queued())
		h, ok = dl.holder(t, "k1")
		require.True(t, ok)
		require.Equal(t, idempotency.Queued, h.State)
		require.Equal(t, r.ID, h.ID)
	})

	t.Run("another dispatcher", func(t *testing.T) {
		require.Equal(t, "claimed", stallAndKill(t, dl, "stall-after-claim", filepath.Join(dir, "dead.db"), "k2"))
		dead, ok := dl.holder(t, "k2")
		require.True(t, ok)
		// The dead claim's lease is one second: the Enqueue waits it out,
		// then takes the key over. On a loaded machine that second can be
		// gone before the Enqueue's first claim, which would then take the
		// key over at once; so that first claim is made as of a moment
		// inside the lease, as on an idle machine, and the tries after it
		// on the real clock.
		w := &firstClaimAt{Shared: dl.window(t), at: dead.Lease.Add(-time.Millisecond)}
		d := setup(t, atPath(filepath.Join(dir, "other.db")), with(dispatcher.WithSharedKeys(w))).d
		r, err := d.Enqueue(ctx, dispatcher.Event{Function: "fn", Key: "k2", Payload: []byte(`{}`)})
		require.NoError(t, err)
		require.False(t, r.Duplicate)
		st := d.Stats()
		require.EqualValues(t, 1, st.Queued())
		require.NotZero(t, st.Shared.Waits, "it waited for the dead claim's lease")
		h, _ := dl.holder(t, "k2")
		require.Equal(t, d.Owner(), h.Owner)
		require.Equal(t, idempotency.Queued, h.State)
	})
}

// firstClaimAt makes the first claim through it as of at rather than the
// now it is given, and the others as of their now.
type firstClaimAt struct {
	idempotency.Shared
	at   time.Time
	used atomic.Bool
}

func (w *firstClaimAt) Claim(ctx context.Context, c idempotency.Claim, now time.Time) (idempotency.Holder, bool, error) {
	if w.used.CompareAndSwap(false, true) {
		now = w.at
	}
	return w.Shared.Claim(ctx, c, now)
}

// TestSharedKeysCrashBeforeConfirm kills a process after it committed an
// event and before it confirmed the claim: the next Open confirms it, and
// a replay is a duplicate.
func TestSharedKeysCrashBeforeConfirm(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("kills child processes")
	}
	dl := startDynalite(t)
	path := filepath.Join(t.TempDir(), "events.db")
	line := stallAndKill(t, dl, "stall-before-confirm", path, "k1")
	id, ok := strings.CutPrefix(line, "committed ")
	require.True(t, ok, line)

	d := setup(t, atPath(path), with(dispatcher.WithSharedKeys(dl.window(t)))).d
	require.EqualValues(t, 1, d.Stats().Queued())
	waitStats(t, d, "the pending claim confirmed", func(s dispatcher.Stats) bool { return s.Shared.Unconfirmed == 0 })
	h, found := dl.holder(t, "k1")
	require.True(t, found)
	require.Equal(t, idempotency.Queued, h.State)
	require.Equal(t, id, h.ID)
	r, err := d.Enqueue(context.Background(), dispatcher.Event{Function: "fn", Key: "k1", Payload: []byte(`{}`)})
	require.NoError(t, err)
	require.True(t, r.Duplicate)
	require.Equal(t, id, r.ID)
	require.EqualValues(t, 1, d.Stats().Queued())
}

// TestSharedKeysAcrossDispatchers: a key one dispatcher queued is a
// duplicate on another, with the holder's id.
func TestSharedKeysAcrossDispatchers(t *testing.T) {
	t.Parallel()
	dl := startDynalite(t)
	dir := t.TempDir()
	ctx := context.Background()
	a := setup(t, atPath(filepath.Join(dir, "a.db")), with(dispatcher.WithSharedKeys(dl.window(t)))).d
	b := setup(t, atPath(filepath.Join(dir, "b.db")), with(dispatcher.WithSharedKeys(dl.window(t)))).d
	require.NotEqual(t, a.Owner(), b.Owner())

	ra, err := a.Enqueue(ctx, dispatcher.Event{Function: "fn", Key: "k", Payload: []byte(`{}`)})
	require.NoError(t, err)
	require.False(t, ra.Duplicate)
	rb, err := b.Enqueue(ctx, dispatcher.Event{Function: "fn", Key: "k", Payload: []byte(`{}`)})
	require.NoError(t, err)
	require.True(t, rb.Duplicate)
	require.Equal(t, ra.ID, rb.ID)
	require.Zero(t, b.Stats().Queued())
	require.EqualValues(t, 1, b.Stats().DuplicatesRefused)

	// A batch mixing held, new and repeated keys.
	rs, err := b.EnqueueBatch(ctx, []dispatcher.Event{
		{Function: "fn", Key: "k", Payload: []byte(`{}`)},
		{Function: "fn", Key: "n1", Payload: []byte(`{}`)},
		{Function: "fn", Key: "n1", Payload: []byte(`{}`)},
		{Function: "fn", Payload: []byte(`{}`)},
	})
	require.NoError(t, err)
	require.True(t, rs[0].Duplicate)
	require.False(t, rs[1].Duplicate)
	require.True(t, rs[2].Duplicate)
	require.Equal(t, rs[1].ID, rs[2].ID)
	require.False(t, rs[3].Duplicate)
	require.EqualValues(t, 2, b.Stats().Queued())
	ra, err = a.Enqueue(ctx, dispatcher.Event{Function: "fn", Key: "n1", Payload: []byte(`{}`)})
	require.NoError(t, err)
	require.True(t, ra.Duplicate)
	require.Equal(t, rs[1].ID, ra.ID)
}

// overtakingWindow lets an intruder take a claim over and queue its own
// event just before the claimer confirms, as if the claimer had been
// slower than its lease.
type overtakingWindow struct {
	idempotency.Shared
	lease time.Duration
}

func (w overtakingWindow) Confirm(ctx context.Context, r idempotency.Ref) error {
	later := time.Now().Add(w.lease + time.Second)
	_, ok, err := w.Shared.Claim(ctx, idempotency.Claim{Key: r.Key, Owner: "intruder", Token: "t-intruder", Window: time.Hour, Lease: w.lease}, later)
	if err != nil || !ok {
		return fmt.Errorf("intruder could not take the claim over: ok=%v err=%v", ok, err)
	}
	if err := w.Shared.Confirm(ctx, idempotency.Ref{Key: r.Key, Owner: "intruder", Token: "t-intruder", ID: "intruder-1"}); err != nil {
		return err
	}
	return w.Shared.Confirm(ctx, r)
}

// TestSharedKeysClaimTakenOver: when a claim is taken over before its
// confirm, the committed event is the duplicate: it is removed, never
// invoked, and the Enqueue reports the intruder's event.
func TestSharedKeysClaimTakenOver(t *testing.T) {
	t.Parallel()
	dl := startDynalite(t)
	d, err := dispatcher.Open(filepath.Join(t.TempDir(), "events.db"),
		dispatcher.WithSharedKeys(overtakingWindow{dl.window(t), dispatcher.DefaultClaimLease}))
	require.NoError(t, err)
	defer d.Close()
	r, err := d.Enqueue(context.Background(), dispatcher.Event{Function: "fn", Key: "k", Payload: []byte(`{}`)})
	require.NoError(t, err)
	require.True(t, r.Duplicate)
	require.Equal(t, "intruder-1", r.ID)
	st := d.Stats()
	require.Zero(t, st.Queued())
	require.EqualValues(t, 1, st.Shared.Lost)
	require.EqualValues(t, 1, st.DuplicatesRefused, "counted once")
	require.Zero(t, st.Shared.Unconfirmed)
	n := 0
	require.NoError(t, dispatcher.ScanEvents(d, func(store.Event) error { n++; return nil }))
	require.Zero(t, n, "the duplicate was removed from the file")
}

// TestSharedKeysUnavailable: a throttled or unreachable window fails a
// keyed Enqueue with ErrKeysUnavailable and writes nothing; events without
// keys, and delivery of events already queued, go on regardless.
func TestSharedKeysUnavailable(t *testing.T) {
	t.Parallel()
	dl := startDynalite(t)
	proxy := dynalitetest.NewFaultProxy(t, dl.url)
	w, err := dynamo.New(dynalitetest.Client(t, proxy.URL()), dl.table)
	require.NoError(t, err)
	b := setup(t, withServer(), with(dispatcher.WithSharedKeys(w)))
	b.srv.Register("fn", lambdatest.OK())
	ctx := context.Background()
	for i := range 20 {
		_, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "fn", Key: fmt.Sprint("k", i), Payload: []byte(`{}`)})
		require.NoError(t, err)
	}

	proxy.Throttle(1000)
	_, err = b.d.Enqueue(ctx, dispatcher.Event{Function: "fn", Key: "throttled", Payload: []byte(`{}`)})
	require.ErrorIs(t, err, dispatcher.ErrKeysUnavailable)
	var ue *idempotency.UnavailableError
	require.ErrorAs(t, err, &ue)
	require.True(t, ue.Throttled)
	require.EqualValues(t, 20, b.d.Stats().Queued(), "nothing written")
	proxy.Throttle(0)

	proxy.Offline(true)
	_, err = b.d.Enqueue(ctx, dispatcher.Event{Function: "fn", Key: "offline", Payload: []byte(`{}`)})
	require.ErrorIs(t, err, dispatcher.ErrKeysUnavailable)
	require.ErrorAs(t, err, &ue)
	require.False(t, ue.Throttled)
	_, err = b.d.Enqueue(ctx, dispatcher.Event{Function: "fn", Payload: []byte(`{}`)})
	require.NoError(t, err, "an event without a key never touches the window")
	require.EqualValues(t, 21, b.d.Stats().Queued())

	// Delivery does not wait for the window.
	b.start(t)
	st := waitStats(t, b.d, "delivered", func(s dispatcher.Stats) bool { return s.Delivered == 21 })
	require.NotZero(t, st.Shared.Unavailable+st.Shared.MarksSkipped)
	require.Len(t, keysSeen(t, b.srv, "fn"), 21)

	// Back online, the marks resume and keys are refused again.
	proxy.Offline(false)
	r, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "fn", Key: "k3", Payload: []byte(`{}`)})
	require.NoError(t, err)
	require.True(t, r.Duplicate)
}

// TestSharedKeysDeadLetterAndRedrive: a dead-lettered event's key is
// marked so in the table; a redrive releases it and the new event claims
// it, and is delivered.
func TestSharedKeysDeadLetterAndRedrive(t *testing.T) {
	t.Parallel()
	dl := startDynalite(t)
	b := setup(t, withServer(), with(dispatcher.WithSharedKeys(dl.window(t))))
	b.srv.Register("fn", lambdatest.OK())
	ctx := context.Background()
	r, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "missing", Key: "k", Payload: []byte(`{}`)})
	require.NoError(t, err)
	b.start(t)
	waitStats(t, b.d, "dead-lettered", func(s dispatcher.Stats) bool { return s.DeadLettered == 1 })
	waitHolder(t, dl, "k", func(h idempotency.Holder) bool { return h.State == idempotency.DeadLettered && h.ID == r.ID })

	n, err := b.d.DeadLetters().Redrive(ctx, []string{r.ID}, dispatcher.RedriveOptions{Function: "fn"})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	waitStats(t, b.d, "delivered", func(s dispatcher.Stats) bool { return s.Delivered == 1 })
	h := waitHolder(t, dl, "k", func(h idempotency.Holder) bool { return h.State == idempotency.Delivered })
	require.NotEqual(t, r.ID, h.ID, "the redriven event holds the key now")
	require.Equal(t, 1, keysSeen(t, b.srv, "fn")["k"])
}

func waitHolder(t *testing.T, dl dynalite, key string, cond func(idempotency.Holder) bool) idempotency.Holder {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		h, ok := dl.holder(t, key)
		if ok && cond(h) {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting on key %s; holder %+v (found %v)", key, h, ok)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSharedKeysBatchHeldElsewhere: a batch whose keys another dispatcher
// holds reads them a hundred a request and writes nothing to the table.
func TestSharedKeysBatchHeldElsewhere(t *testing.T) {
	t.Parallel()
	dl := startDynalite(t)
	dir := t.TempDir()
	ctx := context.Background()
	a := setup(t, atPath(filepath.Join(dir, "a.db")), with(dispatcher.WithSharedKeys(dl.window(t)))).d
	proxy := dynalitetest.NewFaultProxy(t, dl.url)
	w, err := dynamo.New(dynalitetest.Client(t, proxy.URL()), dl.table)
	require.NoError(t, err)
	b := setup(t, atPath(filepath.Join(dir, "b.db")), with(dispatcher.WithSharedKeys(w))).d

	batch := make([]dispatcher.Event, 150)
	for i := range batch {
		batch[i] = dispatcher.Event{Function: "fn", Key: fmt.Sprint("k", i), Payload: []byte(`{}`)}
	}
	ra, err := a.EnqueueBatch(ctx, batch)
	require.NoError(t, err)
	rb, err := b.EnqueueBatch(ctx, batch)
	require.NoError(t, err)
	for i := range rb {
		require.True(t, rb[i].Duplicate, i)
		require.Equal(t, ra[i].ID, rb[i].ID, i)
	}
	require.Zero(t, b.Stats().Queued())
	require.Equal(t, map[string]int{"BatchGetItem": 2}, proxy.Counts())
}

// TestSharedKeysFileWindow shares a window in a bbolt file of its own
// between two dispatchers of one process, each with its own queue file:
// both enqueue the same 300 keys at once while delivering, and the
// function sees each key once.
//
// 300 keys show what 1,000 did: both dispatchers enqueue every key, 16
// producers each, so every key is raced for; more keys only repeat the
// race, each with a few fsyncs of the window's file. DISPATCH_SOAK=1 runs
// 1,000.
func TestSharedKeysFileWindow(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w, err := idempotency.OpenFileWindow(filepath.Join(dir, "keys.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = w.Close() }) // after the dispatchers, which close first
	srv := lambdatest.NewServer()
	t.Cleanup(srv.Close)
	srv.Register("fn", lambdatest.OK())
	n := 300
	if soak() {
		n = 1000
	}
	var queued atomic.Int64
	var wg sync.WaitGroup
	for _, name := range []string{"a", "b"} {
		b := setup(t, atPath(filepath.Join(dir, name+".db")), with(dispatcher.WithSharedKeys(w),
			dispatcher.WithLambda(srv.Client()), dispatcher.WithPayloadMetadata("_dispatch")))
		d := b.d
		b.start(t)
		for p := range 16 {
			wg.Go(func() {
				for i := p; i < n; i += 16 {
					r, err := d.Enqueue(context.Background(), dispatcher.Event{Function: "fn", Key: fmt.Sprint("k", i), Payload: []byte(`{}`)})
					if err != nil {
						t.Error(err)
						return
					}
					if !r.Duplicate {
						queued.Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	require.EqualValues(t, n, queued.Load())
	// Wait for n invokes, woken by each one rather than parsing every
	// payload every few milliseconds; a duplicate among them leaves a key
	// out, which the checks below catch.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_ = srv.WaitCount(ctx, "fn", n)
	seen := keysSeen(t, srv, "fn")
	require.Len(t, seen, n)
	for k, c := range seen {
		require.Equal(t, 1, c, "key %s", k)
	}
}

// flakyConfirms fails every Confirm with an unavailable window until
// healed.
type flakyConfirms struct {
	idempotency.Shared
	healed atomic.Bool
}

func (w *flakyConfirms) Confirm(ctx context.Context, r idempotency.Ref) error {
	if !w.healed.Load() {
		return &idempotency.UnavailableError{Op: "Confirm", Key: r.Key, Err: errors.New("injected")}
	}
	return w.Shared.Confirm(ctx, r)
}

// TestSharedKeysConfirmAfterDelivery: when the window cannot confirm a
// claim, the event is delivered on the local index's word; once the window
// is back, the claim is confirmed all the same, though the event has left
// the file, so that no other dispatcher takes the key over.
func TestSharedKeysConfirmAfterDelivery(t *testing.T) {
	t.Parallel()
	fw, err := idempotency.OpenFileWindow(filepath.Join(t.TempDir(), "keys.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = fw.Close() })
	w := &flakyConfirms{Shared: fw}
	b := setup(t, withServer(), with(dispatcher.WithSharedKeys(w)))
	b.srv.Register("fn", lambdatest.OK())
	r, err := b.d.Enqueue(context.Background(), dispatcher.Event{Function: "fn", Key: "k", Payload: []byte(`{}`)})
	require.NoError(t, err)
	require.False(t, r.Duplicate)
	b.start(t)
	waitStats(t, b.d, "delivered unconfirmed", func(s dispatcher.Stats) bool { return s.Delivered == 1 })
	require.Equal(t, 1, b.d.Stats().Shared.Unconfirmed)
	hs, err := fw.Lookup(context.Background(), []string{"k"}, time.Now())
	require.NoError(t, err)
	require.Equal(t, idempotency.Claimed, hs["k"].State)

	w.healed.Store(true)
	waitStats(t, b.d, "confirmed", func(s dispatcher.Stats) bool { return s.Shared.Unconfirmed == 0 })
	hs, err = fw.Lookup(context.Background(), []string{"k"}, time.Now())
	require.NoError(t, err)
	require.Equal(t, idempotency.Queued, hs["k"].State)
	require.Equal(t, r.ID, hs["k"].ID)
	require.EqualValues(t, 1, len(keysSeen(t, b.srv, "fn")))
}

// heldConfirm holds the first Confirm of one key until the test lets it
// go, then has an intruder take the claim over and queue its own event
// before the Confirm goes on (and fails), as when the window answers more
// slowly than the claim's lease; the claimer's event is then the
// duplicate. A Mark of failMark fails as a window that timed out does,
// which puts delivery's side of the window on hold for 30s.
type heldConfirm struct {
	idempotency.Shared
	key, failMark string
	confirming    chan struct{} // closed when the held Confirm arrives
	release       chan struct{} // closed by the test to let it go on
	once          sync.Once
}

func (w *heldConfirm) Confirm(ctx context.Context, r idempotency.Ref) error {
	held := false
	if r.Key == w.key {
		w.once.Do(func() { held = true })
	}
	if !held {
		return w.Shared.Confirm(ctx, r)
	}
	close(w.confirming)
	<-w.release
	if err := (overtakingWindow{w.Shared, dispatcher.DefaultClaimLease}).Confirm(ctx, r); !errors.Is(err, idempotency.ErrLost) {
		return fmt.Errorf("the intruder's takeover left the confirm with %v, not ErrLost", err)
	}
	return fmt.Errorf("held confirm: %w", idempotency.ErrLost)
}

func (w *heldConfirm) Mark(ctx context.Context, r idempotency.Ref, s idempotency.State) error {
	if r.Key == w.failMark {
		return &idempotency.UnavailableError{Op: "Mark", Key: r.Key, Err: context.DeadlineExceeded}
	}
	return w.Shared.Mark(ctx, r, s)
}

// TestSharedKeysNoInvokeBeforeEnqueueSettles: an event leased while its
// Enqueue is still confirming the claim is not invoked until that confirm
// is settled, and not at all when the claim turned out to be taken over
// and the Enqueue reports the event a duplicate: not when delivery's side
// of the window is on hold after a failed mark, and not when the confirm
// takes longer than delivery's own bound on a window request. Once found
// by TestSharedKeysTwoProcesses under load: the Enqueue reported a
// duplicate and counted the event in Stats.Shared.Lost, and the function
// saw the key twice.
func TestSharedKeysNoInvokeBeforeEnqueueSettles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		degraded bool          // a failed mark first puts delivery's marks on hold
		timeout  time.Duration // WithInvokeTimeout, which bounds delivery's window requests
	}{
		{name: "WindowUp"},
		{name: "MarksOnHold", degraded: true},
		{name: "SlowerThanInvokeTimeout", timeout: 100 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fw, err := idempotency.OpenFileWindow(filepath.Join(t.TempDir(), "keys.db"))
			require.NoError(t, err)
			t.Cleanup(func() { _ = fw.Close() })
			w := &heldConfirm{Shared: fw, key: "k", confirming: make(chan struct{}), release: make(chan struct{})}
			if tc.degraded {
				w.failMark = "warm"
			}
			var logs syncBuffer
			opts := []dispatcher.Option{dispatcher.WithSharedKeys(w), dispatcher.WithLogger(slog.New(slog.NewTextHandler(&logs, nil)))}
			if tc.timeout > 0 {
				opts = append(opts, dispatcher.WithInvokeTimeout(tc.timeout))
			}
			b := setup(t, withServer(), with(opts...))
			b.srv.Register("fn", lambdatest.OK())
			b.start(t)
			ctx := context.Background()
			if tc.degraded {
				_, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "fn", Key: "warm", Payload: []byte(`{}`)})
				require.NoError(t, err)
				waitStats(t, b.d, "the warm-up's mark failed", func(s dispatcher.Stats) bool { return s.Shared.Unavailable > 0 })
			}

			type result struct {
				r   dispatcher.Receipt
				err error
			}
			done := make(chan result, 1)
			go func() {
				r, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "fn", Key: "k", Payload: []byte(`{}`)})
				done <- result{r, err}
			}()
			<-w.confirming
			// The event is committed and its claim not yet confirmed: let
			// Run lease it (or send it, which is the bug).
			deadline := time.Now().Add(30 * time.Second)
			for {
				found, leased := false, false
				require.NoError(t, dispatcher.ScanEvents(b.d, func(e store.Event) error {
					if e.Key == "k" {
						found, leased = true, e.Leased
					}
					return nil
				}))
				if !found || leased {
					break
				}
				require.True(t, time.Now().Before(deadline), "the event was never leased")
				time.Sleep(time.Millisecond)
			}
			if tc.timeout > 0 {
				// Give delivery's wait for the Enqueue time to run past its
				// bound: it says so in a warning when it does.
				giveUp := time.Now().Add(10 * tc.timeout)
				for !strings.Contains(logs.String(), "delivering on the local key index alone") && time.Now().Before(giveUp) {
					time.Sleep(time.Millisecond)
				}
			}
			close(w.release)
			res := <-done
			require.NoError(t, res.err)
			require.True(t, res.r.Duplicate, "the claim was taken over: the event is the duplicate")
			require.Equal(t, "intruder-1", res.r.ID)
			settled := uint64(1) // the event of k, by delivery, which had it leased
			if tc.degraded {
				settled++ // and the warm-up's
			}
			st := waitStats(t, b.d, "the leased event settled", func(s dispatcher.Stats) bool {
				// Per function, counted as the outcome is known: an ack of an
				// event removed meanwhile is not counted in s.Delivered.
				return len(s.Functions) == 1 && s.Functions[0].Delivered+s.DuplicatesSkipped == settled
			})
			require.Zero(t, keysSeen(t, b.srv, "fn")["k"], "an event reported a duplicate was invoked")
			require.EqualValues(t, 1, st.Shared.Lost)
			require.EqualValues(t, 1, st.DuplicatesSkipped, "skipped by delivery, which had it leased")
		})
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
