package dispatcher_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/idempotency/dynamo"
	"github.com/lambdadispatch/dispatcher/lambdatest"
)

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "dispatcher-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	d, err := dispatcher.Open(filepath.Join(dir, "events.db"), dispatcher.WithMaxEvents(100_000))
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()

	// A second dispatcher on the same file is refused rather than left waiting.
	_, err = dispatcher.Open(filepath.Join(dir, "events.db"))
	fmt.Println(err != nil)
	// Output: true
}

func ExampleDispatcher_Enqueue() {
	dir, err := os.MkdirTemp("", "dispatcher-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	d, err := dispatcher.Open(filepath.Join(dir, "events.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()

	ctx := context.Background()
	r, err := d.Enqueue(ctx, dispatcher.Event{
		Function: "arn:aws:lambda:eu-west-1:123456789012:function:orders:prod",
		Payload:  []byte(`{"order":"o-42","total":1999}`),
		Key:      "order-o-42",
	})
	if err != nil {
		log.Fatal(err)
	}
	// Enqueue returned, so the event is on disk.
	fmt.Println("queued", r.ID, "duplicate:", r.Duplicate)

	_, err = d.Enqueue(ctx, dispatcher.Event{Function: "orders", Payload: []byte(`{"order":`)})
	var ve *dispatcher.ValidationError
	if errors.As(err, &ve) {
		fmt.Println("refused:", ve.Field)
	}
	fmt.Println("ready:", d.Stats().Ready)
	// Output:
	// queued 1 duplicate: false
	// refused: Payload
	// ready: 1
}

func ExampleDispatcher_EnqueueBatch() {
	dir, err := os.MkdirTemp("", "dispatcher-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	d, err := dispatcher.Open(filepath.Join(dir, "events.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()

	rs, err := d.EnqueueBatch(context.Background(), []dispatcher.Event{
		{Function: "thumbnails", Payload: []byte(`{"image":"a.png"}`)},
		{Function: "thumbnails", Payload: []byte(`{"image":"b.png"}`)},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(rs), "queued in one commit")
	// Output: 2 queued in one commit
}

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

// Every machine of a service opens its own file with the same table: a key
// enqueued on any of them is a duplicate on all. (Compiled, not run: it
// needs AWS credentials and a region.)
func ExampleWithSharedKeys() {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		log.Fatal(err)
	}
	db := dynamodb.NewFromConfig(cfg)
	// Once, at deploy time; on a table that exists it only checks it.
	if err := dynamo.CreateTable(ctx, db, "dispatch-keys"); err != nil && !errors.Is(err, dynamo.ErrTTLNotEnabled) {
		log.Fatal(err)
	}
	keys, err := dynamo.New(db, "dispatch-keys")
	if err != nil {
		log.Fatal(err)
	}
	d, err := dispatcher.Open("events.db", dispatcher.WithLambda(lambda.NewFromConfig(cfg)), dispatcher.WithSharedKeys(keys))
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()

	r, err := d.Enqueue(ctx, dispatcher.Event{Function: "orders", Key: "order-42", Payload: []byte(`{"order":42}`)})
	switch {
	case errors.Is(err, dispatcher.ErrKeysUnavailable):
		// DynamoDB throttled or unreachable: nothing was queued; retry later.
	case err != nil:
		log.Fatal(err)
	case r.Duplicate:
		fmt.Println("order-42 is already queued, here or on another machine, as", r.ID)
	}
}
