package dispatcher_test

import (
	"context"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/lambdatest"
	"github.com/lambdadispatch/dispatcher/store"
)

// TestRunRateLimitStopsAtCancel: at 1/s, events wait their turn; when Run's
// context ends, none of them starts, Run returns at once rather than after
// the drain timeout, and they go back with their attempt refunded.
func TestRunRateLimitStopsAtCancel(t *testing.T) {
	t.Parallel()
	b := setup(t, withServer(), with(dispatcher.WithRateLimit(1)))
	b.srv.Register("fn", lambdatest.OK())
	b.enqueue(t, "fn", 20)
	b.start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, b.srv.WaitCount(ctx, "fn", 1))

	b.stop()
	cancelled := time.Now()
	select {
	case err := <-b.errc:
		require.NoError(t, err)
	case <-time.After(3 * time.Second):
		t.Fatalf("Run did not return within 3s of its context ending (drain timeout %v)", dispatcher.DefaultDrainTimeout)
	}
	b.stop = nil
	for _, inv := range b.srv.Invocations("fn") {
		require.False(t, inv.Received.After(cancelled), "invocation received %v after the cancel", inv.Received.Sub(cancelled))
	}
	n := b.srv.Count("fn")
	st := b.d.Stats()
	require.Zero(t, st.Leased)
	require.Equal(t, int64(20-n), st.Ready)
	require.NoError(t, dispatcher.ScanEvents(b.d, func(e store.Event) error {
		require.Zero(t, e.Attempts, "event %d waited for its turn and was never tried", e.Seq)
		return nil
	}))
}

// TestRateLimitValues: 0 means no limit; what is not a positive finite
// rate with an interval that fits a time.Duration is refused at Open.
func TestRateLimitValues(t *testing.T) {
	t.Parallel()
	for _, v := range []float64{0, 1e-9, 0.5, 1e9} {
		d, err := dispatcher.Open(filepath.Join(t.TempDir(), "ok.db"), dispatcher.WithRateLimit(v))
		require.NoError(t, err, "rate %v", v)
		require.NoError(t, d.Close())
	}
	for _, v := range []float64{-1, math.Inf(-1), math.Inf(1), math.NaN(), 1e-10, math.SmallestNonzeroFloat64} {
		d, err := dispatcher.Open(filepath.Join(t.TempDir(), "bad.db"), dispatcher.WithRateLimit(v))
		require.Error(t, err, "rate %v", v)
		require.Nil(t, d)
		require.Contains(t, err.Error(), "WithRateLimit")
	}
}
