package dispatcher_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/store"
)

// childModeEnv names the part a re-executed test binary plays; see
// startChild.
const childModeEnv = "DISPATCHER_TEST_CHILD"

// soakEnv, set to 1, makes the tests that scale run at the sizes that
// once were their defaults: more events, keys and rounds. .ci/run runs
// them so after the README's test command.
const soakEnv = "DISPATCH_SOAK"

// soak reports whether the long versions of the tests are asked for.
func soak() bool { return os.Getenv(soakEnv) == "1" }

// children are the parts a child process can play, by mode.
var children = map[string]func(){
	"enqueue": crashChild,
	"run":     runChild,
	"redrive": redriveChild,
	"keyed":   keyedChild,
}

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

// startChild re-executes the test binary as a child process playing mode,
// with env added to its environment, and returns it started, with its
// standard output to read. The crash tests SIGKILL it.
func startChild(t *testing.T, mode string, env ...string) (*exec.Cmd, io.ReadCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), childModeEnv+"="+mode), env...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	return cmd, stdout
}

func open(t *testing.T, opts ...dispatcher.Option) (*dispatcher.Dispatcher, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.db")
	d, err := dispatcher.Open(path, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	return d, path
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

func scan(t *testing.T, path string) []store.Event {
	t.Helper()
	st, err := store.Open(path, store.Options{})
	require.NoError(t, err)
	defer st.Close()
	var evs []store.Event
	require.NoError(t, st.Scan(func(e store.Event) error { evs = append(evs, e); return nil }))
	return evs
}

func TestOpen(t *testing.T) {
	t.Parallel()

	t.Run("SecondOpenFailsWithFileInUse", func(t *testing.T) {
		t.Parallel()
		_, path := open(t)
		start := time.Now()
		_, err := dispatcher.Open(path, dispatcher.WithLockTimeout(200*time.Millisecond))
		require.ErrorIs(t, err, dispatcher.ErrFileInUse)
		require.Contains(t, err.Error(), "in use")
		require.Less(t, time.Since(start), time.Minute)
	})

	t.Run("BadOptions", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "events.db")
		for _, opt := range []dispatcher.Option{
			dispatcher.WithLockTimeout(0), dispatcher.WithMaxEvents(-1), dispatcher.WithMaxBytes(-1),
			dispatcher.WithMaxPayload(0), dispatcher.WithClock(nil),
		} {
			_, err := dispatcher.Open(path, opt)
			require.Error(t, err)
		}
		_, err := os.Stat(path)
		require.ErrorIs(t, err, os.ErrNotExist, "bad options create no file")
	})

	t.Run("CloseIsIdempotent", func(t *testing.T) {
		t.Parallel()
		d, _ := open(t)
		require.NoError(t, d.Close())
		require.ErrorIs(t, d.Close(), dispatcher.ErrClosed)
		_, err := d.Enqueue(context.Background(), dispatcher.Event{Function: "fn"})
		require.ErrorIs(t, err, dispatcher.ErrClosed)
		_, err = d.EnqueueBatch(context.Background(), []dispatcher.Event{{Function: "fn"}})
		require.ErrorIs(t, err, dispatcher.ErrClosed)
	})
}

func TestEnqueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("DurableAcrossReopen", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "events.db")
		d, err := dispatcher.Open(path)
		require.NoError(t, err)
		r, err := d.Enqueue(ctx, dispatcher.Event{Function: "orders", Qualifier: "prod", Key: "order-42", Payload: []byte(`{"id":42}`)})
		require.NoError(t, err)
		require.NotEmpty(t, r.ID)
		require.False(t, r.Duplicate)
		st := d.Stats()
		require.Equal(t, int64(1), st.Ready)
		require.Equal(t, int64(1), st.Queued())
		require.Equal(t, uint64(1), st.Enqueued)
		require.NoError(t, d.Close())

		evs := scan(t, path)
		require.Len(t, evs, 1)
		require.Equal(t, r.ID, fmt.Sprint(evs[0].Seq))
		require.Equal(t, "orders", evs[0].Function)
		require.Equal(t, "prod", evs[0].Qualifier)
		require.Equal(t, "order-42", evs[0].Key)
		require.Equal(t, `{"id":42}`, string(evs[0].Payload))
		require.Zero(t, evs[0].Attempts)
	})

	t.Run("BatchReceiptsInOrder", func(t *testing.T) {
		t.Parallel()
		d, path := open(t)
		rs, err := d.EnqueueBatch(ctx, []dispatcher.Event{{Function: "a"}, {Function: "b"}, {Function: "c"}})
		require.NoError(t, err)
		require.Len(t, rs, 3)
		require.NoError(t, d.Close())
		evs := scan(t, path)
		for i, fn := range []string{"a", "b", "c"} {
			require.Equal(t, rs[i].ID, fmt.Sprint(evs[i].Seq))
			require.Equal(t, fn, evs[i].Function)
		}
	})

	t.Run("CancelledContext", func(t *testing.T) {
		t.Parallel()
		d, _ := open(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := d.Enqueue(cctx, dispatcher.Event{Function: "fn"})
		require.ErrorIs(t, err, context.Canceled)
		require.Zero(t, d.Stats().Queued())
	})
}

