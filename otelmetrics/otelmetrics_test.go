package otelmetrics_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/lambdatest"
	"github.com/lambdadispatch/dispatcher/otelmetrics"
	"github.com/lambdadispatch/dispatcher/retry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// sums reads every data point of the named metric into attribute-set →
// value, for counters and gauges alike.
func sums(t *testing.T, rm metricdata.ResourceMetrics, name string) map[attribute.Distinct]int64 {
	t.Helper()
	out := map[attribute.Distinct]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch data := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range data.DataPoints {
					out[p.Attributes.Equivalent()] = p.Value
				}
			case metricdata.Gauge[int64]:
				for _, p := range data.DataPoints {
					out[p.Attributes.Equivalent()] = p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range data.DataPoints {
					out[p.Attributes.Equivalent()] = int64(p.Count)
				}
			}
		}
	}
	return out
}

func attrs(kv ...attribute.KeyValue) attribute.Distinct {
	set := attribute.NewSet(kv...)
	return set.Equivalent()
}

func TestRecorder(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	rec, err := otelmetrics.New(mp)
	require.NoError(t, err)

	srv := lambdatest.NewServer()
	t.Cleanup(srv.Close)
	srv.Register("ok", lambdatest.OK())
	srv.Fail("ok", lambdatest.Throttle(2, 0))
	p := retry.DefaultPolicy()
	p.InitialInterval, p.MaxInterval = time.Millisecond, 5*time.Millisecond
	d, err := dispatcher.Open(filepath.Join(t.TempDir(), "events.db"), dispatcher.WithLambda(srv.Client()),
		dispatcher.WithRetryPolicy(p), dispatcher.WithConcurrency(1), dispatcher.WithMetrics(rec))
	require.NoError(t, err)
	ctx := context.Background()
	for _, e := range []dispatcher.Event{
		{Function: "ok", Key: "a"}, {Function: "ok", Key: "a"}, {Function: "ok"}, {Function: "missing"},
	} {
		_, err := d.Enqueue(ctx, e)
		require.NoError(t, err)
	}
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(ctx, &rm))
	require.Equal(t, int64(3), sums(t, rm, "dispatcher.queue.depth")[attrs(attribute.String("state", "ready"))])
	require.Equal(t, int64(1), sums(t, rm, "dispatcher.keys")[attrs()])

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	deadline := time.Now().Add(30 * time.Second)
	for st := d.Stats(); st.Delivered < 2 || st.DeadLettered < 1; st = d.Stats() {
		require.True(t, time.Now().Before(deadline), "not settled: %+v", st)
		time.Sleep(time.Millisecond)
	}
	stop()
	require.NoError(t, <-done)
	require.NoError(t, reader.Collect(ctx, &rm))
	require.NoError(t, d.Close())

	require.Equal(t, int64(3), sums(t, rm, "dispatcher.enqueued")[attrs()])
	require.Equal(t, int64(2), sums(t, rm, "dispatcher.delivered")[attrs()])
	require.Equal(t, int64(1), sums(t, rm, "dispatcher.deduplicated")[attrs(attribute.String("where", "enqueue"))])
	inv := sums(t, rm, "dispatcher.invocations")
	require.Equal(t, int64(2), inv[attrs(attribute.String("function", "ok"), attribute.String("class", "success"))])
	require.Equal(t, int64(2), inv[attrs(attribute.String("function", "ok"), attribute.String("class", "throttled"))])
	require.Equal(t, int64(1), inv[attrs(attribute.String("function", "missing"), attribute.String("class", "permanent"))])
	require.Equal(t, int64(2), sums(t, rm, "dispatcher.retried")[attrs(attribute.String("class", "throttled"))])
	require.Equal(t, int64(1), sums(t, rm, "dispatcher.dead_lettered")[attrs(attribute.String("reason", "rejected"))])
	require.Equal(t, int64(2), sums(t, rm, "dispatcher.invoke.duration")[attrs(attribute.String("class", "success"))], "histogram count")
	require.Equal(t, int64(1), sums(t, rm, "dispatcher.inflight.limit")[attrs()])
	age := sums(t, rm, "dispatcher.async.event_age")
	require.Equal(t, int64(4), age[attrs(attribute.String("function", "ok"))], "two throttled attempts and two delivered: an age at each")
	require.Equal(t, int64(1), age[attrs(attribute.String("function", "missing"))])
	require.Equal(t, int64(2), sums(t, rm, "dispatcher.async.received")[attrs(attribute.String("function", "ok"))])
	require.Equal(t, int64(1), sums(t, rm, "dispatcher.async.dropped")[attrs(attribute.String("function", "missing"), attribute.String("reason", "rejected"))])
	require.Equal(t, int64(2), sums(t, rm, "dispatcher.function.throttled")[attrs(attribute.String("function", "ok"))])
	depth := sums(t, rm, "dispatcher.queue.depth")
	require.Zero(t, depth[attrs(attribute.String("state", "ready"))])
	require.Equal(t, int64(1), depth[attrs(attribute.String("state", "dead"))])
}

// TestEvictionsAreDropped: an event evicted to make room is dropped as
// Lambda would count it, by function, once the eviction is committed.
func TestEvictionsAreDropped(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	rec, err := otelmetrics.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	require.NoError(t, err)
	d, err := dispatcher.Open(filepath.Join(t.TempDir(), "events.db"), dispatcher.WithMetrics(rec),
		dispatcher.WithMaxEvents(2), dispatcher.WithFullPolicy(dispatcher.DropOldest))
	require.NoError(t, err)
	ctx := context.Background()
	for _, fn := range []string{"old", "old", "new", "new"} {
		_, err := d.Enqueue(ctx, dispatcher.Event{Function: fn})
		require.NoError(t, err)
	}
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(ctx, &rm))
	require.NoError(t, d.Close())
	dropped := sums(t, rm, "dispatcher.async.dropped")
	require.Equal(t, int64(2), dropped[attrs(attribute.String("function", "old"), attribute.String("reason", "evicted"))])
	require.Len(t, dropped, 1)
}
