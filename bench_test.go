package dispatcher_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lambdadispatch/dispatcher"
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
