package dispatcher_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/lambdatest"
	"github.com/lambdadispatch/dispatcher/store"
)

// steppable is a wall clock a test can step back and forward, as NTP or an
// operator does to a device that booted with the wrong time.
type steppable struct{ offset atomic.Int64 }

func (c *steppable) now() time.Time            { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *steppable) step(d time.Duration)      { c.offset.Add(int64(d)) }
func (c *steppable) option() dispatcher.Option { return dispatcher.WithClock(c.now) }
func (c *steppable) String() string            { return time.Duration(c.offset.Load()).String() }
func movableElapsed() (func() time.Duration, func(time.Duration)) {
	var off atomic.Int64
	start := time.Now()
	return func() time.Duration { return time.Since(start) + time.Duration(off.Load()) },
		func(d time.Duration) { off.Add(int64(d)) }
}

// TestClockStepBack steps the wall clock back two hours with events ready,
// waiting for a retry and with a worker: every one is delivered at once,
// none waits for the clock to come back.
func TestClockStepBack(t *testing.T) {
	t.Parallel()
	var clock steppable
	p := fastPolicy()
	p.InitialInterval, p.MaxInterval = 50*time.Millisecond, 50*time.Millisecond
	b := setup(t, withServer(), with(clock.option(), dispatcher.WithRetryPolicy(p)))
	b.srv.Register("fn", lambdatest.OK())
	b.srv.Register("slow", lambdatest.OK())

	// Ready: enqueued, then the clock goes back before Run starts.
	ready := b.enqueue(t, "fn", 5)
	clock.step(-2 * time.Hour)
	require.Equal(t, int64(5), b.d.Stats().Ready, "still due after the step")
	b.start(t)
	waitStats(t, b.d, "ready events delivered", func(s dispatcher.Stats) bool { return s.Delivered == 5 })

	// Scheduled: the first attempt fails, the clock goes back while the
	// retry waits its 50ms.
	b.srv.Fail("fn", lambdatest.ServerError(1))
	retried := b.enqueue(t, "fn", 1)[0]
	waitStats(t, b.d, "first attempt failed", func(s dispatcher.Stats) bool { return s.Retried == 1 })
	clock.step(-2 * time.Hour)
	waitStats(t, b.d, "retry delivered", func(s dispatcher.Stats) bool { return s.Delivered == 6 })
	require.Len(t, attemptsByID(t, b.srv, "fn")[retried], 2)

	// Leased: the clock goes back while the invokes are in flight.
	b.srv.Fail("slow", lambdatest.Latency(300*time.Millisecond))
	b.enqueue(t, "slow", 3)
	waitStats(t, b.d, "leased", func(s dispatcher.Stats) bool { return s.Leased == 3 })
	clock.step(-2 * time.Hour)
	st := waitStats(t, b.d, "in-flight delivered", func(s dispatcher.Stats) bool { return s.Delivered == 9 })
	require.Zero(t, st.DeadLettered)
	for _, id := range ready {
		require.Len(t, attemptsByID(t, b.srv, "fn")[id], 1)
	}
}

