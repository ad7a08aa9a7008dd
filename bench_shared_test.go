package dispatcher_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/idempotency/dynamo"
	"github.com/lambdadispatch/dispatcher/internal/dynalitetest"
)

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
