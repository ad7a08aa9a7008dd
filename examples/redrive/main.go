// Command redrive shows the dead-letter round trip: a function that fails
// with 500 ServiceException on every call until it is fixed, so its events
// run out of retries and are dead-lettered; a look at the letters with
// DeadLetters().Find; the fix; and a redrive that delivers every one of them.
// It runs offline against an in-process Lambda endpoint (lambdatest).
//
//	go run ./examples/redrive
//	go run ./examples/redrive -n 200
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/lambdatest"
	"github.com/lambdadispatch/dispatcher/retry"
)

func main() {
	n := flag.Int("n", 10, "events to enqueue")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, *n); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, out io.Writer, n int) error {
	// "billing" is deployed but broken: every invocation answers 500.
	srv := lambdatest.NewServer()
	defer srv.Close()
	srv.Register("billing", lambdatest.OK())
	srv.Fail("billing", lambdatest.Error(0, 500, "ServiceException"))

	dir, err := os.MkdirTemp("", "redrive")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	policy := retry.DefaultPolicy() // three attempts in all
	policy.InitialInterval = 10 * time.Millisecond
	policy.MaxInterval = 50 * time.Millisecond
	d, err := dispatcher.Open(filepath.Join(dir, "events.db"),
		dispatcher.WithLambda(srv.Client()),
		dispatcher.WithRetryPolicy(policy),
	)
	if err != nil {
		return err
	}
	defer d.Close()

	for i := range n {
		_, err := d.Enqueue(ctx, dispatcher.Event{
			Function: "billing",
			Payload:  fmt.Appendf(nil, `{"invoice":%d}`, i),
			Key:      fmt.Sprintf("invoice-%d", i),
		})
		if err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "enqueued %d events for billing\n", n)

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	errc := make(chan error, 1)
	go func() { errc <- d.Run(runCtx) }()

	// 1. Every event runs out of retries and becomes a dead letter.
	if err := waitFor(ctx, d, func(st dispatcher.Stats) bool { return st.DeadLettered == uint64(n) }); err != nil {
		return err
	}
	fmt.Fprintf(out, "dead-lettered %d\n\n", n)

	// 2. Look at them, as someone on call would.
	filter := dispatcher.LetterFilter{Function: "billing", Reason: deadletter.RetriesExhausted}
	fmt.Fprintf(out, "  %-6s %-20s %-8s %s\n", "id", "reason", "attempts", "last error")
	for after := ""; ; {
		page, next, err := d.DeadLetters().Find(ctx, filter, after, 100)
		if err != nil {
			return err
		}
		for _, l := range page {
			fmt.Fprintf(out, "  %-6s %-20s %-8d %d %s\n", l.ID, l.Reason, l.Attempts, l.LastError.StatusCode, l.LastError.Code)
		}
		if next == "" {
			break
		}
		after = next
	}
	fmt.Fprintln(out)

	// 3. Fix the function, then send the letters again. Each goes back in
	// the queue as a new event, with fresh attempts and its key kept.
	srv.ClearFaults("billing")
	redriven, err := d.DeadLetters().RedriveMatching(ctx, filter, dispatcher.RedriveOptions{})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "fixed billing, redriven %d\n", redriven)

	// 4. Wait until they are delivered.
	if err := waitFor(ctx, d, func(st dispatcher.Stats) bool { return st.Delivered == uint64(redriven) && st.Queued() == 0 }); err != nil {
		return err
	}
	stopRun()
	if err := <-errc; err != nil {
		return err
	}
	left, err := d.DeadLetters().Count()
	if err != nil {
		return err
	}
	st := d.Stats()
	fmt.Fprintln(out)
	fmt.Fprintf(out, "  %-16s %d\n", "delivered", st.Delivered)
	fmt.Fprintf(out, "  %-16s %d\n", "dead-lettered", st.DeadLettered)
	fmt.Fprintf(out, "  %-16s %d\n", "redriven", redriven)
	fmt.Fprintf(out, "  %-16s %d\n", "letters left", left)
	fmt.Fprintf(out, "  %-16s %d\n", "invocations", srv.Count("billing"))
	return nil
}

// waitFor polls the dispatcher's stats until cond holds or ctx ends.
func waitFor(ctx context.Context, d *dispatcher.Dispatcher, cond func(dispatcher.Stats) bool) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond(d.Stats()) {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
