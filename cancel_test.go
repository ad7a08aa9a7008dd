package dispatcher_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/lambdatest"
)

// TestDelayedEvents: an event with Delay or NotBefore is scheduled, not
// invoked before its time on the queue's clock, and invoked after; it
// survives a reopen; its key is held until it is due.
func TestDelayedEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	elapsed, move := movableElapsed()
	b := setup(t, withServer(), with(dispatcher.WithElapsed(elapsed), dispatcher.WithKeyWindow(time.Minute)))
	b.srv.Register("later", lambdatest.OK())
	b.srv.Register("now", lambdatest.OK())
	_, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "later", Payload: []byte(`{"n":1}`), Delay: time.Hour, Key: "k"})
	require.NoError(t, err)
	_, err = b.d.Enqueue(ctx, dispatcher.Event{Function: "later", Payload: []byte(`{"n":2}`), NotBefore: time.Now().Add(2 * time.Hour)})
	require.NoError(t, err)
	st := b.d.Stats()
	require.Equal(t, int64(2), st.Scheduled)
	require.Zero(t, st.Ready)

	// The key window is a minute, but the event is due in an hour: a
	// replay before then is still a duplicate.
	move(30 * time.Minute)
	r, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "later", Payload: []byte(`{"n":1}`), Key: "k"})
	require.NoError(t, err)
	require.True(t, r.Duplicate)

	b.start(t)
	b.enqueue(t, "now", 1) // a barrier: a lease round has passed over the scheduled ones
	waitStats(t, b.d, "now delivered", func(s dispatcher.Stats) bool { return s.Delivered == 1 })
	require.Zero(t, b.srv.Count("later"), "not before its time")
	move(31 * time.Minute)
	waitStats(t, b.d, "the first due", func(s dispatcher.Stats) bool { return s.Delivered == 2 })
	require.Equal(t, 1, b.srv.Count("later"))
	move(time.Hour)
	waitStats(t, b.d, "both due", func(s dispatcher.Stats) bool { return s.Delivered == 3 })
	require.Equal(t, 2, b.srv.Count("later"))
}

func TestDelayedEventSurvivesReopen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	_, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "later", Delay: time.Hour})
	require.NoError(t, err)
	require.NoError(t, b.d.Close())
	again := setup(t, atPath(b.path))
	st := again.d.Stats()
	require.Equal(t, int64(1), st.Scheduled, "still scheduled after a reopen")
	q, _, err := again.d.Events().Find(ctx, dispatcher.EventFilter{State: dispatcher.StateScheduled}, "", 10)
	require.NoError(t, err)
	require.Len(t, q, 1)
	require.WithinDuration(t, time.Now().Add(time.Hour), q[0].Due, 5*time.Minute)
}

func TestScheduleAndPriorityRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	for name, c := range map[string]struct {
		e     dispatcher.Event
		field string
	}{
		"negative delay":     {dispatcher.Event{Function: "fn", Delay: -time.Second}, "Delay"},
		"both":               {dispatcher.Event{Function: "fn", Delay: time.Second, NotBefore: time.Now().Add(time.Hour)}, "Delay"},
		"delay too far":      {dispatcher.Event{Function: "fn", Delay: dispatcher.MaxDelay + time.Hour}, "Delay"},
		"not before too far": {dispatcher.Event{Function: "fn", NotBefore: time.Now().Add(dispatcher.MaxDelay + time.Hour)}, "NotBefore"},
		"priority high":      {dispatcher.Event{Function: "fn", Priority: dispatcher.MaxPriority + 1}, "Priority"},
		"priority low":       {dispatcher.Event{Function: "fn", Priority: dispatcher.MinPriority - 1}, "Priority"},
	} {
		_, err := b.d.Enqueue(ctx, c.e)
		var ve *dispatcher.ValidationError
		require.ErrorAs(t, err, &ve, name)
		require.Equal(t, c.field, ve.Field, name)
		require.ErrorAs(t, dispatcher.ValidateEvent(c.e), &ve, name)
	}
	require.Zero(t, b.d.Stats().Queued(), "nothing written")
	// A NotBefore in the past is simply due now.
	_, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "fn", NotBefore: time.Now().Add(-time.Hour)})
	require.NoError(t, err)
	require.Equal(t, int64(1), b.d.Stats().Ready)
}

// TestPriorityOrder: among one function's due events, higher priority
// goes first, equal priorities first in, first out.
func TestPriorityOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, withServer(), with(dispatcher.WithConcurrency(1)))
	b.srv.Register("edge", lambdatest.OK())
	for i, p := range []int{0, -1, 2, 0, 2, -3} {
		_, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "edge", Priority: p, Payload: fmt.Appendf(nil, `{"i":%d}`, i)})
		require.NoError(t, err)
	}
	b.start(t)
	waitStats(t, b.d, "all delivered", func(s dispatcher.Stats) bool { return s.Delivered == 6 })
	var order []string
	for _, inv := range b.srv.Invocations("edge") {
		var p struct{ I int }
		require.NoError(t, json.Unmarshal(inv.Payload, &p))
		order = append(order, fmt.Sprint(p.I))
	}
	require.Equal(t, []string{"2", "4", "0", "3", "1", "5"}, order)
}

