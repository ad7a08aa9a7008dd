// Command edge-offline shows an edge device that keeps taking sensor readings
// while its link to Lambda is down. Readings are enqueued at a steady pace
// into a queue capped on disk (WithMaxEvents); the in-process Lambda endpoint
// (lambdatest) goes offline after -offline-at readings and comes back
// -offline-for readings later. Run keeps running throughout: while the
// endpoint is unreachable it pauses without spending attempts, and once the
// endpoint is back it drains the backlog.
//
// Every tenth reading is an alarm, sent with a higher Priority. With
// WithFullPolicy(DropOldest), the default here, a full buffer makes room by
// evicting the oldest telemetry: the alarms survive the outage, the newest
// readings are kept, and the eviction ledger names every reading dropped.
// With -policy reject, readings past the cap are refused with ErrQueueFull
// instead, alarms included, and the device counts them.
//
//	go run ./examples/edge-offline                        # offline, a few seconds
//	go run ./examples/edge-offline -policy reject
//	go run ./examples/edge-offline -readings 20000 -offline-for 15000 -max-events 10000 -every 5ms
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/lambdatest"
	"github.com/lambdadispatch/dispatcher/retry"
)

type settings struct {
	readings   int           // readings taken in all
	every      time.Duration // pace of the sensor
	offlineAt  int           // reading at which the link goes down
	offlineFor int           // readings taken while it is down
	maxEvents  int           // the disk cap
	policy     string        // drop-oldest or reject
}

