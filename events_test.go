package dispatcher_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"iter"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/lambdatest"
	"github.com/lambdadispatch/dispatcher/store"
)

// TestEventsGet reads one event in each state: ready (offline), scheduled
// (its first attempt failed, its retry an hour away) and leased (its
// invoke held by the server), with what its attempts met.
func TestEventsGet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("Ready", func(t *testing.T) {
		t.Parallel()
		d := setup(t).d
		r, err := d.Enqueue(ctx, dispatcher.Event{Function: "fn", Qualifier: "live", Key: "k-1", Payload: []byte(`{"n":1}`)})
		require.NoError(t, err)
		e, err := d.Events().Get(r.ID)
		require.NoError(t, err)
		require.Equal(t, r.ID, e.ID)
		require.Equal(t, dispatcher.StateReady, e.State)
		require.Equal(t, "ready", string(e.State))
		require.Equal(t, "fn", e.Function)
		require.Equal(t, "live", e.Qualifier)
		require.Equal(t, "k-1", e.Key)
		require.JSONEq(t, `{"n":1}`, string(e.Payload))
		require.Equal(t, 7, e.Size)
		require.Zero(t, e.Attempts)
		require.WithinDuration(t, time.Now(), e.Enqueued, time.Minute)
		require.False(t, e.Due.After(e.Enqueued.Add(time.Second)), "due at once")
		require.True(t, e.FirstAttempt.IsZero())
		require.True(t, e.LastAttempt.IsZero())
		require.True(t, e.LeaseUntil.IsZero())
		require.True(t, e.LastError.IsZero())
	})

	t.Run("ScheduledAndLeased", func(t *testing.T) {
		t.Parallel()
		p := fastPolicy()
		p.InitialInterval, p.MaxInterval, p.RandomizationFactor = time.Hour, time.Hour, 0
		b := setup(t, withServer(), with(dispatcher.WithRetryPolicy(p)))
		b.srv.Register("flaky", lambdatest.OK())
		b.srv.Register("slow", lambdatest.OK())
		b.srv.Fail("flaky", lambdatest.ServerError(1))
		b.srv.Fail("slow", lambdatest.Latency(2*time.Second))
		b.start(t)

		flaky := b.enqueue(t, "flaky", 1)[0]
		waitStats(t, b.d, "first attempt failed", func(s dispatcher.Stats) bool { return s.Retried == 1 })
		e, err := b.d.Events().Get(flaky)
		require.NoError(t, err)
		require.Equal(t, dispatcher.StateScheduled, e.State)
		require.Equal(t, 1, e.Attempts)
		require.False(t, e.FirstAttempt.IsZero())
		require.Equal(t, e.FirstAttempt, e.LastAttempt)
		require.WithinDuration(t, e.LastAttempt.Add(time.Hour), e.Due, time.Minute, "due after its backoff")
		require.Equal(t, "ServiceException", e.LastError.Code)
		require.Equal(t, 500, e.LastError.StatusCode)
		require.True(t, e.LeaseUntil.IsZero())

		slow := b.enqueue(t, "slow", 1)[0]
		waitStats(t, b.d, "leased", func(s dispatcher.Stats) bool { return s.Leased == 1 })
		e, err = b.d.Events().Get(slow)
		require.NoError(t, err)
		require.Equal(t, dispatcher.StateLeased, e.State)
		require.Equal(t, 1, e.Attempts)
		require.False(t, e.LeaseUntil.IsZero())
		require.True(t, e.LastError.IsZero())

		// The state filter sees the same states.
		for state, want := range map[dispatcher.EventState][]string{
			dispatcher.StateScheduled: {flaky},
			dispatcher.StateLeased:    {slow},
			dispatcher.StateReady:     nil,
		} {
			page, next, err := b.d.Events().Find(ctx, dispatcher.EventFilter{State: state}, "", 10)
			require.NoError(t, err)
			require.Equal(t, want, eventIDs(page), state)
			require.Empty(t, next)
		}
	})
}

// TestEventsNotFound: an id that names no queued event, or no letter,
// matches ErrNotFound and the lower package's sentinel both.
func TestEventsNotFound(t *testing.T) {
	t.Parallel()
	d := setup(t).d
	for _, id := range []string{"999", "abc", ""} {
		_, err := d.Events().Get(id)
		require.ErrorIs(t, err, dispatcher.ErrNotFound, id)
		require.ErrorIs(t, err, store.ErrNotFound, id)
		_, err = d.DeadLetters().Get(id)
		require.ErrorIs(t, err, dispatcher.ErrNotFound, id)
		require.ErrorIs(t, err, deadletter.ErrNotFound, id)
	}
	_, err := d.Events().Get("999")
	require.EqualError(t, err, "store: no such event: 999", "the text is the store's")
}

