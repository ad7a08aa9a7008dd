// Command sweep measures the cost of sweeping a million expired
// deduplication keys: the total time, and the longest single write
// transaction, which is how long the sweep can hold up an Enqueue.
//
//	go run ./bench/sweep            # 1,000,000 keys
//	go run ./bench/sweep -n 100000
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/store"
)

func main() {
	n := flag.Int("n", 1_000_000, "keys")
	batch := flag.Int("batch", 1000, "keys per sweep transaction")
	flag.Parse()
	dir, err := os.MkdirTemp("", "sweep")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	st, err := store.Open(filepath.Join(dir, "keys.db"), store.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	x := idempotency.New(st)
	now := time.Now()
	start := time.Now()
	for i := 0; i < *n; i += 10_000 {
		err := st.Update(context.Background(), func(tx *store.Tx) error {
			for j := i; j < min(i+10_000, *n); j++ {
				if err := x.Hold(tx, fmt.Sprintf("order-%08d", j), uint64(j+1), now, time.Duration(j+1)*time.Microsecond); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			log.Fatal(err)
		}
	}
	fill := time.Since(start)

	// Sweep one bounded transaction at a time, timing each.
	var longest time.Duration
	swept := 0
	start = time.Now()
	later := now.Add(time.Hour)
	for {
		t0 := time.Now()
		k, err := x.SweepOnce(later, *batch)
		if err != nil {
			log.Fatal(err)
		}
		longest = max(longest, time.Since(t0))
		swept += k
		if k < *batch {
			break
		}
	}
	total := time.Since(start)
	left, _ := x.Len()
	fmt.Printf("keys                        %d (filled in %v)\n", *n, fill.Round(time.Millisecond))
	fmt.Printf("sweep of all expired keys   %v (%.0f keys/s), %d left\n", total.Round(time.Millisecond), float64(swept)/total.Seconds(), left)
	fmt.Printf("longest sweep transaction   %v (batches of %d keys)\n", longest.Round(time.Microsecond), *batch)
}