func main() {
	var c settings
	flag.IntVar(&c.readings, "readings", 1800, "readings to take")
	flag.DurationVar(&c.every, "every", time.Millisecond, "time between readings")
	flag.IntVar(&c.offlineAt, "offline-at", 300, "take the endpoint offline after this many readings")
	flag.IntVar(&c.offlineFor, "offline-for", 1200, "readings taken while the endpoint is offline")
	flag.IntVar(&c.maxEvents, "max-events", 1000, "most readings held on disk (WithMaxEvents)")
	flag.StringVar(&c.policy, "policy", "drop-oldest", "when full: drop-oldest (evict the oldest telemetry) or reject")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, c); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, out io.Writer, c settings) error {
	srv := lambdatest.NewServer(lambdatest.WithRecordLimit(-1))
	defer srv.Close()
	srv.Register("ingest", lambdatest.OK())
	srv.Register("alarms", lambdatest.OK())
	full := dispatcher.DropOldest
	switch c.policy {
	case "drop-oldest":
	case "reject":
		full = dispatcher.Reject
	default:
		return fmt.Errorf("-policy %q: want drop-oldest or reject", c.policy)
	}

	dir, err := os.MkdirTemp("", "edge-offline")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	policy := retry.DefaultPolicy()
	policy.InitialInterval = 20 * time.Millisecond
	policy.MaxInterval = 200 * time.Millisecond
	policy.ProbeInterval = 20 * time.Millisecond // probe often, so dispatch resumes soon after the link is back
	policy.MaxProbeInterval = 100 * time.Millisecond
	d, err := dispatcher.Open(filepath.Join(dir, "events.db"),
		dispatcher.WithLambda(srv.Client()),
		dispatcher.WithRetryPolicy(policy),
		dispatcher.WithMaxEvents(int64(c.maxEvents)),
		dispatcher.WithFullPolicy(full),
	)
	if err != nil {
		return err
	}
	defer d.Close()

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	errc := make(chan error, 1)
	go func() { errc <- d.Run(runCtx) }()

	var (
		accepted, refused int
		alarms            int   // alarms enqueued
		peak              int64 // most readings buffered while offline
		paused            bool  // whether Run noticed the outage
		backlog           int64 // readings buffered when the link came back
		deliveredAtOnline uint64
		reconnected       time.Time
	)
	start := time.Now()
	tick := time.NewTicker(c.every)
	defer tick.Stop()
	for i := range c.readings {
		switch i {
		case c.offlineAt:
			srv.Offline()
			fmt.Fprintf(out, "reading %d: endpoint offline\n", i)
		case c.offlineAt + c.offlineFor:
			st := d.Stats()
			backlog, deliveredAtOnline, reconnected = st.Queued(), st.Delivered, time.Now()
			if err := srv.Online(); err != nil {
				return err
			}
			fmt.Fprintf(out, "reading %d: endpoint online, %d readings buffered\n", i, backlog)
		}
		ev := dispatcher.Event{
			Function: "ingest",
			Payload:  fmt.Appendf(nil, `{"sensor":"sensor-1","n":%d,"celsius":%.1f}`, i, 20+float64(i%50)/10),
			Key:      fmt.Sprintf("sensor-1/%d", i),
		}
		alarm := i%10 == 0
		if alarm {
			ev.Function, ev.Priority = "alarms", 2
		}
		_, err := d.Enqueue(ctx, ev)
		switch {
		case errors.Is(err, dispatcher.ErrQueueFull):
			refused++ // a real device might thin its readings out here
		case err != nil:
			return err
		default:
			accepted++
			if alarm {
				alarms++
			}
		}
		if i >= c.offlineAt && i < c.offlineAt+c.offlineFor {
			st := d.Stats()
			peak = max(peak, st.Queued())
			paused = paused || st.Paused
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if c.offlineAt+c.offlineFor >= c.readings { // the link was still down at the end
		backlog, deliveredAtOnline, reconnected = d.Stats().Queued(), d.Stats().Delivered, time.Now()
		if err := srv.Online(); err != nil {
			return err
		}
	}

	// Wait for every accepted reading to be settled, and time the drain of
	// the backlog: the queue is first in, first out, so the backlog is
	// drained once that many more readings are delivered.
	var drained time.Duration
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for {
		st := d.Stats()
		if drained == 0 && st.Delivered >= deliveredAtOnline+uint64(backlog) {
			drained = time.Since(reconnected)
		}
		if st.Queued() == 0 && st.Delivered+st.DeadLettered+st.Evicted >= uint64(accepted) {
			break
		}
		select {
		case <-poll.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	elapsed := time.Since(start)
	stopRun()
	if err := <-errc; err != nil {
		return err
	}

	st := d.Stats()
	ledger := 0
	for _, err := range d.Events().AllEvictions(ctx) {
		if err != nil {
			return err
		}
		ledger++
	}
	alarmsSent, err := d.Functions().Get("alarms")
	if err != nil {
		return err
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "  %-24s %d\n", "readings", c.readings)
	fmt.Fprintf(out, "  %-24s %d\n", "enqueued", accepted)
	fmt.Fprintf(out, "  %-24s %d\n", "refused (queue full)", refused)
	fmt.Fprintf(out, "  %-24s %d\n", "evicted (drop oldest)", st.Evicted)
	fmt.Fprintf(out, "  %-24s %d\n", "eviction ledger", ledger)
	fmt.Fprintf(out, "  %-24s %d\n", "alarms enqueued", alarms)
	fmt.Fprintf(out, "  %-24s %d\n", "alarms delivered", alarmsSent.Delivered)
	fmt.Fprintf(out, "  %-24s %d (cap %d)\n", "peak buffered offline", peak, c.maxEvents)
	fmt.Fprintf(out, "  %-24s %v\n", "paused while offline", paused)
	fmt.Fprintf(out, "  %-24s %d in %v\n", "drained after reconnect", backlog, drained.Round(time.Millisecond))
	fmt.Fprintf(out, "  %-24s %d\n", "delivered", st.Delivered)
	fmt.Fprintf(out, "  %-24s %d\n", "dead-lettered", st.DeadLettered)
	fmt.Fprintf(out, "  %-24s %v\n", "elapsed", elapsed.Round(time.Millisecond))
	return nil
}
