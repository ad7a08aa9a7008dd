package dispatcher_test

import (
	"context"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
)

// TestKeyWindowOverflow: a key window whose end does not fit Unix
// nanoseconds used to wrap the key's expiry into the past, so the key
// expired at once and deduplication was silently off. Open refuses such
// a WithKeyWindow and Enqueue such an Event.Window, with a
// *ValidationError whose Field is Window; the longest window that fits
// still deduplicates.
func TestKeyWindowOverflow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	clock := dispatcher.WithClock(func() time.Time { return now })
	longest := time.Duration(math.MaxInt64 - now.UnixNano())

	for _, w := range []time.Duration{longest + 1, math.MaxInt64} {
		d, err := dispatcher.Open(filepath.Join(t.TempDir(), "bad.db"), clock, dispatcher.WithKeyWindow(w))
		require.Nil(t, d)
		var ve *dispatcher.ValidationError
		require.ErrorAs(t, err, &ve, "window %v", w)
		require.Equal(t, "Window", ve.Field)
		require.Contains(t, err.Error(), "WithKeyWindow")
	}

	d := setup(t, with(clock, dispatcher.WithKeyWindow(longest))).d
	before := take(t, d)
	for _, w := range []time.Duration{longest + 1, math.MaxInt64} {
		_, err := d.EnqueueBatch(ctx, []dispatcher.Event{
			{Function: "fn", Key: "a"},
			{Function: "fn", Key: "b", Window: w},
		})
		var ve *dispatcher.ValidationError
		require.ErrorAs(t, err, &ve, "window %v", w)
		require.ErrorIs(t, err, dispatcher.ErrInvalidEvent)
		require.Equal(t, "Window", ve.Field)
		require.Equal(t, 1, ve.Index)
	}
	require.Equal(t, before, take(t, d), "nothing written")

	for _, w := range []time.Duration{0, longest} { // the option's, and an event's own
		key := "k" + w.String()
		r, err := d.Enqueue(ctx, dispatcher.Event{Function: "fn", Key: key, Window: w})
		require.NoError(t, err)
		require.False(t, r.Duplicate)
		now = now.Add(100 * 365 * 24 * time.Hour)
		r, err = d.Enqueue(ctx, dispatcher.Event{Function: "fn", Key: key})
		require.NoError(t, err)
		require.True(t, r.Duplicate, "window %v: still held a century on", w)
		now = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	}
}
