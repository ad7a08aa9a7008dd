// Command backlog measures how the queue behaves with a large backlog:
// enqueue throughput on a fresh file, the time and memory to open a file
// holding a million events, bytes on disk per event, and enqueue throughput
// again after the backlog has drained.
//
//	go run ./bench/backlog                 # 1,000,000 events, about 1.3 GB of disk
//	go run ./bench/backlog -n 100000       # quicker
//
// Figures are printed as a table; the ratios compare runs in this process.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/store"
)

var payload = []byte(`{"order":"o-000042","pad":"` + strings.Repeat("x", 1024-29) + `"}`)

func main() {
	n := flag.Int("n", 1_000_000, "events in the backlog")
	probe := flag.Int("probe", 50_000, "events per throughput probe")
	producers := flag.Int("producers", 64, "concurrent producers in a probe")
	dir := flag.String("dir", "", "directory for the files (default: a temporary one, removed at exit)")
	flag.Parse()
	if *dir == "" {
		d, err := os.MkdirTemp("", "backlog")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	if err := run(*dir, *n, *probe, *producers); err != nil {
		log.Fatal(err)
	}
}

func run(dir string, n, probe, producers int) error {
	ctx := context.Background()
	path := filepath.Join(dir, "events.db")

	// 1. A fresh file: enqueue throughput, then drain the probe.
	fresh, err := enqueueProbe(path, probe, producers)
	if err != nil {
		return err
	}
	if _, err := drain(path); err != nil {
		return err
	}

	// 2. The backlog, written in batches of 1000.
	d, err := dispatcher.Open(path)
	if err != nil {
		return err
	}
	start := time.Now()
	batch := make([]dispatcher.Event, 0, 1000)
	for i := 0; i < n; i++ {
		batch = append(batch, dispatcher.Event{Function: "bench", Payload: payload})
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := d.EnqueueBatch(ctx, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	fillTime := time.Since(start)
	if err := d.Close(); err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}

	// 3. Open with the backlog: time and heap.
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	start = time.Now()
	d, err = dispatcher.Open(path)
	if err != nil {
		return err
	}
	openTime := time.Since(start)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	queued := d.Stats().Queued()
	if err := d.Close(); err != nil {
		return err
	}

	// 4. Drain it, then probe again.
	drainRate, err := drain(path)
	if err != nil {
		return err
	}
	drained, err := enqueueProbe(path, probe, producers)
	if err != nil {
		return err
	}

	fmt.Printf("backlog                          %d events of %d-byte payloads\n", queued, len(payload))
	fmt.Printf("fill (batches of 1000)           %v, %.0f events/s\n", fillTime.Round(time.Millisecond), float64(n)/fillTime.Seconds())
	fmt.Printf("file size                        %.1f MiB, %.0f bytes per queued event\n", float64(fi.Size())/(1<<20), float64(fi.Size())/float64(n))
	fmt.Printf("open with backlog                %v\n", openTime.Round(time.Millisecond))
	fmt.Printf("heap in use after open           %.1f MiB (before open: %.1f MiB)\n", float64(after.HeapInuse)/(1<<20), float64(before.HeapInuse)/(1<<20))
	fmt.Printf("drain (lease 256, ack batched)   %.0f events/s\n", drainRate)
	fmt.Printf("enqueue, %d producers, fresh     %.0f events/s\n", producers, fresh)
	fmt.Printf("enqueue, %d producers, drained   %.0f events/s (%.2f × fresh)\n", producers, drained, drained/fresh)
	return nil
}

// enqueueProbe enqueues probe events from producers goroutines and returns
// events/s.
func enqueueProbe(path string, probe, producers int) (float64, error) {
	d, err := dispatcher.Open(path)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	start := time.Now()
	for range producers {
		wg.Go(func() {
			for next.Add(1) <= int64(probe) {
				if _, err := d.Enqueue(context.Background(), dispatcher.Event{Function: "bench", Payload: payload}); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return float64(probe) / time.Since(start).Seconds(), nil
}

// drain leases and acks every event, leasing up to 256 at a time and acking
// from 4 goroutines so that acks share commits with leases, and returns
// events/s.
func drain(path string) (float64, error) {
	st, err := store.Open(path, store.Options{})
	if err != nil {
		return 0, err
	}
	defer st.Close()
	ctx := context.Background()
	work := make(chan []uint64, 4)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range 4 {
		wg.Go(func() {
			for seqs := range work {
				if err := st.Ack(ctx, seqs...); err != nil {
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
	}
	start := time.Now()
	total := 0
	for {
		evs, err := st.Lease(ctx, 256, time.Minute)
		if err != nil {
			close(work)
			wg.Wait()
			return 0, err
		}
		if len(evs) == 0 {
			break
		}
		seqs := make([]uint64, len(evs))
		for i, e := range evs {
			seqs[i] = e.Seq
		}
		work <- seqs
		total += len(evs)
	}
	close(work)
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return float64(total) / time.Since(start).Seconds(), nil
}
