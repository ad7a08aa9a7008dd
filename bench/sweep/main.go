// Command sweep measures the cost of sweeping a million expired
// deduplication keys: the total time, and the longest single write
// transaction, which is how long the sweep can hold up an Enqueue.
//
//	go run ./bench/sweep            # 1,000,000 keys
//	go run ./bench/sweep -n 100000
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lambdadispatch/dispatcher/idempotency"
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
	db, err := bolt.Open(filepath.Join(dir, "keys.db"), 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	x := idempotency.New(db)
	now := time.Now()
	start := time.Now()
	for i := 0; i < *n; i += 10_000 {
		err := db.Update(func(tx *bolt.Tx) error {
			for j := i; j < min(i+10_000, *n); j++ {
				if _, _, err := x.Claim(tx, fmt.Sprintf("order-%08d", j), uint64(j+1), now, time.Duration(j+1)*time.Microsecond); err != nil {
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
