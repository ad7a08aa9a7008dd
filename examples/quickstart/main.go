// Command quickstart shows the dispatcher end to end: it opens a queue in a
// temporary file, starts an in-process Lambda endpoint (lambdatest) whose
// functions fail for a share of events, enqueues thousands of events,
// dispatches them with live progress, and ends with a table.
//
//	go run ./examples/quickstart                          # offline, no AWS account
//	go run ./examples/quickstart -endpoint http://host:port -function my-fn
//	go run ./examples/quickstart -aws -function my-fn     # real Lambda, default AWS config
//
// AWS_ENDPOINT_URL_LAMBDA, when set, is used as -endpoint.
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
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/lambdatest"
	"github.com/lambdadispatch/dispatcher/retry"
)

func main() {
	n := flag.Int("n", 5000, "events to enqueue")
	producers := flag.Int("producers", 16, "concurrent producers")
	path := flag.String("db", "", "queue file (default: a temporary file, removed at exit)")
	endpoint := flag.String("endpoint", os.Getenv("AWS_ENDPOINT_URL_LAMBDA"), "send to this Lambda endpoint instead of the in-process one")
	useAWS := flag.Bool("aws", false, "send to AWS Lambda with the default AWS configuration")
	function := flag.String("function", "", "function to invoke with -endpoint or -aws")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, settings{n: *n, producers: *producers, path: *path, endpoint: *endpoint, aws: *useAWS, function: *function}); err != nil {
		log.Fatal(err)
	}
}

type settings struct {
	n, producers int
	path         string
	endpoint     string
	aws          bool
	function     string
}

