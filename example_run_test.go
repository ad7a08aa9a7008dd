package dispatcher_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/lambdatest"
)

func ExampleDispatcher_Run() {
	// A Lambda endpoint in this process; with AWS, pass lambda.NewFromConfig(cfg).
	srv := lambdatest.NewServer()
	defer srv.Close()
	srv.Register("orders", lambdatest.OK())

	dir, err := os.MkdirTemp("", "dispatcher-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	d, err := dispatcher.Open(filepath.Join(dir, "events.db"), dispatcher.WithLambda(srv.Client()))
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	if err := d.Check(ctx, "orders"); err != nil { // a DryRun: fail fast on a wrong name
		log.Fatal(err)
	}
	for i := range 3 {
		if _, err := d.Enqueue(ctx, dispatcher.Event{Function: "orders", Payload: fmt.Appendf(nil, `{"order":%d}`, i)}); err != nil {
			log.Fatal(err)
		}
	}

	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	for d.Stats().Delivered < 3 {
		time.Sleep(time.Millisecond)
	}
	stop() // Run drains what is in flight and returns
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	fmt.Println("delivered:", d.Stats().Delivered, "invocations:", srv.Count("orders")-1)
	// Output: delivered: 3 invocations: 3
}