// TestCancel: a ready and a scheduled event are removed at once; a leased
// one when its invocation returns, never retried; keys are released
// unless kept; counted.
func TestCancel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, withServer())
	b.srv.Register("slow", lambdatest.OK())
	// Its invocation waits at the server until the server goes offline,
	// and then fails: a failure that would be retried.
	b.srv.Fail("slow", lambdatest.Latency(time.Hour))
	r1, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "idle", Key: "ready-key"})
	require.NoError(t, err)
	r2, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "idle", Delay: time.Hour, Key: "sched-key"})
	require.NoError(t, err)
	n, err := b.d.Events().Cancel(ctx, []string{r1.ID, r2.ID, "999999"}, dispatcher.CancelOptions{})
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Zero(t, b.d.Stats().Queued())
	again, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "idle", Key: "ready-key"})
	require.NoError(t, err)
	require.False(t, again.Duplicate, "the cancelled event's key was released")

	kept, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "idle", Key: "kept"})
	require.NoError(t, err)
	n, err = b.d.Events().Cancel(ctx, []string{kept.ID}, dispatcher.CancelOptions{KeepKey: true})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	dup, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "idle", Key: "kept"})
	require.NoError(t, err)
	require.True(t, dup.Duplicate, "KeepKey keeps it held")

	_, err = b.d.Events().CancelMatching(ctx, dispatcher.EventFilter{Function: "idle"}, dispatcher.CancelOptions{})
	require.NoError(t, err)
	leased := b.enqueue(t, "slow", 1)[0]
	b.start(t)
	// Handed to a worker: its invocation is starting or under way (the
	// server records it only once answered).
	waitStats(t, b.d, "slow in flight", func(s dispatcher.Stats) bool {
		return len(s.Functions) == 1 && s.Functions[0].InFlight == 1
	})
	n, err = b.d.Events().Cancel(ctx, []string{leased}, dispatcher.CancelOptions{})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	b.srv.Offline() // the invocation under way fails now
	st := waitStats(t, b.d, "the leased one gone", func(s dispatcher.Stats) bool { return s.Queued() == 0 })
	require.NoError(t, b.srv.Online())
	require.Zero(t, st.Retried, "a cancelled event is never retried")
	require.Zero(t, st.DeadLettered)
	require.LessOrEqual(t, b.srv.Count("slow"), 1, "sent once at most")
	require.Equal(t, uint64(5), st.Cancelled)
}

func TestCancelRefusedWhenReadOnlyOrClosed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	r, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "fn"})
	require.NoError(t, err)
	require.NoError(t, b.d.Close())
	ro := setup(t, atPath(b.path), with(dispatcher.WithReadOnly()))
	_, err = ro.d.Events().Cancel(ctx, []string{r.ID}, dispatcher.CancelOptions{})
	require.ErrorIs(t, err, dispatcher.ErrReadOnly)
	require.NoError(t, ro.d.Close())
	_, err = ro.d.Events().Cancel(ctx, []string{r.ID}, dispatcher.CancelOptions{})
	require.ErrorIs(t, err, dispatcher.ErrClosed)
}

// TestDropOldest: offline with a cap, the newest events are kept, alarms
// over telemetry; the ledger names exactly what went, and it all survives
// a reopen.
func TestDropOldest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, with(dispatcher.WithMaxEvents(10), dispatcher.WithFullPolicy(dispatcher.DropOldest)))
	var alarms []string
	for i := range 3 {
		r, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "alarms", Priority: 2, Key: fmt.Sprint("alarm-", i)})
		require.NoError(t, err)
		alarms = append(alarms, r.ID)
	}
	var telemetry []string
	for i := range 20 {
		r, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "telemetry", Key: fmt.Sprint("t-", i)})
		require.NoError(t, err, "never refused: room is made")
		telemetry = append(telemetry, r.ID)
	}
	st := b.d.Stats()
	require.Equal(t, int64(10), st.Queued())
	require.Equal(t, uint64(13), st.Evicted)
	var left []string
	for q, err := range b.d.Events().All(ctx, dispatcher.EventFilter{}) {
		require.NoError(t, err)
		left = append(left, q.ID)
	}
	require.Equal(t, append(append([]string{}, alarms...), telemetry[13:]...), left, "the alarms and the seven newest readings")
	var gone []string
	for ev, err := range b.d.Events().AllEvictions(ctx) {
		require.NoError(t, err)
		require.Equal(t, "telemetry", ev.Function)
		require.Equal(t, "full", ev.Reason)
		gone = append(gone, ev.ID)
	}
	require.Equal(t, telemetry[:13], gone, "the ledger is exact")
	r, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "telemetry", Key: "t-0"})
	require.NoError(t, err)
	require.False(t, r.Duplicate, "an evicted event's key was released")

	require.NoError(t, b.d.Close())
	again := setup(t, atPath(b.path), with(dispatcher.WithMaxEvents(10), dispatcher.WithFullPolicy(dispatcher.DropOldest)))
	st = again.d.Stats()
	require.Equal(t, int64(10), st.Queued())
	evs, _, err := again.d.Events().Evictions(ctx, "", 100)
	require.NoError(t, err)
	require.Len(t, evs, 14, "the ledger survives a reopen")

	// A batch larger than the cap cannot fit: refused whole.
	big := make([]dispatcher.Event, 11)
	for i := range big {
		big[i] = dispatcher.Event{Function: "telemetry"}
	}
	_, err = again.d.EnqueueBatch(ctx, big)
	require.ErrorIs(t, err, dispatcher.ErrQueueFull)
	require.Equal(t, int64(10), again.d.Stats().Queued())
}

func TestWaitDrained(t *testing.T) {
	t.Parallel()
	b := setup(t, withServer())
	b.srv.Register("fn", lambdatest.OK())
	b.enqueue(t, "fn", 50)
	short, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	require.True(t, errors.Is(b.d.WaitDrained(short), context.DeadlineExceeded), "not drained without Run")
	b.start(t)
	ctx, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	require.NoError(t, b.d.WaitDrained(ctx))
	require.Zero(t, b.d.Stats().Queued())
	require.Equal(t, uint64(50), b.d.Stats().Delivered)
}
