package dispatcher_test

import (
	"context"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/lambdatest"
)

// BenchmarkDispatch measures end-to-end dispatch, from a full queue to
// every event acknowledged by Lambda, at 64 invocations in flight, next to
// the baseline: 64 goroutines calling the SDK's Invoke in a loop against
// the same server, with nothing durable at all.
func BenchmarkDispatch(b *testing.B) {
	const inflight = 64
	srv := lambdatest.NewServer(lambdatest.WithRecordLimit(-1))
	defer srv.Close()
	srv.Register("bench", lambdatest.OK())
	client := srv.Client()

	b.Run("inflight=64/dispatcher", func(b *testing.B) {
		d, err := dispatcher.Open(filepath.Join(b.TempDir(), "events.db"),
			dispatcher.WithLambda(client), dispatcher.WithConcurrency(inflight))
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		batch := make([]dispatcher.Event, 0, 1000)
		for i := 0; i < b.N; i++ {
			batch = append(batch, dispatcher.Event{Function: "bench", Payload: benchPayload})
			if len(batch) == cap(batch) || i == b.N-1 {
				if _, err := d.EnqueueBatch(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
		}
		base := srv.Count("bench")
		ctx, stop := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		runtime.GC() // the fill's garbage is not the dispatch's cost
		b.ResetTimer()
		start := time.Now()
		go func() { errc <- d.Run(ctx) }()
		wctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if err := srv.WaitCount(wctx, "bench", base+b.N); err != nil {
			b.Fatal(err)
		}
		for d.Stats().Delivered < uint64(b.N) { // the acks land just after the invocations
			time.Sleep(100 * time.Microsecond)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		stop()
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	})

	b.Run("inflight=64/baseline", func(b *testing.B) {
		runtime.GC() // as for the dispatcher
		runProducers(b, inflight, func(int) error {
			_, err := client.Invoke(context.Background(), &lambda.InvokeInput{
				FunctionName:   aws.String("bench"),
				InvocationType: types.InvocationTypeEvent,
				Payload:        benchPayload,
			})
			return err
		})
	})
}
