package dispatcher_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/lambdatest"
)

// gate is a function that holds its first calls until want of them are
// in flight together: it proves the dispatcher reached that concurrency
// (the test fails by timeout otherwise), without measuring time.
type gate struct {
	want    int
	mu      sync.Mutex
	now     int
	peak    int
	reached chan struct{}
	once    sync.Once
}

func newGate(want int) *gate { return &gate{want: want, reached: make(chan struct{})} }

func (g *gate) handler() lambdatest.Handler {
	return func(ctx context.Context, _ lambdatest.Invocation) ([]byte, error) {
		g.mu.Lock()
		g.now++
		g.peak = max(g.peak, g.now)
		if g.now >= g.want {
			g.once.Do(func() { close(g.reached) })
		}
		g.mu.Unlock()
		defer func() {
			g.mu.Lock()
			g.now--
			g.mu.Unlock()
		}()
		select {
		case <-g.reached:
		case <-ctx.Done():
		case <-time.After(30 * time.Second):
			return nil, errors.New("the dispatcher never had enough invocations in flight together")
		}
		return nil, nil
	}
}

func (g *gate) maxInFlight() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.peak
}

// TestThrottledFunctionSlowsOnlyItself: beside a function that always
// answers 429 for its own reserved concurrency, a healthy function's limit
// never drops, it reaches its whole limit in flight, and every event of
// both ends where it should.
func TestThrottledFunctionSlowsOnlyItself(t *testing.T) {
	t.Parallel()
	const conc, healthyN, throttledN = 8, 200, 20
	b := setup(t, withServer(), with(dispatcher.WithConcurrency(conc)))
	g := newGate(conc)
	b.srv.Register("healthy", g.handler())
	b.srv.Register("throttled", lambdatest.OK())
	b.srv.Fail("throttled", lambdatest.Throttle(0, 0))
	b.enqueue(t, "throttled", throttledN)
	b.enqueue(t, "healthy", healthyN)
	b.start(t)

	st := waitStats(t, b.d, "every event settled", func(s dispatcher.Stats) bool {
		return s.Delivered == healthyN && s.DeadLettered == throttledN
	})
	require.Equal(t, conc, g.maxInFlight(), "the healthy function reached its whole limit")
	require.Equal(t, uint64(throttledN), st.DeadLetteredBy[deadletter.RetriesExhausted])

	healthy, err := b.d.Functions().Get("healthy")
	require.NoError(t, err)
	require.Zero(t, healthy.Throttled, "never lowered")
	require.Equal(t, conc, healthy.Limit)
	require.Equal(t, uint64(healthyN), healthy.Delivered)
	throttled, err := b.d.Functions().Get("throttled")
	require.NoError(t, err)
	require.Positive(t, throttled.Throttled)
	require.Less(t, throttled.Limit, conc, "its own limit went down")
	require.Equal(t, uint64(throttledN), throttled.DeadLettered)
	require.Equal(t, conc, st.InFlightLimit, "a function's throttle leaves the account's limit alone")
}

// limitLog records the account-wide in-flight limits reported to Metrics.
type limitLog struct {
	dispatcher.Metrics
	lowest atomic.Int64
}

func (l *limitLog) InFlightLimit(n int) {
	for {
		cur := l.lowest.Load()
		if cur != 0 && cur <= int64(n) || l.lowest.CompareAndSwap(cur, int64(n)) {
			return
		}
	}
}

// TestAccountThrottleLowersTheSharedLimit: a throttle naming the account's
// concurrency lowers the limit all functions share, and no function's own;
// a throttle naming a function's lowers that function's only.
func TestAccountThrottleLowersTheSharedLimit(t *testing.T) {
	t.Parallel()
	const conc = 8
	m := &limitLog{Metrics: noopMetrics{}}
	b := setup(t, withServer(), with(dispatcher.WithConcurrency(conc), dispatcher.WithMetrics(m)))
	b.srv.Register("a", lambdatest.OK())
	b.srv.Register("b", lambdatest.OK())
	b.srv.Fail("a", lambdatest.Fault{Times: 1, Status: 429, Code: "TooManyRequestsException", Reason: "ConcurrentInvocationLimitExceeded"})
	b.srv.Fail("b", lambdatest.Throttle(1, 0))
	b.enqueue(t, "a", 5)
	b.enqueue(t, "b", 5)
	b.start(t)

	st := waitStats(t, b.d, "all delivered", func(s dispatcher.Stats) bool { return s.Delivered == 10 })
	require.Equal(t, uint64(2), st.Throttled)
	require.Equal(t, int64(conc/2), m.lowest.Load(), "the account's limit was halved once")
	a, err := b.d.Functions().Get("a")
	require.NoError(t, err)
	require.Zero(t, a.Throttled, "the account's throttle is not a's own")
	fb, err := b.d.Functions().Get("b")
	require.NoError(t, err)
	require.Equal(t, uint64(1), fb.Throttled)
}

