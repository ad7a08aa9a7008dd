package dispatcher_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/lambdadispatch/dispatcher"
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