// TestEventsFind selects by each field of EventFilter and pages with the
// cursor exactly as DeadLetters.Find does: a full page gives its last id
// as the cursor, and the end gives "".
func TestEventsFind(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var clock steppable
	d := setup(t, with(clock.option())).d
	var ids []string
	enqueue := func(n int) {
		for range n {
			fn := []string{"a", "b"}[len(ids)%2]
			r, err := d.Enqueue(ctx, dispatcher.Event{Function: fn, Key: fmt.Sprintf("k%d", len(ids)), Payload: []byte(`{}`)})
			require.NoError(t, err)
			ids = append(ids, r.ID)
		}
	}
	enqueue(6)
	cut := clock.now().Add(30 * time.Minute)
	clock.step(time.Hour)
	enqueue(4)
	ev := d.Events()

	find := func(f dispatcher.EventFilter, after string, limit int) ([]string, string) {
		t.Helper()
		page, next, err := ev.Find(ctx, f, after, limit)
		require.NoError(t, err)
		return eventIDs(page), next
	}
	t.Run("Function", func(t *testing.T) {
		a := dispatcher.EventFilter{Function: "a"}
		got, next := find(a, "", 2)
		require.Equal(t, []string{ids[0], ids[2]}, got)
		require.Equal(t, ids[2], next)
		got, next = find(a, next, 2)
		require.Equal(t, []string{ids[4], ids[6]}, got)
		got, next = find(a, next, 2)
		require.Equal(t, []string{ids[8]}, got)
		require.Empty(t, next)

		// A page filled by the last match is the last page: no cursor,
		// so that nobody pages on to an empty one.
		b := dispatcher.EventFilter{Function: "b"}
		got, next = find(b, "", 5)
		require.Equal(t, []string{ids[1], ids[3], ids[5], ids[7], ids[9]}, got)
		require.Empty(t, next)
		got, next = find(b, ids[9], 5)
		require.Empty(t, got)
		require.Empty(t, next)
	})
	t.Run("Key", func(t *testing.T) {
		got, next := find(dispatcher.EventFilter{Key: "k3"}, "", 10)
		require.Equal(t, []string{ids[3]}, got)
		require.Empty(t, next)
		got, _ = find(dispatcher.EventFilter{Key: "k3", Function: "a"}, "", 10)
		require.Empty(t, got)
	})
	t.Run("State", func(t *testing.T) {
		got, _ := find(dispatcher.EventFilter{State: dispatcher.StateReady}, "", 100)
		require.Equal(t, ids, got)
		got, _ = find(dispatcher.EventFilter{State: dispatcher.StateScheduled}, "", 100)
		require.Empty(t, got, "a step of the wall clock schedules nothing")
	})
	t.Run("EnqueuedRange", func(t *testing.T) {
		got, _ := find(dispatcher.EventFilter{EnqueuedBefore: cut}, "", 100)
		require.Equal(t, ids[:6], got)
		got, _ = find(dispatcher.EventFilter{EnqueuedAfter: cut}, "", 100)
		require.Equal(t, ids[6:], got)
		got, next := find(dispatcher.EventFilter{EnqueuedAfter: cut, Function: "b"}, ids[7], 1)
		require.Equal(t, []string{ids[9]}, got)
		require.Empty(t, next, "the last event: no next page")
		got, _ = find(dispatcher.EventFilter{EnqueuedAfter: cut, EnqueuedBefore: cut}, "", 100)
		require.Empty(t, got)
	})
	t.Run("BadArguments", func(t *testing.T) {
		_, _, err := ev.Find(ctx, dispatcher.EventFilter{}, "", 0)
		require.ErrorContains(t, err, "limit 0")
		_, _, err = ev.Find(ctx, dispatcher.EventFilter{}, "abc", 10)
		require.ErrorContains(t, err, "cursor")
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		_, _, err = ev.Find(cancelled, dispatcher.EventFilter{}, "", 10)
		require.ErrorIs(t, err, context.Canceled)
	})
}

// TestEventsAll iterates past the store's read chunk (1,000 events), in id
// order, stops when the loop breaks, and yields an error once.
func TestEventsAll(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := setup(t).d
	evs := make([]dispatcher.Event, 2100)
	for i := range evs {
		evs[i] = dispatcher.Event{Function: []string{"a", "b", "c"}[i%3], Payload: fmt.Appendf(nil, `{"n":%d}`, i)}
	}
	rs, err := d.EnqueueBatch(ctx, evs)
	require.NoError(t, err)

	var got []string
	for e, err := range d.Events().All(ctx, dispatcher.EventFilter{Function: "b"}) {
		require.NoError(t, err)
		require.Equal(t, "b", e.Function)
		got = append(got, e.ID)
	}
	var want []string
	for i := 1; i < len(rs); i += 3 {
		want = append(want, rs[i].ID)
	}
	require.Equal(t, want, got)

	t.Run("Break", func(t *testing.T) {
		// A yield after the break would panic: range-over-func checks it.
		n := 0
		for e, err := range d.Events().All(ctx, dispatcher.EventFilter{}) {
			require.NoError(t, err)
			require.Equal(t, rs[n].ID, e.ID)
			if n++; n == 3 {
				break
			}
		}
		require.Equal(t, 3, n)
	})
	t.Run("ContextEnds", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var seen, errs int
		for _, err := range d.Events().All(cctx, dispatcher.EventFilter{}) {
			if err != nil {
				require.ErrorIs(t, err, context.Canceled)
				errs++
				continue
			}
			if seen++; seen == 10 {
				cancel()
			}
		}
		require.Equal(t, 10, seen)
		require.Equal(t, 1, errs, "the error is yielded once and ends it")
	})
}