// noopMetrics implements dispatcher.Metrics doing nothing, for tests that
// record one measurement.
type noopMetrics struct{}

func (noopMetrics) Attach(func() dispatcher.Stats)        {}
func (noopMetrics) Enqueued(int)                          {}
func (noopMetrics) Invoked(string, time.Duration, string) {}
func (noopMetrics) Retried(string)                        {}
func (noopMetrics) DeadLettered(string)                   {}
func (noopMetrics) Deduplicated(string)                   {}
func (noopMetrics) InFlightLimit(int)                     {}

// TestFunctionLimitOption: a configured MaxInFlight caps the function's
// invocations in flight.
func TestFunctionLimitOption(t *testing.T) {
	t.Parallel()
	b := setup(t, withServer(), with(dispatcher.WithConcurrency(8), dispatcher.WithFunctionLimit("capped", dispatcher.FunctionLimit{MaxInFlight: 2})))
	g := newGate(2)
	b.srv.Register("capped", g.handler())
	b.enqueue(t, "capped", 40)
	b.start(t)
	waitStats(t, b.d, "all delivered", func(s dispatcher.Stats) bool { return s.Delivered == 40 })
	require.Equal(t, 2, g.maxInFlight(), "two at once, never more")
	fs, err := b.d.Functions().Get("capped")
	require.NoError(t, err)
	require.Equal(t, 2, fs.Limit)
}

func TestFunctionLimitOptionRefusesBadInput(t *testing.T) {
	t.Parallel()
	for name, l := range map[string]dispatcher.FunctionLimit{
		"negative":      {MaxInFlight: -1},
		"NaN rate":      {PerSecond: math.NaN()},
		"negative rate": {PerSecond: -1},
	} {
		_, err := dispatcher.Open(t.TempDir()+"/q.db", dispatcher.WithFunctionLimit("fn", l))
		require.Error(t, err, name)
	}
	_, err := dispatcher.Open(t.TempDir()+"/q.db", dispatcher.WithFunctionLimit("bad name!", dispatcher.FunctionLimit{}))
	require.ErrorIs(t, err, dispatcher.ErrInvalidEvent)
}

// TestPauseSurvivesRestartAndSpendsNoAttempt: a paused function's events
// stay queued across a restart while other functions' go; resumed, each
// is sent once, on its first attempt.
func TestPauseSurvivesRestartAndSpendsNoAttempt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, withServer())
	b.srv.Register("billing", lambdatest.OK())
	b.srv.Register("other", lambdatest.OK())
	require.NoError(t, b.d.Functions().Pause(ctx, "billing"))
	b.enqueue(t, "billing", 10)
	b.enqueue(t, "other", 5)
	b.start(t)
	waitStats(t, b.d, "other delivered", func(s dispatcher.Stats) bool { return s.Delivered == 5 })
	fs, err := b.d.Functions().Get("billing")
	require.NoError(t, err)
	require.True(t, fs.Paused)
	require.Equal(t, int64(10), fs.Ready)
	require.Zero(t, b.srv.Count("billing"))
	b.halt(t)
	require.NoError(t, b.d.Close())

	again := setup(t, withServer(), atPath(b.path))
	again.srv.Register("billing", lambdatest.OK())
	again.srv.Register("other", lambdatest.OK())
	fs, err = again.d.Functions().Get("billing")
	require.NoError(t, err)
	require.True(t, fs.Paused, "the pause is in the file")
	again.start(t)
	// A barrier: once this event is delivered, a lease round has passed
	// over billing's events and skipped them.
	again.enqueue(t, "other", 1)
	waitStats(t, again.d, "other delivered", func(s dispatcher.Stats) bool { return s.Delivered == 1 })
	require.Zero(t, again.srv.Count("billing"))

	require.NoError(t, again.d.Functions().Resume(ctx, "billing"))
	waitStats(t, again.d, "billing delivered", func(s dispatcher.Stats) bool { return s.Delivered == 11 })
	sent := attemptsByID(t, again.srv, "billing")
	require.Len(t, sent, 10)
	for id, invs := range sent {
		require.Len(t, invs, 1, "event %s sent once", id)
		var m meta
		require.NoError(t, json.Unmarshal(invs[0].Payload, &m))
		require.Equal(t, 1, m.Dispatch.Attempt, "event %s: the pause spent no attempt", id)
	}
	fs, err = again.d.Functions().Get("billing")
	require.NoError(t, err)
	require.False(t, fs.Paused)
}

