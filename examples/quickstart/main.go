// Command quickstart opens a queue in a temporary file, enqueues events
// from several producers at once, and prints what the queue holds.
//
//	go run ./examples/quickstart
//
// It needs no AWS account and no network. Sending to Lambda comes with the
// dispatcher's workers (Run); this program shows the producer side: durable,
// group-committed enqueues.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/lambdadispatch/dispatcher"
)

func main() {
	n := flag.Int("n", 5000, "events to enqueue")
	producers := flag.Int("producers", 16, "concurrent producers")
	path := flag.String("db", "", "queue file (default: a temporary file, removed at exit)")
	flag.Parse()
	if err := run(*n, *producers, *path); err != nil {
		log.Fatal(err)
	}
}

func run(n, producers int, path string) error {
	if path == "" {
		dir, err := os.MkdirTemp("", "quickstart")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		path = filepath.Join(dir, "events.db")
	}
	d, err := dispatcher.Open(path)
	if err != nil {
		return err
	}
	defer d.Close()

	ctx := context.Background()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for p := range producers {
		wg.Go(func() {
			for i := p; i < n; i += producers {
				_, err := d.Enqueue(ctx, dispatcher.Event{
					Function: "quickstart-orders",
					Payload:  fmt.Appendf(nil, `{"order":%d,"producer":%d}`, i, p),
					Key:      fmt.Sprintf("order-%d", i),
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	elapsed := time.Since(start)
	st := d.Stats()
	fmt.Printf("queue file        %s\n", path)
	fmt.Printf("enqueued          %d events from %d producers in %v\n", st.Enqueued, producers, elapsed.Round(time.Millisecond))
	fmt.Printf("throughput        %.0f events/s, each fsync'd before its Enqueue returned\n", float64(st.Enqueued)/elapsed.Seconds())
	fmt.Printf("commits           %d (%.1f events per fsync: group commit)\n", st.Commits, float64(st.Enqueued)/float64(max(st.Commits, 1)))
	fmt.Printf("ready             %d\n", st.Ready)
	fmt.Printf("bytes held        %d\n", st.Bytes)
	return nil
}