func run(ctx context.Context, out io.Writer, c settings) error {
	client, functions, cleanup, err := lambdaTarget(ctx, c)
	if err != nil {
		return err
	}
	defer cleanup()
	keep := c.path != ""
	if c.path == "" {
		dir, err := os.MkdirTemp("", "quickstart")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		c.path = filepath.Join(dir, "events.db")
	}
	policy := retry.DefaultPolicy()
	policy.InitialInterval = 20 * time.Millisecond // quick retries, so the demo ends in seconds
	policy.MaxInterval = 200 * time.Millisecond
	d, err := dispatcher.Open(c.path, dispatcher.WithLambda(client), dispatcher.WithRetryPolicy(policy), dispatcher.WithConcurrency(64))
	if err != nil {
		return err
	}
	defer d.Close()
	if c.endpoint == "" && !c.aws {
		fmt.Fprintln(out, "checking each function with a DryRun invoke. The demo's endpoint throttles one function, fails")
		fmt.Fprintln(out, "another and lacks a third, on purpose: those three checks fail below, and that is the demo:")
	}
	checked := map[string]bool{}
	for _, fn := range functions {
		if checked[fn] {
			continue
		}
		checked[fn] = true
		// A DryRun invocation: fail fast on a wrong name, region or permission.
		if err := d.Check(ctx, fn); err != nil {
			fmt.Fprintf(out, "check %-10s %v\n", fn, err)
		} else {
			fmt.Fprintf(out, "check %-10s ok\n", fn)
		}
	}

	start := time.Now()
	if err := enqueue(ctx, d, c, functions); err != nil {
		return err
	}
	enqueued := time.Since(start)
	fmt.Fprintf(out, "enqueued %d events in %v (%.0f/s, each fsync'd before Enqueue returned)\n",
		c.n, enqueued.Round(time.Millisecond), float64(c.n)/enqueued.Seconds())

	runCtx, stopRun := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- d.Run(runCtx) }()
	tty := isTerminal(out)
	tick := time.NewTicker(200 * time.Millisecond)
	for st := d.Stats(); st.Queued() > 0 && ctx.Err() == nil; st = d.Stats() {
		if tty {
			fmt.Fprintf(out, "\r  delivered %6d  retried %5d  dead-lettered %4d  queued %6d", st.Delivered, st.Retried, st.DeadLettered, st.Queued())
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	tick.Stop()
	elapsed := time.Since(start)
	stopRun()
	if err := <-errc; err != nil {
		return err
	}
	if tty {
		fmt.Fprintln(out)
	}
	st := d.Stats()
	fmt.Fprintln(out, "")
	fmt.Fprintf(out, "  %-28s %d\n", "delivered", st.Delivered)
	fmt.Fprintf(out, "  %-28s %d\n", "retried (rescheduled)", st.Retried)
	fmt.Fprintf(out, "  %-28s %d\n", "dead-lettered", st.DeadLettered)
	reasons := make([]string, 0, len(st.DeadLetteredBy))
	for r := range st.DeadLetteredBy {
		reasons = append(reasons, string(r))
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		fmt.Fprintf(out, "    %-26s %d\n", r, st.DeadLetteredBy[deadletter.Reason(r)])
	}
	fmt.Fprintf(out, "  %-28s %d\n", "left in queue", st.Queued())
	fmt.Fprintf(out, "  %-28s %v\n", "elapsed", elapsed.Round(time.Millisecond))
	fmt.Fprintf(out, "  %-28s %.0f\n", "events/s (enqueue+dispatch)", float64(c.n)/elapsed.Seconds())
	fmt.Fprintln(out)
	if keep {
		fmt.Fprintf(out, "the queue file is %s; look at its dead letters with\n  go run ./cmd/dispatchctl ls --state dead %s\n", c.path, c.path)
	} else {
		fmt.Fprintln(out, "run with -db events.db to keep the queue file, then look at it with go run ./cmd/dispatchctl stats events.db")
	}
	return nil
}

// enqueue spreads the events over the functions from several producers.
func enqueue(ctx context.Context, d *dispatcher.Dispatcher, c settings, functions []string) error {
	var wg sync.WaitGroup
	errs := make(chan error, c.producers)
	for p := range c.producers {
		wg.Go(func() {
			for i := p; i < c.n; i += c.producers {
				_, err := d.Enqueue(ctx, dispatcher.Event{
					Function: functions[i%len(functions)],
					Payload:  fmt.Appendf(nil, `{"order":%d}`, i),
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
	return <-errs
}

// lambdaTarget returns the client to send with and the functions to spread
// events over. Offline, it starts lambdatest with four functions: one that
// always accepts, one that throttles and fails for a while, one that always
// fails, and one that is missing, so that every outcome shows.
func lambdaTarget(ctx context.Context, c settings) (dispatcher.LambdaInvoker, []string, func(), error) {
	switch {
	case c.aws:
		if c.function == "" {
			return nil, nil, nil, fmt.Errorf("-aws needs -function")
		}
		cfg, err := config.LoadDefaultConfig(ctx)
		if err != nil {
			return nil, nil, nil, err
		}
		return lambda.NewFromConfig(cfg), []string{c.function}, func() {}, nil
	case c.endpoint != "":
		if c.function == "" {
			return nil, nil, nil, fmt.Errorf("-endpoint needs -function")
		}
		client := lambda.New(lambda.Options{
			BaseEndpoint: aws.String(c.endpoint),
			Region:       "us-east-1",
			Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		})
		return client, []string{c.function}, func() {}, nil
	}
	srv := lambdatest.NewServer(lambdatest.WithRecordLimit(-1))
	srv.Register("orders", lambdatest.OK())
	srv.Register("invoices", lambdatest.OK())
	srv.Fail("invoices", lambdatest.Throttle(c.n/20, 0))
	srv.Fail("invoices", lambdatest.ServerError(c.n/20))
	srv.Register("reports", lambdatest.OK())
	srv.Fail("reports", lambdatest.ServerError(0)) // fails for good: its retries run out
	// "refunds" is not registered: Lambda answers 404, a permanent error.
	fns := []string{"orders", "orders", "orders", "orders", "orders", "orders", "orders", "orders", "invoices", "invoices", "reports", "refunds"}
	return srv.Client(), fns, srv.Close, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
