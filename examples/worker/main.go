// Command worker shows the dispatcher inside a monolith's HTTP service: a
// handler for POST /orders enqueues each order for the "orders" Lambda
// function, the dispatcher sends them in the background, and the admin
// handler is served on a second, loopback-only port.
//
//	go run ./examples/worker                      # serve, against an in-process Lambda endpoint
//	go run ./examples/worker -demo 500            # post 500 orders to itself, wait, summarise, exit
//	go run ./examples/worker -endpoint http://host:port -function my-fn
//
//	curl -i -d '{"id":"42","total":9.5}' http://ADDR/orders
//	curl http://ADMIN/stats
//	curl http://ADMIN/metrics                     # the dispatcher's metrics for Prometheus
//	open http://ADMIN/                            # the dashboard, in a browser
//
// SIGINT or SIGTERM shuts it down gracefully: the HTTP servers stop
// accepting and finish the requests in flight, Run is cancelled and drains,
// and the queue's file is closed.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/lambdatest"
	"github.com/lambdadispatch/dispatcher/otelmetrics"
	"github.com/lambdadispatch/dispatcher/retry"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		log.Fatal(err)
	}
}

type settings struct {
	addr, admin string
	path        string
	endpoint    string
	function    string
	demo        int
	shutdown    time.Duration
}

func parseFlags(args []string) (settings, error) {
	var c settings
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:0", "address of the orders API")
	fs.StringVar(&c.admin, "admin", "127.0.0.1:0", "address of the admin API (loopback only)")
	fs.StringVar(&c.path, "db", "", "queue file (default: a temporary file, removed at exit)")
	fs.StringVar(&c.endpoint, "endpoint", os.Getenv("AWS_ENDPOINT_URL_LAMBDA"), "send to this Lambda endpoint instead of the in-process one")
	fs.StringVar(&c.function, "function", "orders", "function the orders are sent to")
	fs.IntVar(&c.demo, "demo", 0, "post this many orders to itself (20% with repeated ids), wait for delivery, print a summary and exit")
	fs.DurationVar(&c.shutdown, "shutdown-timeout", 10*time.Second, "how long in-flight HTTP requests may take at shutdown")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := loopbackOnly(c.admin); err != nil {
		return c, err
	}
	return c, nil
}

// loopbackOnly refuses an admin address that is reachable from elsewhere:
// the admin API can redrive and purge, and has no authentication here.
func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-admin: %w", err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-admin %s: must be a loopback address such as 127.0.0.1", addr)
	}
	return nil
}

// run is the whole program: it returns when ctx ends (after a graceful
// shutdown), when the demo is done, or when something fails.
func run(ctx context.Context, args []string, out io.Writer) (err error) {
	c, err := parseFlags(args)
	if err != nil {
		return err
	}

	client, cleanup := lambdaTarget(c)
	defer cleanup() // last: the dispatcher is closed by then

	if c.path == "" {
		dir, err := os.MkdirTemp("", "worker")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		c.path = filepath.Join(dir, "events.db")
	}
	policy := retry.DefaultPolicy()
	policy.InitialInterval = 50 * time.Millisecond
	policy.MaxInterval = time.Second
	metrics, promHandler, err := prometheusMetrics()
	if err != nil {
		return err
	}
	d, err := dispatcher.Open(c.path, dispatcher.WithLambda(client), dispatcher.WithRetryPolicy(policy), dispatcher.WithMetrics(metrics))
	if err != nil {
		return err
	}
	closed := false
	defer func() {
		if !closed {
			_ = d.Close()
		}
	}()

	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return err
	}
	adminLn, err := net.Listen("tcp", c.admin)
	if err != nil {
		ln.Close()
		return err
	}
	api := &http.Server{Handler: ordersAPI(d, c.function), ReadHeaderTimeout: 10 * time.Second}
	// The admin port also serves the metrics to Prometheus at /metrics.
	adminMux := http.NewServeMux()
	adminMux.Handle("/metrics", promHandler)
	adminMux.Handle("/", d.AdminHandler())
	admin := &http.Server{Handler: adminMux, ReadHeaderTimeout: 10 * time.Second}

	// Everything started below is stopped, in order, before run returns.
	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(runCtx) }()
	serveErr := make(chan error, 2)
	var serving sync.WaitGroup
	for _, s := range []struct {
		hs *http.Server
		ln net.Listener
	}{{api, ln}, {admin, adminLn}} {
		serving.Go(func() {
			if err := s.hs.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
				serveErr <- err
			}
		})
	}
	fmt.Fprintf(out, "listening on http://%s\n", ln.Addr())
	fmt.Fprintf(out, "admin on http://%s\n", adminLn.Addr())

	var cause error
	runDone := false
	if c.demo > 0 {
		cause = demo(ctx, d, "http://"+ln.Addr().String(), c.demo, out)
	} else {
		select {
		case <-ctx.Done():
			fmt.Fprintln(out, "shutting down")
		case cause = <-serveErr:
		case cause = <-runErr:
			runDone = true
			if cause == nil {
				cause = errors.New("dispatcher stopped")
			}
		}
	}

	// 1. Stop accepting HTTP and let requests in flight finish their Enqueue.
	sctx, cancel := context.WithTimeout(context.Background(), c.shutdown)
	defer cancel()
	errs := []error{cause, api.Shutdown(sctx), admin.Shutdown(sctx)}
	serving.Wait()
	// 2. Stop dispatching: Run drains the invocations in flight and returns
	// every lease it holds to the queue.
	stopRun()
	if !runDone {
		errs = append(errs, <-runErr)
	}
	// 3. Close the file.
	closed = true
	errs = append(errs, d.Close())
	return errors.Join(errs...)
}

