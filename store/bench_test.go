package store

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var benchPayload = []byte(`{"order":"o-000042","pad":"` + strings.Repeat("x", 1024-29) + `"}`)

// fill enqueues n events in batches of 1000, outside the timer.
func fill(b *testing.B, st *Store, n int) {
	b.Helper()
	batch := make([]NewEvent, 0, 1000)
	for i := 0; i < n; i++ {
		batch = append(batch, NewEvent{Function: "bench", Payload: benchPayload})
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := st.Enqueue(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// BenchmarkLeaseAck measures the worker cycle, lease one event then ack it,
// with w workers at once. Each step is its own call; the writer folds the
// concurrent calls into shared transactions.
//
// The "/dropoldest" runs keep the eviction index (FullDropOldest, no cap
// reached): the cost it adds to a lease and an ack.
func BenchmarkLeaseAck(b *testing.B) {
	for _, run := range []struct {
		w    int
		name string
		o    Options
	}{{1, "", Options{}}, {64, "", Options{}}, {1, "/dropoldest", Options{Full: FullDropOldest}}, {64, "/dropoldest", Options{Full: FullDropOldest}}} {
		w := run.w
		b.Run(fmt.Sprintf("workers=%d%s", w, run.name), func(b *testing.B) {
			st, err := Open(filepath.Join(b.TempDir(), "q.db"), run.o)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			fill(b, st, b.N)
			ctx := context.Background()
			var done atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for range w {
				wg.Go(func() {
					for done.Load() < int64(b.N) {
						evs, err := st.Lease(ctx, 1, time.Minute)
						if err != nil {
							b.Error(err)
							return
						}
						if len(evs) == 0 {
							continue
						}
						if err := st.Ack(ctx, evs[0].Seq); err != nil {
							b.Error(err)
							return
						}
						done.Add(1)
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
			s, _ := st.Stats()
			b.ReportMetric(float64(s.LeasesTaken+s.Acked)/float64(s.Commits), "ops/commit")
		})
	}
}

// BenchmarkLeaseAckPipelined is the same cycle as the dispatcher runs it:
// one goroutine leases up to 256 due events per call and hands them to 64
// workers; one goroutine acks whatever the workers finished, all in one
// call. Both steps are batched, and the writer shares a commit between the
// lease and the ack that wait together.
func BenchmarkLeaseAckPipelined(b *testing.B) {
	const workers = 64
	st, err := Open(filepath.Join(b.TempDir(), "q.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	fill(b, st, b.N)
	ctx := context.Background()
	work := make(chan uint64, 256)
	acks := make(chan uint64, 1024)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	wg.Go(func() { // leaser
		defer close(work)
		for leased := 0; leased < b.N; {
			evs, err := st.Lease(ctx, min(256, cap(work)-len(work)+1), time.Minute)
			if err != nil {
				b.Error(err)
				return
			}
			for _, e := range evs {
				work <- e.Seq
			}
			leased += len(evs)
		}
	})
	var workersWG sync.WaitGroup
	for range workers {
		workersWG.Go(func() {
			for seq := range work {
				acks <- seq
			}
		})
	}
	go func() { workersWG.Wait(); close(acks) }()
	wg.Go(func() { // acker
		for seq := range acks {
			seqs := []uint64{seq}
		more:
			for {
				select {
				case s, ok := <-acks:
					if !ok {
						break more
					}
					seqs = append(seqs, s)
				default:
					break more
				}
			}
			if err := st.Ack(ctx, seqs...); err != nil {
				b.Error(err)
				return
			}
		}
	})
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	s, _ := st.Stats()
	b.ReportMetric(float64(s.Acked)/float64(s.Commits), "events/commit")
}

// BenchmarkEnqueueFull measures Enqueue into a queue that is full under
// FullDropOldest (each batch evicts as many events as it brings, the
// oldest of 10,000) next to one that is not (the index kept, nothing
// evicted) and, as the baseline, one under FullReject, which keeps no
// index. "noledger" is the full queue with MaxEvictionRecords < 0. One op
// is one call of batch events of 1 KiB.
func BenchmarkEnqueueFull(b *testing.B) {
	const held = 10000
	for _, batch := range []int{1, 100} {
		for _, tc := range []struct {
			name string
			o    Options
			fill bool
		}{
			{"empty/reject", Options{}, false},
			{"empty/dropoldest", Options{Full: FullDropOldest}, false},
			{"full/dropoldest", Options{Full: FullDropOldest, MaxEvents: held}, true},
			{"full/dropoldest/noledger", Options{Full: FullDropOldest, MaxEvents: held, MaxEvictionRecords: -1}, true},
		} {
			b.Run(fmt.Sprintf("batch=%d/%s", batch, tc.name), func(b *testing.B) {
				st, err := Open(filepath.Join(b.TempDir(), "q.db"), tc.o)
				if err != nil {
					b.Fatal(err)
				}
				defer st.Close()
				if tc.fill {
					fill(b, st, held)
				}
				evs := make([]NewEvent, batch)
				for i := range evs {
					evs[i] = NewEvent{Function: "bench", Payload: benchPayload}
				}
				ctx := context.Background()
				b.ResetTimer()
				start := time.Now()
				for range b.N {
					if _, err := st.Enqueue(ctx, evs); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "events/s")
				s, _ := st.Stats()
				if tc.fill && s.Evicted != uint64(b.N*batch) {
					b.Fatalf("evicted %d, want %d", s.Evicted, b.N*batch)
				}
			})
		}
	}
}
