package dispatcher_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/store"
)

func TestOpen(t *testing.T) {
	t.Parallel()

	t.Run("SecondOpenFailsWithFileInUse", func(t *testing.T) {
		t.Parallel()
		path := setup(t).path
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
		d := setup(t).d
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
		b := setup(t)
		d, path := b.d, b.path
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
		d := setup(t).d
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
	d := setup(t, with(dispatcher.WithMaxBytes(1000))).d
	payload := []byte(`"` + strings.Repeat("x", 400) + `"`)
	for range 2 {
		_, err := d.Enqueue(ctx, dispatcher.Event{Function: "fn", Payload: payload})
		require.NoError(t, err)
	}
	_, err := d.Enqueue(ctx, dispatcher.Event{Function: "fn", Payload: payload})
	require.ErrorIs(t, err, dispatcher.ErrQueueFull)
	require.ErrorIs(t, err, store.ErrFull, "the store's sentinel matches too")
	require.Contains(t, err.Error(), "cap of 1000")
	require.True(t, strings.HasPrefix(err.Error(), dispatcher.ErrQueueFull.Error()+": "), err.Error())
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
	b := setup(t)
	d, path := b.d, b.path
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

// TestAfterClose calls every public method, and every route of the admin
// handler as its route table lists them, on a closed Dispatcher: each says
// ErrClosed (503 over HTTP), Lambda sees no request, and the file's bytes
// do not change.
func TestAfterClose(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, ids := withLetters(t, "missing", "missing", "missing")
	queued := b.enqueue(t, "fn", 1)
	h := b.d.AdminHandler() // taken before Close, as a mounted handler is
	requests := b.srv.Count("")
	require.NoError(t, b.d.Close())
	sum := func() [32]byte {
		data, err := os.ReadFile(b.path)
		require.NoError(t, err)
		return sha256.Sum256(data)
	}
	before := sum()

	dl := b.d.DeadLetters()
	qe := b.d.Events()
	ev := dispatcher.Event{Function: "fn", Payload: []byte(`{}`)}
	for name, call := range map[string]func() error{
		"Close":            b.d.Close,
		"Enqueue":          func() error { _, err := b.d.Enqueue(ctx, ev); return err },
		"EnqueueInvalid":   func() error { _, err := b.d.Enqueue(ctx, dispatcher.Event{}); return err },
		"EnqueueBatch":     func() error { _, err := b.d.EnqueueBatch(ctx, []dispatcher.Event{ev, ev}); return err },
		"EnqueueBatchNil":  func() error { _, err := b.d.EnqueueBatch(ctx, nil); return err },
		"EnqueueBatchNone": func() error { _, err := b.d.EnqueueBatch(ctx, []dispatcher.Event{}); return err },
		"Run":              func() error { return b.d.Run(ctx) },
		"Check":            func() error { return b.d.Check(ctx, "fn") },
		"Count":            func() error { _, err := dl.Count(); return err },
		"Get":              func() error { _, err := dl.Get(ids[0]); return err },
		"List":             func() error { _, _, err := dl.List(ctx, "", 10); return err },
		"Find":             func() error { _, _, err := dl.Find(ctx, dispatcher.LetterFilter{}, "", 10); return err },
		"Redrive":          func() error { _, err := dl.Redrive(ctx, ids, dispatcher.RedriveOptions{}); return err },
		"RedriveNone":      func() error { _, err := dl.Redrive(ctx, nil, dispatcher.RedriveOptions{}); return err },
		"RedriveMatching": func() error {
			_, err := dl.RedriveMatching(ctx, dispatcher.LetterFilter{}, dispatcher.RedriveOptions{})
			return err
		},
		"Purge":      func() error { _, err := dl.Purge(ctx, dispatcher.LetterFilter{}); return err },
		"LettersAll": func() error { return firstErr(dl.All(ctx, dispatcher.LetterFilter{})) },
		"EventsGet":  func() error { _, err := qe.Get("1"); return err },
		"EventsFind": func() error { _, _, err := qe.Find(ctx, dispatcher.EventFilter{}, "", 10); return err },
		"EventsAll":  func() error { return firstErr(qe.All(ctx, dispatcher.EventFilter{})) },
	} {
		require.ErrorIs(t, call(), dispatcher.ErrClosed, name)
	}
	st := b.d.Stats()
	require.False(t, st.Running)
	require.Zero(t, st.Queued(), "Stats after Close: totals only")
	require.Equal(t, uint64(3), st.DeadLettered)

	patterns := dispatcher.AdminPatterns(b.d)
	require.NotEmpty(t, patterns)
	for _, p := range patterns {
		method, path, ok := strings.Cut(p, " ")
		require.True(t, ok, "pattern %q names its method", p)
		path = strings.ReplaceAll(path, "{id}", ids[0])
		path = strings.ReplaceAll(path, "{function}", "orders")
		var body *bytes.Buffer
		if method == http.MethodPost {
			body = bytes.NewBufferString(`{"all":true}`) // would act on every letter
		} else {
			body = &bytes.Buffer{}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, body))
		require.Equal(t, http.StatusServiceUnavailable, rec.Code, "%s: %s", p, rec.Body)
		require.Contains(t, rec.Body.String(), dispatcher.ErrClosed.Error())
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/events/"+queued[0], nil))
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)

	require.Equal(t, requests, b.srv.Count(""), "no request reached Lambda")
	require.Equal(t, before, sum(), "the file did not change")

	// Without a Lambda client too, a closed Dispatcher says ErrClosed
	// first.
	d := setup(t).d
	require.NoError(t, d.Close())
	require.ErrorIs(t, d.Run(ctx), dispatcher.ErrClosed)
	require.ErrorIs(t, d.Check(ctx, "fn"), dispatcher.ErrClosed)

	// Everything is still there for the next Open.
	d, err := dispatcher.Open(b.path)
	require.NoError(t, err)
	defer d.Close()
	c, err := d.DeadLetters().Count()
	require.NoError(t, err)
	require.Equal(t, 3, c)
	require.Equal(t, int64(1), d.Stats().Ready)
}

// TestOpenDamagedFile: a queue file damaged on disk is refused with a
// *store.CorruptError the caller can test for, and left as it was.
func TestOpenDamagedFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "events.db")
	d, err := dispatcher.Open(path)
	require.NoError(t, err)
	for i := range 500 {
		_, err := d.Enqueue(context.Background(), dispatcher.Event{Function: "orders", Payload: fmt.Appendf(nil, `{"n":%d}`, i)})
		require.NoError(t, err)
	}
	require.NoError(t, d.Close())
	sound, err := os.ReadFile(path)
	require.NoError(t, err)
	ps := os.Getpagesize()

	for name, damage := range map[string]func([]byte) []byte{
		"Truncated": func(b []byte) []byte { return b[:3*ps] },
		"RootPageIDFlipped": func(b []byte) []byte {
			// The newer meta page (higher txid at byte 64) names the root
			// page (at byte 32).
			m := 0
			if binary.NativeEndian.Uint64(b[ps+64:]) > binary.NativeEndian.Uint64(b[64:]) {
				m = ps
			}
			b[int(binary.NativeEndian.Uint64(b[m+32:]))*ps] ^= 0x04
			return b
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := filepath.Join(t.TempDir(), "events.db")
			b := damage(append([]byte(nil), sound...))
			require.NoError(t, os.WriteFile(p, b, 0o600))
			_, err := dispatcher.Open(p)
			var ce *store.CorruptError
			require.ErrorAs(t, err, &ce)
			require.ErrorIs(t, err, dispatcher.ErrCorruptFile)
			after, err := os.ReadFile(p)
			require.NoError(t, err)
			require.Equal(t, sha256.Sum256(b), sha256.Sum256(after))
		})
	}
}

// firstErr returns the first error an inspector's iterator yields, or nil.
func firstErr[T any](seq iter.Seq2[T, error]) error {
	for _, err := range seq {
		if err != nil {
			return err
		}
	}
	return nil
}