// order is what POST /orders needs; the rest of the body is passed through.
type order struct {
	ID string `json:"id"`
}

type receipt struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"`
}

func ordersAPI(d *dispatcher.Dispatcher, function string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 2<<20))
		if err != nil {
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": err.Error()})
			return
		}
		var o order
		dec := json.NewDecoder(bytes.NewReader(body))
		if err := dec.Decode(&o); err != nil || dec.More() {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body must be one JSON object with an \"id\""})
			return
		}
		if o.ID == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "\"id\" is required"})
			return
		}
		rc, err := d.Enqueue(r.Context(), dispatcher.Event{Function: function, Key: "order-" + o.ID, Payload: body})
		var verr *dispatcher.ValidationError
		switch {
		case errors.As(err, &verr):
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": verr.Error(), "field": verr.Field})
		case errors.Is(err, dispatcher.ErrQueueFull):
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "queue full, retry later"})
		case err != nil:
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		default:
			writeJSON(w, http.StatusAccepted, receipt{ID: rc.ID, Duplicate: rc.Duplicate})
		}
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// demo posts n orders to the API at base from a few concurrent clients.
// Every fifth order repeats the id of the one before it, so 20% are
// duplicates. It then waits until the queue is empty and prints a summary.
func demo(ctx context.Context, d *dispatcher.Dispatcher, base string, n int, out io.Writer) error {
	tr := &http.Transport{MaxIdleConnsPerHost: 8}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	start := time.Now()
	var accepted, duplicates atomic.Int64
	next := make(chan int)
	errc := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range next {
				id := i
				if i%5 == 4 {
					id = i - 1
				}
				rc, err := postOrder(ctx, hc, base, fmt.Sprintf(`{"id":"%d","item":"widget","qty":%d}`, id, 1+i%3))
				if err != nil {
					errc <- err
					return
				}
				if rc.Duplicate {
					duplicates.Add(1)
				} else {
					accepted.Add(1)
				}
			}
		})
	}
	var err error
feed:
	for i := range n {
		select {
		case next <- i:
		case err = <-errc:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(next)
	wg.Wait()
	close(errc)
	if err == nil {
		err = <-errc
	}
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	fmt.Fprintf(out, "posted %d orders in %v\n", n, time.Since(start).Round(time.Millisecond))

	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for d.Stats().Queued() > 0 {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("demo: waiting for delivery: %w", ctx.Err())
		}
	}
	st := d.Stats()
	fmt.Fprintf(out, "accepted %d duplicates %d delivered %d dead-lettered %d elapsed %v\n",
		accepted.Load(), duplicates.Load(), st.Delivered, st.DeadLettered, time.Since(start).Round(time.Millisecond))
	if st.Delivered != uint64(accepted.Load()) {
		return fmt.Errorf("demo: delivered %d of %d accepted orders", st.Delivered, accepted.Load())
	}
	return nil
}

func postOrder(ctx context.Context, hc *http.Client, base, body string) (receipt, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/orders", bytes.NewBufferString(body))
	if err != nil {
		return receipt{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return receipt{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return receipt{}, fmt.Errorf("POST /orders: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	var rc receipt
	return rc, json.NewDecoder(resp.Body).Decode(&rc)
}

// lambdaTarget returns the client to send with, and what to release once the
// dispatcher is closed. Offline it starts lambdatest with "orders"
// (or -function) accepting every event.
func lambdaTarget(c settings) (dispatcher.LambdaInvoker, func()) {
	if c.endpoint != "" {
		tr := &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 64}
		client := lambda.New(lambda.Options{
			BaseEndpoint: aws.String(c.endpoint),
			Region:       "us-east-1",
			Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
			HTTPClient:   &http.Client{Transport: tr},
		})
		return client, tr.CloseIdleConnections
	}
	srv := lambdatest.NewServer(lambdatest.WithRecordLimit(-1))
	srv.Register(c.function, lambdatest.OK())
	return srv.Client(), srv.Close
}

// prometheusMetrics exposes the dispatcher's OpenTelemetry instruments to
// Prometheus: an OpenTelemetry MeterProvider whose reader is the Prometheus
// exporter, on a registry of its own, served by promhttp.
func prometheusMetrics() (*otelmetrics.Recorder, http.Handler, error) {
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, nil, err
	}
	rec, err := otelmetrics.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter)))
	if err != nil {
		return nil, nil, err
	}
	return rec, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), nil
}