// TestBadInputChangesNothing feeds every kind of bad input and checks the
// typed error and that the file holds exactly what it held before.
func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	d, err := dispatcher.Open(path, dispatcher.WithMaxPayload(64), dispatcher.WithMaxEvents(3))
	require.NoError(t, err)
	defer d.Close()
	_, err = d.Enqueue(ctx, dispatcher.Event{Function: "fn", Payload: []byte(`{"keep":1}`)})
	require.NoError(t, err)

	valid := dispatcher.Event{Function: "fn", Payload: []byte(`{}`)}
	cases := map[string]struct {
		events []dispatcher.Event
		field  string
		index  int
	}{
		"NoFunction":          {[]dispatcher.Event{{Payload: []byte(`{}`)}}, "Function", 0},
		"NameTooLong":         {[]dispatcher.Event{{Function: strings.Repeat("f", 65)}}, "Function", 0},
		"NameWithSpace":       {[]dispatcher.Event{{Function: "my fn"}}, "Function", 0},
		"ARNOfAnotherService": {[]dispatcher.Event{{Function: "arn:aws:s3:us-east-1:123456789012:function:fn"}}, "Function", 0},
		"QualifierMismatch":   {[]dispatcher.Event{{Function: "fn:prod", Qualifier: "dev"}}, "Qualifier", 0},
		"QualifierTooLong":    {[]dispatcher.Event{{Function: "fn", Qualifier: strings.Repeat("q", 129)}}, "Qualifier", 0},
		"PayloadNotJSON":      {[]dispatcher.Event{{Function: "fn", Payload: []byte(`{"a":`)}}, "Payload", 0},
		"PayloadTooLarge":     {[]dispatcher.Event{{Function: "fn", Payload: []byte(`"` + strings.Repeat("x", 63) + `"`)}}, "Payload", 0},
		"KeyTooLong":          {[]dispatcher.Event{{Function: "fn", Key: strings.Repeat("k", dispatcher.MaxKeyLen+1)}}, "Key", 0},
		"KeyNotUTF8":          {[]dispatcher.Event{{Function: "fn", Key: "\xff"}}, "Key", 0},
		"BadEventLateInBatch": {[]dispatcher.Event{valid, valid, {Function: "fn", Payload: []byte(`nope`)}}, "Payload", 2},
	}
	before := take(t, d)
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var err error
			if len(tc.events) == 1 {
				_, err = d.Enqueue(ctx, tc.events[0])
			} else {
				_, err = d.EnqueueBatch(ctx, tc.events)
			}
			require.ErrorIs(t, err, dispatcher.ErrInvalidEvent)
			var ve *dispatcher.ValidationError
			require.ErrorAs(t, err, &ve)
			require.Equal(t, tc.field, ve.Field)
			require.Equal(t, tc.index, ve.Index)
			require.Equal(t, before, take(t, d))
		})
	}

	t.Run("QueueFullBatch", func(t *testing.T) {
		_, err := d.EnqueueBatch(ctx, []dispatcher.Event{valid, valid, valid})
		require.ErrorIs(t, err, dispatcher.ErrQueueFull)
		require.Equal(t, before, take(t, d))
	})

	require.NoError(t, d.Close())
	evs := scan(t, path)
	require.Len(t, evs, 1, "only the first good event is on disk")
	require.Equal(t, `{"keep":1}`, string(evs[0].Payload))
}

func TestQueueFullByBytes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d, _ := open(t, dispatcher.WithMaxBytes(1000))
	payload := []byte(`"` + strings.Repeat("x", 400) + `"`)
	for range 2 {
		_, err := d.Enqueue(ctx, dispatcher.Event{Function: "fn", Payload: payload})
		require.NoError(t, err)
	}
	_, err := d.Enqueue(ctx, dispatcher.Event{Function: "fn", Payload: payload})
	require.ErrorIs(t, err, dispatcher.ErrQueueFull)
	require.Contains(t, err.Error(), "cap of 1000")
	st := d.Stats()
	require.Equal(t, int64(2), st.Queued())
	require.LessOrEqual(t, st.Bytes, int64(1000))
}

// TestConcurrentProducers enqueues from many goroutines at once and checks
// that every receipt names a distinct event on disk and that commits were
// shared.
func TestConcurrentProducers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d, path := open(t)
	const producers, each = 64, 20
	var mu sync.Mutex
	ids := map[string]string{}
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range each {
				payload := fmt.Sprintf(`{"p":%d,"i":%d}`, p, i)
				r, err := d.Enqueue(ctx, dispatcher.Event{Function: "fn", Payload: []byte(payload)})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				ids[r.ID] = payload
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	st := d.Stats()
	require.Equal(t, uint64(producers*each), st.Enqueued)
	require.Len(t, ids, producers*each)
	require.NoError(t, d.Close())
	for _, e := range scan(t, path) {
		require.Equal(t, ids[fmt.Sprint(e.Seq)], string(e.Payload))
		delete(ids, fmt.Sprint(e.Seq))
	}
	require.Empty(t, ids, "every receipt is on disk")
}

func TestErrorsAreDistinct(t *testing.T) {
	t.Parallel()
	all := []error{dispatcher.ErrClosed, dispatcher.ErrQueueFull, dispatcher.ErrInvalidEvent, dispatcher.ErrFileInUse}
	for i, a := range all {
		for j, b := range all {
			require.Equal(t, i == j, errors.Is(a, b))
		}
	}
}
