package dispatcher_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/lambdadispatch/dispatcher"
)

func ExampleEvents() {
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
	for i, fn := range []string{"orders", "emails", "orders"} {
		_, err := d.Enqueue(ctx, dispatcher.Event{Function: fn, Key: fmt.Sprintf("k-%d", i), Payload: []byte(`{"n":1}`)})
		if err != nil {
			log.Fatal(err)
		}
	}

	// Every queued event for one function, read in short transactions.
	for e, err := range d.Events().All(ctx, dispatcher.EventFilter{Function: "orders"}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(e.ID, e.State, e.Function, e.Key, e.Attempts)
	}

	// One event by id, payload included.
	e, err := d.Events().Get("2")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s %s %s\n", e.ID, e.Function, e.Payload)

	// A page at a time: pass next as after for the following page.
	page, next, err := d.Events().Find(ctx, dispatcher.EventFilter{State: dispatcher.StateReady}, "", 2)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(page), next)
	// Output:
	// 1 ready orders k-0 0
	// 3 ready orders k-2 0
	// 2 emails {"n":1}
	// 2 2
}
