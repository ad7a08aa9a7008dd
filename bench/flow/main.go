// Command flow measures per-function flow control in alternating pairs, so
// that each ratio compares two runs made moments apart on a noisy machine:
//
//   - noisy neighbour: the time to deliver n events of a healthy function
//     beside a function that always answers 429 (n events of its own, the
//     default retry policy), over the same delivery alone;
//   - fairness: the time to deliver m events of function B enqueued after
//     a backlog of k events of function A, over B's m events alone.
//
// It prints every pair and the median ratios.
//
//	go run ./bench/flow                     # 5 rounds, n 5,000, k 50,000, m 2,000
//	go run ./bench/flow -rounds 3 -n 2000 -k 20000 -m 1000
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/lambdatest"
)

func main() {
	rounds := flag.Int("rounds", 5, "alternating rounds")
	n := flag.Int("n", 5000, "events of the healthy function (noisy neighbour)")
	k := flag.Int("k", 50_000, "backlog of function A (fairness)")
	m := flag.Int("m", 2000, "events of function B after the backlog (fairness)")
	inflight := flag.Int("inflight", 64, "invocations in flight")
	flag.Parse()
	dir, err := os.MkdirTemp("", "flow")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	file := 0
	path := func() string { file++; return filepath.Join(dir, fmt.Sprint(file, ".db")) }

	var noisy, fair []float64
	fmt.Printf("%-6s %12s %12s %7s   %12s %12s %7s\n", "round", "healthy", "beside 429", "ratio", "B alone", "B after A", "ratio")
	for r := range *rounds {
		alone := timeDelivery(path(), *inflight, map[string]int{"healthy": *n}, nil, "healthy")
		beside := timeDelivery(path(), *inflight, map[string]int{"throttled": *n, "healthy": *n}, []string{"throttled"}, "healthy")
		bAlone := timeDelivery(path(), *inflight, map[string]int{"b": *m}, nil, "b")
		bAfter := timeDelivery(path(), *inflight, map[string]int{"a": *k, "b": *m}, nil, "b")
		noisy, fair = append(noisy, beside.Seconds()/alone.Seconds()), append(fair, bAfter.Seconds()/bAlone.Seconds())
		fmt.Printf("%-6d %12v %12v %7.2f   %12v %12v %7.2f\n", r+1, alone.Round(time.Millisecond), beside.Round(time.Millisecond),
			noisy[r], bAlone.Round(time.Millisecond), bAfter.Round(time.Millisecond), fair[r])
	}
	slices.Sort(noisy)
	slices.Sort(fair)
	fmt.Printf("noisy neighbour: median ratio %.2f (min %.2f, max %.2f)\n", noisy[len(noisy)/2], noisy[0], noisy[len(noisy)-1])
	fmt.Printf("fairness:        median ratio %.2f (min %.2f, max %.2f)\n", fair[len(fair)/2], fair[0], fair[len(fair)-1])
}

// timeDelivery enqueues counts[f] events for each function f, in the
// order of fill (the backlog first), then times Run from its start until
// every event of watch has reached Lambda. Functions in throttled answer
// 429 to every invocation.
func timeDelivery(path string, inflight int, counts map[string]int, throttled []string, watch string) time.Duration {
	srv := lambdatest.NewServer(lambdatest.WithRecordLimit(-1))
	defer srv.Close()
	for f := range counts {
		srv.Register(f, lambdatest.OK())
	}
	for _, f := range throttled {
		srv.Fail(f, lambdatest.Throttle(0, 0))
	}
	d, err := dispatcher.Open(path, dispatcher.WithLambda(srv.Client()), dispatcher.WithConcurrency(inflight))
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()
	order := []string{"throttled", "a", "healthy", "b"}
	for _, f := range order {
		fill(d, f, counts[f])
	}
	ctx, stop := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	start := time.Now()
	go func() { errc <- d.Run(ctx) }()
	if err := srv.WaitCount(context.Background(), watch, counts[watch]); err != nil {
		log.Fatal(err)
	}
	elapsed := time.Since(start)
	stop()
	if err := <-errc; err != nil {
		log.Fatal(err)
	}
	return elapsed
}

func fill(d *dispatcher.Dispatcher, function string, n int) {
	batch := make([]dispatcher.Event, 0, 1000)
	for i := range n {
		batch = append(batch, dispatcher.Event{Function: function, Payload: []byte(`{}`)})
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := d.EnqueueBatch(context.Background(), batch); err != nil {
				log.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}