// TestDeadLettersAll iterates the letters a filter selects and stops on a
// break.
func TestDeadLettersAll(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, ids := withLetters(t, "missing", "gone", "missing", "missing")
	var got []string
	for l, err := range b.d.DeadLetters().All(ctx, dispatcher.LetterFilter{Function: "missing"}) {
		require.NoError(t, err)
		got = append(got, l.ID)
	}
	require.Equal(t, []string{ids[0], ids[2], ids[3]}, got)
	n := 0
	for _, err := range b.d.DeadLetters().All(ctx, dispatcher.LetterFilter{}) {
		require.NoError(t, err)
		if n++; n == 2 {
			break
		}
	}
	require.Equal(t, 2, n)
}

// TestInspectorsAfterClose adds the inspectors' methods to what
// TestAfterClose checks: each says ErrClosed, the iterators once, and the
// file does not change.
func TestInspectorsAfterClose(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, letters := withLetters(t, "missing")
	queued := b.enqueue(t, "fn", 2)
	ev, dl := b.d.Events(), b.d.DeadLetters()
	require.NoError(t, b.d.Close())
	data, err := os.ReadFile(b.path)
	require.NoError(t, err)
	before := sha256.Sum256(data)

	for name, call := range map[string]func() error{
		"Events.Get":  func() error { _, err := ev.Get(queued[0]); return err },
		"Events.Find": func() error { _, _, err := ev.Find(ctx, dispatcher.EventFilter{}, "", 10); return err },
		"Events.All":  func() error { return onlyError(t, ev.All(ctx, dispatcher.EventFilter{})) },
		"Events()":    func() error { _, err := b.d.Events().Get(queued[1]); return err },
		"DeadLetters.All": func() error {
			return onlyError(t, dl.All(ctx, dispatcher.LetterFilter{}))
		},
		"DeadLetters.Get": func() error { _, err := dl.Get(letters[0]); return err },
	} {
		require.ErrorIs(t, call(), dispatcher.ErrClosed, name)
	}
	data, err = os.ReadFile(b.path)
	require.NoError(t, err)
	require.Equal(t, before, sha256.Sum256(data), "the file did not change")
}

// onlyError runs seq and returns its one yield, which must be an error.
func onlyError[T any](t *testing.T, seq iter.Seq2[T, error]) error {
	t.Helper()
	var errs []error
	for _, err := range seq {
		require.Error(t, err, "nothing but the error is yielded")
		errs = append(errs, err)
	}
	require.Len(t, errs, 1)
	return errs[0]
}

func eventIDs(evs []dispatcher.QueuedEvent) []string {
	var ids []string
	for _, e := range evs {
		ids = append(ids, e.ID)
	}
	return ids
}

// TestFindFullLastPageHasNoCursor: a page that is full because exactly
// limit events are left says so with an empty cursor, for events and for
// letters, so that a client's "Next" never leads to an empty page.
func TestFindFullLastPageHasNoCursor(t *testing.T) {
	t.Parallel()
	b := setup(t, withServer())
	b.enqueue(t, "missing", 4)
	b.start(t)
	waitStats(t, b.d, "dead-lettered", func(s dispatcher.Stats) bool { return s.DeadLettered == 4 })
	b.halt(t)
	b.enqueue(t, "orders", 4)
	ctx := context.Background()

	evs, next, err := b.d.Events().Find(ctx, dispatcher.EventFilter{}, "", 2)
	require.NoError(t, err)
	require.Len(t, evs, 2)
	require.Equal(t, evs[1].ID, next)
	evs, next, err = b.d.Events().Find(ctx, dispatcher.EventFilter{}, next, 2)
	require.NoError(t, err)
	require.Len(t, evs, 2)
	require.Empty(t, next, "nothing after the second page")

	f := dispatcher.LetterFilter{Function: "missing"}
	ls, next, err := b.d.DeadLetters().Find(ctx, f, "", 2)
	require.NoError(t, err)
	require.Len(t, ls, 2)
	require.Equal(t, ls[1].ID, next)
	ls, next, err = b.d.DeadLetters().Find(ctx, f, next, 2)
	require.NoError(t, err)
	require.Len(t, ls, 2)
	require.Empty(t, next, "nothing after the second page")
}
