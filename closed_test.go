package dispatcher_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
)

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
		"Purge": func() error { _, err := dl.Purge(ctx, dispatcher.LetterFilter{}); return err },
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