// TestClockStepForward steps the wall clock forward by hours, past
// MaxEventAge: nothing is dead-lettered for an age it does not have, a
// retry waits its backoff rather than falling due at once, and a lease in
// flight is not taken back as expired (which would invoke its event twice).
func TestClockStepForward(t *testing.T) {
	t.Parallel()
	var clock steppable
	p := fastPolicy()
	p.InitialInterval, p.MaxInterval, p.RandomizationFactor = time.Hour, time.Hour, 0
	p.MaxEventAge = time.Hour + time.Minute
	b := setup(t, withServer(), with(clock.option(), dispatcher.WithRetryPolicy(p), dispatcher.WithLeaseDuration(4*time.Second), dispatcher.WithInvokeTimeout(3*time.Second)))
	b.srv.Register("fn", lambdatest.OK())
	b.srv.Register("slow", lambdatest.OK())

	// Scheduled an hour out; the clock jumps five hours.
	b.srv.Fail("fn", lambdatest.ServerError(1))
	b.enqueue(t, "fn", 1)
	b.start(t)
	waitStats(t, b.d, "first attempt failed", func(s dispatcher.Stats) bool { return s.Retried == 1 })
	clock.step(5 * time.Hour)
	require.Equal(t, int64(1), b.d.Stats().Scheduled, "the retry still waits its backoff")
	var due time.Time
	require.NoError(t, dispatcher.ScanEvents(b.d, func(e store.Event) error { due = e.Due; return nil }))
	require.Greater(t, time.Until(due)+time.Minute, 58*time.Minute, "about an hour of backoff left, whatever the wall clock says")

	// Leased for four seconds, reclaimed every two, answered in two and a
	// half: with lease expiry on the wall clock, the jump would hand these
	// to a second worker at the first reclaim.
	b.srv.Fail("slow", lambdatest.Latency(2500*time.Millisecond))
	slow := b.enqueue(t, "slow", 3)
	waitStats(t, b.d, "leased", func(s dispatcher.Stats) bool { return s.Leased >= 3 })
	clock.step(5 * time.Hour)
	st := waitStats(t, b.d, "slow ones delivered", func(s dispatcher.Stats) bool { return s.Delivered == 3 })
	require.Zero(t, st.DeadLettered, "no age from a clock that jumped")
	for _, id := range slow {
		require.Len(t, attemptsByID(t, b.srv, "slow")[id], 1, "invoked once: the lease was not taken back")
	}
}

// TestClockRestartInThePast reopens the file with a clock two hours behind
// the one it was written with, as a device without a battery-backed clock
// boots: what was ready is ready and goes out.
func TestClockRestartInThePast(t *testing.T) {
	t.Parallel()
	var clock steppable
	b := setup(t, withServer(), with(clock.option()))
	b.srv.Register("fn", lambdatest.OK())
	b.enqueue(t, "fn", 4)
	require.NoError(t, b.d.Close())

	clock.step(-2 * time.Hour)
	d, err := dispatcher.Open(b.path, clock.option(), dispatcher.WithLambda(b.srv.Client()), dispatcher.WithRetryPolicy(fastPolicy()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	st := d.Stats()
	require.Equal(t, int64(4), st.Ready)
	require.Zero(t, st.Scheduled)
	ctx, stop := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx) }()
	waitStats(t, d, "delivered after the restart", func(s dispatcher.Stats) bool { return s.Delivered == 4 })
	stop()
	require.NoError(t, <-errc)
}

// TestRetryAfterPastEventAge: a throttle whose Retry-After puts the next
// try past MaxEventAge dead-letters the event at once, with the one attempt
// made, instead of invoking it once more past its age.
func TestRetryAfterPastEventAge(t *testing.T) {
	t.Parallel()
	p := fastPolicy()
	p.MaxEventAge = 2 * time.Second
	b := setup(t, withServer(), with(dispatcher.WithRetryPolicy(p)))
	b.srv.Register("fn", lambdatest.OK())
	b.srv.Fail("fn", lambdatest.Throttle(1, 10*time.Second))
	id := b.enqueue(t, "fn", 1)[0]
	b.start(t)
	st := waitStats(t, b.d, "dead-lettered", func(s dispatcher.Stats) bool { return s.DeadLettered == 1 })
	require.Equal(t, uint64(1), st.DeadLetteredBy[deadletter.EventAgeExceeded])
	l, err := b.d.DeadLetters().Get(id)
	require.NoError(t, err)
	require.Equal(t, deadletter.EventAgeExceeded, l.Reason)
	require.Equal(t, 1, l.Attempts)
	require.Equal(t, "TooManyRequestsException", l.LastError.Code)
	require.Len(t, attemptsByID(t, b.srv, "fn")[id], 1)
}
