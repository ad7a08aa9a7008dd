package dispatcher_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/lambdatest"
	"github.com/lambdadispatch/dispatcher/retry"
	"github.com/lambdadispatch/dispatcher/store"
)

// This file holds what the package's tests share: TestMain, the setup
// bundle and the waits and reads they assert with. The child processes of
// the crash tests are registered in crash_test.go.

// soakEnv, set to 1, makes the tests that scale run at the sizes that
// once were their defaults: more events, keys and rounds. .ci/run runs
// them so after the README's test command.
const soakEnv = "DISPATCH_SOAK"

// soak reports whether the long versions of the tests are asked for.
func soak() bool { return os.Getenv(soakEnv) == "1" }

func TestMain(m *testing.M) {
	if child := children[os.Getenv(childModeEnv)]; child != nil {
		child()
		return
	}
	// goleak.VerifyTestMain, with the shared dynalite stopped between the
	// tests and the leak check.
	code := m.Run()
	sharedDynalite.Stop(os.Stderr, code != 0)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// testBundle is what a test gets from setup: a dispatcher open on a file
// of the test's own, the lambdatest server it invokes if withServer asked
// for one, and the Run that start begins and halt ends.
type testBundle struct {
	d    *dispatcher.Dispatcher
	path string
	srv  *lambdatest.Server // nil without withServer
	stop context.CancelFunc
	errc chan error
}

type setupConfig struct {
	path   string
	server bool
	opts   []dispatcher.Option
}

// setupOption changes what setup opens.
type setupOption func(*setupConfig)

// with passes opts to Open, after any setup adds itself.
func with(opts ...dispatcher.Option) setupOption {
	return func(c *setupConfig) { c.opts = append(c.opts, opts...) }
}

// withServer wires the dispatcher to a new lambdatest server through the
// real SDK client, with a retry policy fast enough for tests and the
// payload metadata attemptsByID reads.
func withServer() setupOption {
	return func(c *setupConfig) { c.server = true }
}

// atPath opens the dispatcher on path instead of a new file in the test's
// temporary directory.
func atPath(path string) setupOption {
	return func(c *setupConfig) { c.path = path }
}

// setup opens a dispatcher as opts say, closed when the test ends.
func setup(t *testing.T, opts ...setupOption) *testBundle {
	t.Helper()
	var c setupConfig
	for _, o := range opts {
		o(&c)
	}
	b := &testBundle{path: c.path}
	if b.path == "" {
		b.path = filepath.Join(t.TempDir(), "events.db")
	}
	var open []dispatcher.Option
	if c.server {
		b.srv = lambdatest.NewServer()
		t.Cleanup(b.srv.Close)
		open = append(open,
			dispatcher.WithLambda(b.srv.Client()),
			dispatcher.WithRetryPolicy(fastPolicy()),
			dispatcher.WithPayloadMetadata("_dispatch"),
		)
	}
	d, err := dispatcher.Open(b.path, append(open, c.opts...)...)
	require.NoError(t, err)
	b.d = d
	t.Cleanup(func() { _ = d.Close() })
	return b
}

// start begins Run; the cleanup stops it and checks it returned.
func (b *testBundle) start(t *testing.T) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	b.stop, b.errc = stop, make(chan error, 1)
	go func() { b.errc <- b.d.Run(ctx) }()
	t.Cleanup(func() { b.halt(t) })
}

// halt cancels Run and waits for it to return.
func (b *testBundle) halt(t *testing.T) {
	t.Helper()
	if b.stop == nil {
		return
	}
	b.stop()
	select {
	case err := <-b.errc:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of its context ending")
	}
	b.stop = nil
}

// enqueue queues n events for fn and returns their ids.
func (b *testBundle) enqueue(t *testing.T, fn string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		r, err := b.d.Enqueue(context.Background(), dispatcher.Event{Function: fn, Payload: fmt.Appendf(nil, `{"n":%d}`, i)})
		require.NoError(t, err)
		ids[i] = r.ID
	}
	return ids
}

// fastPolicy keeps the real policy's shape with delays short enough for
// tests.
func fastPolicy() retry.Policy {
	p := retry.DefaultPolicy()
	p.InitialInterval = time.Millisecond
	p.MaxInterval = 5 * time.Millisecond
	p.ProbeInterval = 5 * time.Millisecond
	p.MaxProbeInterval = 20 * time.Millisecond
	return p
}

// waitStats polls the dispatcher's stats until cond holds; polling with a
// deadline, not sleeping for a guessed time.
func waitStats(t *testing.T, d *dispatcher.Dispatcher, what string, cond func(dispatcher.Stats) bool) dispatcher.Stats {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st := d.Stats()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; stats: %+v", what, st)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// meta is the member WithPayloadMetadata adds.
type meta struct {
	Dispatch struct {
		ID      string `json:"id"`
		Key     string `json:"key"`
		Attempt int    `json:"attempt"`
	} `json:"_dispatch"`
}

// attemptsByID reads the metadata of every recorded invocation of fn.
func attemptsByID(t *testing.T, srv *lambdatest.Server, fn string) map[string][]lambdatest.Invocation {
	t.Helper()
	out := map[string][]lambdatest.Invocation{}
	for _, inv := range srv.Invocations(fn) {
		if inv.InvocationType != "Event" {
			continue // DryRun probes
		}
		var m meta
		require.NoError(t, json.Unmarshal(inv.Payload, &m), "payload %s", inv.Payload)
		require.NotEmpty(t, m.Dispatch.ID)
		out[m.Dispatch.ID] = append(out[m.Dispatch.ID], inv)
	}
	return out
}

// keysSeen counts the Event invocations of fn by the key in their metadata.
func keysSeen(t *testing.T, srv *lambdatest.Server, fn string) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for _, inv := range srv.Invocations(fn) {
		if inv.InvocationType != "Event" || inv.Status != 202 {
			continue
		}
		var m meta
		require.NoError(t, json.Unmarshal(inv.Payload, &m))
		seen[m.Dispatch.Key]++
	}
	return seen
}

// snapshot is everything a test compares to prove the file did not change:
// the stats and every event, read back through the store.
type snapshot struct {
	stats  dispatcher.Stats
	events []store.Event
}

func take(t *testing.T, d *dispatcher.Dispatcher) snapshot {
	t.Helper()
	s := snapshot{stats: d.Stats()}
	s.stats.Commits = 0 // a refused call may or may not reach the writer
	require.NoError(t, dispatcher.ScanEvents(d, func(e store.Event) error { s.events = append(s.events, e); return nil }))
	return s
}

// scan reads every event of the closed queue file at path.
func scan(t *testing.T, path string) []store.Event {
	t.Helper()
	st, err := store.Open(path, store.Options{})
	require.NoError(t, err)
	defer st.Close()
	var evs []store.Event
	require.NoError(t, st.Scan(func(e store.Event) error { evs = append(evs, e); return nil }))
	return evs
}
