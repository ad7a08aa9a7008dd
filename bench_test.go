package dispatcher_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	bolt "go.etcd.io/bbolt"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/idempotency/dynamo"
	"github.com/lambdadispatch/dispatcher/internal/dynalitetest"
	"github.com/lambdadispatch/dispatcher/lambdatest"
)

// benchPayload is a 1 KiB JSON document, the size the benchmarks use.
var benchPayload = []byte(`{"order":"o-000042","pad":"` + strings.Repeat("x", 1024-29) + `"}`)

var producerCounts = []int{1, 8, 64, 256}

// runProducers splits b.N calls of do among p goroutines and reports
// events/s.
func runProducers(b *testing.B, p int, do func(i int) error) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range p {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if err := do(int(i)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkEnqueue measures Enqueue at several producer counts, next to the
// baseline: the best plain bbolt does with the same bytes at the same
// concurrency, one writer goroutine draining a channel of pending puts into
// one Update per round and then releasing every waiter.
func BenchmarkEnqueue(b *testing.B) {
	for _, p := range producerCounts {
		b.Run(fmt.Sprintf("producers=%d/dispatcher", p), func(b *testing.B) {
			d, err := dispatcher.Open(filepath.Join(b.TempDir(), "events.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			ctx := context.Background()
			runProducers(b, p, func(int) error {
				_, err := d.Enqueue(ctx, dispatcher.Event{Function: "bench", Payload: benchPayload})
				return err
			})
		})
		b.Run(fmt.Sprintf("producers=%d/baseline", p), func(b *testing.B) {
			w := newBaselineWriter(b, filepath.Join(b.TempDir(), "baseline.db"))
			defer w.close()
			runProducers(b, p, func(i int) error { return w.put(uint64(i), benchPayload) })
		})
	}
}

// baselineWriter is the reference group commit on plain bbolt.
type baselineWriter struct {
	db   *bolt.DB
	reqs chan baselinePut
	done chan struct{}
}

type baselinePut struct {
	key, value []byte
	errc       chan error
}

func newBaselineWriter(b *testing.B, path string) *baselineWriter {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err }); err != nil {
		b.Fatal(err)
	}
	w := &baselineWriter{db: db, reqs: make(chan baselinePut, 1024), done: make(chan struct{})}
	go w.loop()
	return w
}

func (w *baselineWriter) put(k uint64, v []byte) error {
	p := baselinePut{key: binary.BigEndian.AppendUint64(nil, k), value: v, errc: make(chan error, 1)}
	w.reqs <- p
	return <-p.errc
}

func (w *baselineWriter) loop() {
	defer close(w.done)
	var round []baselinePut
	for first := range w.reqs {
		round = append(round[:0], first)
	drain:
		for {
			select {
			case p, ok := <-w.reqs:
				if !ok {
					break drain
				}
				round = append(round, p)
			default:
				break drain
			}
		}
		err := w.db.Update(func(tx *bolt.Tx) error {
			bk := tx.Bucket([]byte("b"))
			for _, p := range round {
				if err := bk.Put(p.key, p.value); err != nil {
					return err
				}
			}
			return nil
		})
		for _, p := range round {
			p.errc <- err
		}
	}
}

func (w *baselineWriter) close() {
	close(w.reqs)
	<-w.done
	w.db.Close()
}

// BenchmarkEnqueueFull measures Enqueue at 64 producers into a queue
// already at its cap under WithFullPolicy(DropOldest), where each event
// evicts one and writes its ledger record, next to the same cap with room.
func BenchmarkEnqueueFull(b *testing.B) {
	const capEvents = 10_000
	for _, full := range []bool{false, true} {
		name := "empty"
		if full {
			name = "full-dropoldest"
		}
		b.Run(name, func(b *testing.B) {
			// The same policy both ways, so both keep the eviction index;
			// with room, a cap the loop never reaches.
			limit := int64(capEvents)
			if !full {
				limit = 1 << 40
			}
			d, err := dispatcher.Open(filepath.Join(b.TempDir(), "events.db"),
				dispatcher.WithMaxEvents(limit), dispatcher.WithFullPolicy(dispatcher.DropOldest))
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			ctx := context.Background()
			if full {
				batch := make([]dispatcher.Event, 1000)
				for i := range batch {
					batch[i] = dispatcher.Event{Function: "bench", Payload: benchPayload}
				}
				for range capEvents / len(batch) {
					if _, err := d.EnqueueBatch(ctx, batch); err != nil {
						b.Fatal(err)
					}
				}
			}
			runProducers(b, 64, func(int) error {
				_, err := d.Enqueue(ctx, dispatcher.Event{Function: "bench", Payload: benchPayload})
				return err
			})
		})
	}
}

// BenchmarkEnqueueKeys measures Enqueue at 64 producers with a distinct
// key on every event, next to the same without keys.
func BenchmarkEnqueueKeys(b *testing.B) {
	for _, keyed := range []bool{false, true} {
		b.Run(fmt.Sprintf("producers=64/keyed=%v", keyed), func(b *testing.B) {
			d, err := dispatcher.Open(filepath.Join(b.TempDir(), "events.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			ctx := context.Background()
			runProducers(b, 64, func(i int) error {
				e := dispatcher.Event{Function: "bench", Payload: benchPayload}
				if keyed {
					e.Key = fmt.Sprint("order-", i)
				}
				_, err := d.Enqueue(ctx, e)
				return err
			})
		})
	}
}

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
				InvocationType: lambdatypes.InvocationTypeEvent,
				Payload:        benchPayload,
			})
			return err
		})
	})
}