// TestPauseReleasesLeasedEventsUnsent: events of a function leased and
// waiting for a worker when it is paused go back to the queue unsent,
// their attempt refunded; the invocation under way finishes.
func TestPauseReleasesLeasedEventsUnsent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, withServer(), with(dispatcher.WithFunctionLimit("slow", dispatcher.FunctionLimit{MaxInFlight: 1})))
	entered, release := make(chan struct{}, 1), make(chan struct{})
	b.srv.Register("slow", func(ctx context.Context, _ lambdatest.Invocation) ([]byte, error) {
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, nil
	})
	b.enqueue(t, "slow", 5)
	b.start(t)
	<-entered // one invoking; the others leased, waiting behind its limit of one
	require.NoError(t, b.d.Functions().Pause(ctx, "slow"))
	close(release)
	waitStats(t, b.d, "the one under way delivered, the rest back", func(s dispatcher.Stats) bool {
		return s.Delivered == 1 && s.Ready == 4 && s.Leased == 0
	})
	require.Equal(t, 1, b.srv.Count("slow"), "nothing sent after the pause")
	require.NoError(t, b.d.Functions().Resume(ctx, "slow"))
	waitStats(t, b.d, "all delivered", func(s dispatcher.Stats) bool { return s.Delivered == 5 })
	for id, invs := range attemptsByID(t, b.srv, "slow") {
		require.Len(t, invs, 1, "event %s sent once", id)
		var m meta
		require.NoError(t, json.Unmarshal(invs[0].Payload, &m))
		require.Equal(t, 1, m.Dispatch.Attempt, "event %s: released with its attempt refunded", id)
	}
}

func TestPauseRefusesBadInputAndAfterClose(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	err := b.d.Functions().Pause(ctx, "not a function!")
	var ve *dispatcher.ValidationError
	require.ErrorAs(t, err, &ve)
	require.Equal(t, "Function", ve.Field)
	fs, err := b.d.Functions().All()
	require.NoError(t, err)
	require.Empty(t, fs, "nothing recorded for a refused name")
	require.NoError(t, b.d.Close())
	require.ErrorIs(t, b.d.Functions().Pause(ctx, "billing"), dispatcher.ErrClosed)
	_, err = b.d.Functions().All()
	require.ErrorIs(t, err, dispatcher.ErrClosed)
}

// TestFairLeasing: events of a second function enqueued after a large
// backlog of a first are invoked within the first lease rounds, counted in
// invocations, not time.
func TestFairLeasing(t *testing.T) {
	t.Parallel()
	const conc, backlog, late = 4, 2000, 10
	b := setup(t, withServer(), with(dispatcher.WithConcurrency(conc)))
	b.srv.Register("bulk", lambdatest.OK())
	b.srv.Register("urgent", lambdatest.OK())
	batch := make([]dispatcher.Event, backlog)
	for i := range batch {
		batch[i] = dispatcher.Event{Function: "bulk", Payload: []byte(`{}`)}
	}
	_, err := b.d.EnqueueBatch(context.Background(), batch)
	require.NoError(t, err)
	b.enqueue(t, "urgent", late)
	b.start(t)
	require.NoError(t, b.srv.WaitCount(context.Background(), "urgent", late))
	// The first lease takes four in-flight limits, in turns between the
	// two functions: all of urgent's fit in it. Allow a second round.
	within := 2*4*conc + late
	order := b.srv.Invocations("")
	seen := 0
	for i, inv := range order {
		if inv.Function == "urgent" {
			seen++
			require.Less(t, i, within, "urgent's event %d was invocation %d, behind the backlog", seen, i+1)
		}
	}
	require.Equal(t, late, seen)
}

// TestFormat1FileDrains: a queue file written by the version before
// per-function indexes (format 1, checked in under store/testdata) opens,
// is migrated, and drains: each event that was never tried is delivered
// once, and the 9 tried when the file was written (months ago) are
// dead-lettered for their age, as the policy says.
func TestFormat1FileDrains(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("store/testdata/format1.bolt")
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "old.db")
	require.NoError(t, os.WriteFile(path, raw, 0o600))
	b := setup(t, withServer(), atPath(path))
	for _, fn := range []string{"orders", "billing", "emails", "reports"} {
		b.srv.Register(fn, lambdatest.OK())
	}
	require.Equal(t, int64(96), b.d.Stats().Queued())
	fs, err := b.d.Functions().All()
	require.NoError(t, err)
	require.Len(t, fs, 4)
	b.start(t)
	st := waitStats(t, b.d, "drained", func(s dispatcher.Stats) bool { return s.Queued() == 0 && s.Delivered+s.DeadLettered == 96 })
	require.Equal(t, uint64(87), st.Delivered)
	require.Equal(t, uint64(9), st.DeadLetteredBy[deadletter.EventAgeExceeded])
	seen := 0
	for _, fn := range []string{"orders", "billing", "emails", "reports"} {
		for id, invs := range attemptsByID(t, b.srv, fn) {
			require.Len(t, invs, 1, "event %s sent once", id)
			seen++
		}
	}
	require.Equal(t, 87, seen)
}
