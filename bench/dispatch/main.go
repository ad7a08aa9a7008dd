//go:build unix

// Command dispatch compares end-to-end dispatch with a raw SDK Invoke loop
// in alternating rounds, so that each ratio compares two runs made moments
// apart on this noisy machine, and prints every pair and the median ratio.
//
//	go run ./bench/dispatch                  # 7 rounds of 20,000 events
//	go run ./bench/dispatch -rounds 3 -n 5000
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/lambdatest"
)

var payload = []byte(`{"order":"o-000042","pad":"` + strings.Repeat("x", 1024-29) + `"}`)

func main() {
	rounds := flag.Int("rounds", 7, "alternating rounds")
	n := flag.Int("n", 20_000, "events per run")
	inflight := flag.Int("inflight", 64, "invocations in flight")
	flag.Parse()
	srv := lambdatest.NewServer(lambdatest.WithRecordLimit(-1))
	defer srv.Close()
	srv.Register("bench", lambdatest.OK())
	client := srv.Client()
	dir, err := os.MkdirTemp("", "dispatch")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	var ratios, cpus []float64
	fmt.Printf("%-6s %14s %14s %7s %14s %14s\n", "round", "dispatcher/s", "raw SDK/s", "ratio", "disp. CPU µs", "raw CPU µs")
	for r := range *rounds {
		d, dcpu, err := dispatchRun(filepath.Join(dir, fmt.Sprint(r, ".db")), client, srv, *n, *inflight)
		if err != nil {
			log.Fatal(err)
		}
		b, bcpu, err := baselineRun(client, *n, *inflight)
		if err != nil {
			log.Fatal(err)
		}
		// CPU per event, over the whole process (the server included), is
		// steadier than throughput when neighbours take the cores.
		dc, bc := float64(dcpu.Microseconds())/float64(*n), float64(bcpu.Microseconds())/float64(*n)
		ratios, cpus = append(ratios, d/b), append(cpus, bc/dc)
		fmt.Printf("%-6d %14.0f %14.0f %7.2f %14.1f %14.1f\n", r+1, d, b, d/b, dc, bc)
	}
	slices.Sort(ratios)
	slices.Sort(cpus)
	fmt.Printf("median ratio %.2f (min %.2f, max %.2f)\n", ratios[len(ratios)/2], ratios[0], ratios[len(ratios)-1])
	fmt.Printf("median CPU-per-event ratio, raw/dispatcher, %.2f (min %.2f, max %.2f); the fill is not counted in either\n", cpus[len(cpus)/2], cpus[0], cpus[len(cpus)-1])
}

// dispatchRun fills a queue with n events, then times Run from start to
// every event acked, and returns events/s and the process's CPU time.
func dispatchRun(path string, client *lambda.Client, srv *lambdatest.Server, n, inflight int) (float64, time.Duration, error) {
	d, err := dispatcher.Open(path, dispatcher.WithLambda(client), dispatcher.WithConcurrency(inflight))
	if err != nil {
		return 0, 0, err
	}
	defer d.Close()
	batch := make([]dispatcher.Event, 0, 1000)
	for i := range n {
		batch = append(batch, dispatcher.Event{Function: "bench", Payload: payload})
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := d.EnqueueBatch(context.Background(), batch); err != nil {
				return 0, 0, err
			}
			batch = batch[:0]
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	runtime.GC()
	cpu := cpuTime()
	start := time.Now()
	go func() { errc <- d.Run(ctx) }()
	for d.Stats().Delivered < uint64(n) {
		time.Sleep(time.Millisecond) // Stats reads the file: polling it harder takes CPU from the run it times
	}
	elapsed, cpu := time.Since(start), cpuTime()-cpu
	stop()
	if err := <-errc; err != nil {
		return 0, 0, err
	}
	return float64(n) / elapsed.Seconds(), cpu, nil
}

// baselineRun calls Invoke n times from inflight goroutines.
func baselineRun(client *lambda.Client, n, inflight int) (float64, time.Duration, error) {
	runtime.GC()
	cpu := cpuTime()
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range inflight {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				_, err := client.Invoke(context.Background(), &lambda.InvokeInput{
					FunctionName: aws.String("bench"), InvocationType: types.InvocationTypeEvent, Payload: payload,
				})
				if err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), cpuTime()-cpu
	if err, _ := failed.Load().(error); err != nil {
		return 0, 0, err
	}
	return float64(n) / elapsed.Seconds(), cpu, nil
}

// cpuTime is the user and system CPU time of the whole process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		log.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