// countingTransport counts the DynamoDB requests it carries, by operation.
type countingTransport struct {
	next http.RoundTripper
	mu   sync.Mutex
	ops  map[string]int
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	_, op, _ := strings.Cut(r.Header.Get("X-Amz-Target"), ".")
	c.mu.Lock()
	c.ops[op]++
	c.mu.Unlock()
	return c.next.RoundTrip(r)
}

func (c *countingTransport) reset() {
	c.mu.Lock()
	clear(c.ops)
	c.mu.Unlock()
}

// report adds the round trips per event, by kind, to the benchmark.
func (c *countingTransport) report(b *testing.B, events int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	total := 0
	for _, n := range c.ops {
		total += n
	}
	per := func(n int) float64 { return float64(n) / float64(events) }
	b.ReportMetric(per(total), "requests/event")
	b.ReportMetric(per(c.ops["PutItem"]), "claims/event")
	b.ReportMetric(per(c.ops["UpdateItem"]), "confirms/event")
	b.ReportMetric(per(c.ops["GetItem"]+c.ops["BatchGetItem"]), "reads/event")
}

// BenchmarkEnqueueSharedKeys measures keyed Enqueue at 64 producers with the
// key window shared on DynamoDB (dynalite here), next to the local window
// in the same file, and counts the round trips per event. "new" keys are
// all fresh; "redelivered" enqueues every event twice, so half are
// duplicates; "batch" sends them as EnqueueBatch calls of 100 events, each
// batch twice, whose keys are read a hundred a request.
func BenchmarkEnqueueSharedKeys(b *testing.B) {
	url := dynalitetest.Start(b)
	ct := &countingTransport{next: http.DefaultTransport.(*http.Transport).Clone(), ops: map[string]int{}}
	b.Cleanup(ct.next.(*http.Transport).CloseIdleConnections)
	client := dynalitetest.Client(b, url, func(o *dynamodb.Options) { o.HTTPClient = &http.Client{Transport: ct} })

	// The baseline: what dynalite itself serves here, 64 goroutines each
	// making plain PutItem requests, reported per request.
	b.Run("producers=64/baseline=putitem", func(b *testing.B) {
		table := dynalitetest.Table(b, client)
		ctx := context.Background()
		runProducers(b, 64, func(i int) error {
			_, err := client.PutItem(ctx, &dynamodb.PutItemInput{
				TableName: aws.String(table),
				Item:      map[string]types.AttributeValue{"key": &types.AttributeValueMemberS{Value: fmt.Sprint("order-", i)}},
			})
			return err
		})
	})
	// The same two conditional writes per key as a dispatcher makes for a
	// new key, straight through the Window: what is left above it is the
	// dispatcher's own cost (the local commit, with its fsync, between them).
	b.Run("producers=64/baseline=claim+confirm", func(b *testing.B) {
		w, err := dynamo.New(client, dynalitetest.Table(b, client))
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		runProducers(b, 64, func(i int) error {
			c := idempotency.Claim{Key: fmt.Sprint("order-", i), Owner: "bench", Token: fmt.Sprint("t", i), Window: time.Hour, Lease: time.Minute}
			if _, _, err := w.Claim(ctx, c, time.Now()); err != nil {
				return err
			}
			return w.Confirm(ctx, idempotency.Ref{Key: c.Key, Owner: c.Owner, Token: c.Token, ID: fmt.Sprint(i)})
		})
	})
	for _, mode := range []string{"new", "redelivered", "batch"} {
		for _, window := range []string{"local", "dynamo"} {
			b.Run(fmt.Sprintf("producers=64/%s/window=%s", mode, window), func(b *testing.B) {
				var opts []dispatcher.Option
				if window == "dynamo" {
					w, err := dynamo.New(client, dynalitetest.Table(b, client))
					if err != nil {
						b.Fatal(err)
					}
					opts = append(opts, dispatcher.WithSharedKeys(w))
				}
				d, err := dispatcher.Open(filepath.Join(b.TempDir(), "events.db"), opts...)
				if err != nil {
					b.Fatal(err)
				}
				defer d.Close()
				ctx := context.Background()
				ev := func(i int) dispatcher.Event {
					return dispatcher.Event{Function: "bench", Key: fmt.Sprint("order-", i), Payload: benchPayload}
				}
				ct.reset()
				switch mode {
				case "new":
					runProducers(b, 64, func(i int) error {
						_, err := d.Enqueue(ctx, ev(i))
						return err
					})
				case "redelivered":
					runProducers(b, 64, func(i int) error {
						_, err := d.Enqueue(ctx, ev(i/2))
						return err
					})
				case "batch":
					// Every 100th call of do sends a batch of 100 events, so
					// that b.N still counts events; batches 2m and 2m+1 carry
					// the same keys.
					runProducers(b, 64, func(i int) error {
						if i%100 != 0 {
							return nil
						}
						batch := make([]dispatcher.Event, 100)
						for j := range batch {
							batch[j] = ev((i/200)*100 + j)
						}
						_, err := d.EnqueueBatch(ctx, batch)
						return err
					})
				}
				if window == "dynamo" {
					ct.report(b, b.N)
				}
			})
		}
	}
}
