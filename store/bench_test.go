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
func BenchmarkLeaseAck(b *testing.B) {
	for _, w := range []int{1, 64} {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) {
			st, err := Open(filepath.Join(b.TempDir(), "q.db"), Options{})
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
