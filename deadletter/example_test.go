package deadletter_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/store"
)

// openExampleStore opens a queue file in a fresh directory; the returned
// function closes it and removes the directory.
func openExampleStore() (*store.Store, func()) {
	dir, err := os.MkdirTemp("", "deadletter-example")
	if err != nil {
		log.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "events.db"), store.Options{})
	if err != nil {
		log.Fatal(err)
	}
	return st, func() { st.Close(); os.RemoveAll(dir) }
}

// A SinkFunc turns a function into a Sink: here, one that logs the letter.
// Returning an error would keep the event queued for another try.
func ExampleSinkFunc() {
	var sink deadletter.Sink = deadletter.SinkFunc(func(ctx context.Context, l deadletter.Letter) error {
		fmt.Printf("event %s for %s: %s after %d attempts (%s, HTTP %d)\n",
			l.ID, l.Function, l.Reason, l.Attempts, l.LastError.Code, l.LastError.StatusCode)
		return nil
	})
	err := sink.Put(context.Background(), deadletter.Letter{
		ID: "42", Function: "orders", Payload: []byte(`{"order":42}`),
		Reason: deadletter.RetriesExhausted, Attempts: 3,
		LastError: deadletter.ErrorInfo{Code: "TooManyRequestsException", StatusCode: 429},
	})
	fmt.Println(err)
	// Output:
	// event 42 for orders: retries exhausted after 3 attempts (TooManyRequestsException, HTTP 429)
	// <nil>
}

// Bolt keeps letters in the queue's own file; Get reads one back.
func ExampleBolt() {
	st, done := openExampleStore()
	defer done()
	sink := deadletter.NewBolt(st)

	err := sink.Put(context.Background(), deadletter.Letter{
		ID: "7", Function: "orders", Qualifier: "live", Payload: []byte(`{"order":7}`),
		Reason: deadletter.Rejected, Attempts: 1,
		LastError: deadletter.ErrorInfo{
			Code: "ResourceNotFoundException", Message: "Function not found", StatusCode: 404, RequestID: "c0ffee",
		},
		DeadLettered: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
	})
	if err != nil {
		log.Fatal(err)
	}
	n, _ := sink.Count()
	l, err := sink.Get("7")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(n, "letter")
	fmt.Printf("%s %s:%s %s %s %s\n", l.ID, l.Function, l.Qualifier, l.Reason, l.LastError.Code, l.Payload)
	fmt.Println(l.DeadLettered)

	_, err = sink.Get("8")
	fmt.Println(errors.Is(err, deadletter.ErrNotFound), err)
	// Output:
	// 1 letter
	// 7 orders:live rejected ResourceNotFoundException {"order":7}
	// 2026-03-01 12:00:00 +0000 UTC
	// true deadletter: no such letter: 8
}

// PutTx writes the letter in the transaction that removes the event from
// the queue: both happen, or neither does.
func ExampleBolt_PutTx() {
	st, done := openExampleStore()
	defer done()
	sink := deadletter.NewBolt(st)
	ctx := context.Background()
	seqs, err := st.Enqueue(ctx, []store.NewEvent{{Function: "orders", Payload: []byte(`{"order":9}`)}})
	if err != nil {
		log.Fatal(err)
	}
	seq := seqs[0]

	giveUp := func(fail bool) error {
		// Remove runs move in the transaction that takes the event out.
		_, err := st.Remove(ctx, seq, func(tx *store.Tx, ev store.Event) error {
			err := sink.PutTx(tx, deadletter.Letter{
				ID: strconv.FormatUint(ev.Seq, 10), Function: ev.Function, Payload: ev.Payload,
				Reason: deadletter.EventAgeExceeded,
			})
			if err == nil && fail {
				err = errors.New("disk full")
			}
			return err // an error rolls back the letter, and the event stays
		})
		return err
	}
	state := func() {
		_, err := st.Get(seq)
		n, _ := sink.Count()
		fmt.Printf("queued: %t, letters: %d\n", err == nil, n)
	}

	fmt.Println(giveUp(true))
	state()
	fmt.Println(giveUp(false))
	state()
	// Output:
	// store: moving event 1: disk full
	// queued: true, letters: 0
	// <nil>
	// queued: false, letters: 1
}

// List pages through the letters in event order; pass the cursor it returns
// back in until it is empty.
func ExampleBolt_List() {
	st, done := openExampleStore()
	defer done()
	sink := deadletter.NewBolt(st)
	ctx := context.Background()
	for _, id := range []int{30, 10, 20, 50, 40} {
		l := deadletter.Letter{ID: strconv.Itoa(id), Function: "orders", Reason: deadletter.Rejected}
		if err := sink.Put(ctx, l); err != nil {
			log.Fatal(err)
		}
	}

	for cursor := ""; ; {
		page, next, err := sink.List(ctx, cursor, 2)
		if err != nil {
			log.Fatal(err)
		}
		for _, l := range page {
			fmt.Print(l.ID, " ")
		}
		fmt.Printf("| next %q\n", next)
		if next == "" {
			break
		}
		cursor = next
	}
	// Output:
	// 10 20 | next "20"
	// 30 40 | next "40"
	// 50 | next ""
}
