//go:build linux

// Command peers measures durable enqueue, one producer and many, against
// the store without its write-ahead log and against dque (one fsync'd
// append per item), in alternating rounds on the same disk, and the bytes
// written per event from enqueue to ack, read from /proc/self/io. It is a
// module of its own so that dque is no dependency of the library.
//
// Each subject first enqueues and delivers -warm events (in four rounds,
// unmeasured), as a queue that has run a while has: the log's segments
// are then reused rather than new (a new segment's blocks are unwritten
// extents, whose first writes cost the file system a journal commit), and
// the files have their free pages. -warm 0 measures from a fresh
// directory. -phases prints where the dispatcher's bytes go.
//
//	cd bench/peers && go run .                  # 5 rounds
//	cd bench/peers && go run . -rounds 3 -n1 2000 -n64 40000
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/joncrlsn/dque"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/lambdatest"
)

var (
	phases = flag.Bool("phases", false, "print each dispatcher run's bytes per event by phase: enqueue, drain, close")
	warm   = flag.Int("warm", 24000, "events each subject enqueues and delivers, in four rounds, before it is measured (0: measure from a fresh directory)")
)

// payload is a 1 KiB JSON event, as in issue 16's figures.
var payload = []byte(`{"order":"o-000042","pad":"` + strings.Repeat("x", 1024-29) + `"}`)

type result struct {
	perSec float64 // enqueues a second, durable on return
	bytes  float64 // written per event, enqueue to ack (/proc/self/io)
	dev    float64 // written to the disk per event, its journal and every process included
}

type subject struct {
	name string
	run  func(dir string, producers, n int) (result, error)
}

func main() {
	rounds := flag.Int("rounds", 5, "alternating rounds")
	n1 := flag.Int("n1", 3000, "events at 1 producer")
	n64 := flag.Int("n64", 40000, "events at 64 producers")
	flag.Parse()
	srv := lambdatest.NewServer(lambdatest.WithRecordLimit(-1))
	defer srv.Close()
	srv.Register("bench", lambdatest.OK())
	subjects := []subject{
		{"dispatcher (log)", func(dir string, p, n int) (result, error) { return dispatch(dir, p, n, srv) }},
		{"dispatcher (no log)", func(dir string, p, n int) (result, error) {
			return dispatch(dir, p, n, srv, dispatcher.WithoutWriteAheadLog())
		}},
		{"dque", runDque},
	}
	dir, err := os.MkdirTemp(".", "peers-tmp-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	for _, producers := range []int{1, 64} {
		n := *n1
		if producers == 64 {
			n = *n64
		}
		got := map[string][]result{}
		for r := range *rounds {
			// Alternate the order, so that no subject always runs on a
			// disk the one before it left busy.
			order := slices.Clone(subjects)
			if r%2 == 1 {
				slices.Reverse(order)
			}
			for i, s := range order {
				res, err := s.run(filepath.Join(dir, fmt.Sprint(producers, "-", r, "-", i)), producers, n)
				if err != nil {
					log.Fatalf("%s: %v", s.name, err)
				}
				got[s.name] = append(got[s.name], res)
			}
		}
		fmt.Printf("\n%d producer(s), %d events of 1 KiB, %d rounds (median, min–max):\n", producers, n, *rounds)
		fmt.Printf("%-22s %24s %30s %30s\n", "", "enqueues/s", "bytes written/event, to ack", "disk bytes/event (whole disk)")
		for _, s := range subjects {
			rs := got[s.name]
			fmt.Printf("%-22s %24s %30s %30s\n", s.name, spread(rs, func(r result) float64 { return r.perSec }, "%.0f"),
				spread(rs, func(r result) float64 { return r.bytes }, "%.0f"),
				spread(rs, func(r result) float64 { return r.dev }, "%.0f"))
		}
		logR := got["dispatcher (log)"]
		for _, other := range []string{"dispatcher (no log)", "dque"} {
			var ratios []float64
			for i, r := range logR {
				ratios = append(ratios, r.perSec/got[other][i].perSec)
			}
			fmt.Printf("paired enqueues/s ratio, log ÷ %-20s %s\n", other+":", spreadOf(ratios, "%.2f"))
		}
	}
}

// spread formats the median and range of f over rs.
func spread(rs []result, f func(result) float64, format string) string {
	var v []float64
	for _, r := range rs {
		v = append(v, f(r))
	}
	return spreadOf(v, format)
}

func spreadOf(v []float64, format string) string {
	slices.Sort(v)
	return fmt.Sprintf(format+" ("+format+"–"+format+")", v[len(v)/2], v[0], v[len(v)-1])
}

// writeBytes reads write_bytes from /proc/self/io: the bytes this process
// caused to be sent to the storage layer.
func writeBytes() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		log.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				log.Fatal(err)
			}
			return n
		}
	}
	log.Fatal("no write_bytes in /proc/self/io")
	return 0
}

// devBytes reads the bytes written to the disk holding dir, from the
// sectors-written field of its /sys/dev/block/MAJ:MIN/stat: what the
// device was asked to write, the file system's journal and every other
// process included. It is only meaningful on a quiet machine.
func devBytes(dir string) int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		log.Fatal(err)
	}
	major, minor := (st.Dev>>8)&0xfff|(st.Dev>>32)&^0xfff, st.Dev&0xff|(st.Dev>>12)&^0xff
	b, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/stat", major, minor))
	if err != nil {
		log.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) < 7 {
		log.Fatalf("/sys/dev/block/%d:%d/stat: %q", major, minor, b)
	}
	sectors, err := strconv.ParseInt(f[6], 10, 64)
	if err != nil {
		log.Fatal(err)
	}
	return sectors * 512
}

// produce calls enqueue n times from producers goroutines and returns the
// time it took.
func produce(producers, n int, enqueue func() error) (time.Duration, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	start := time.Now()
	for range producers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if err := enqueue(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	select {
	case err := <-errs:
		return 0, err
	default:
		return took, nil
	}
}

// dispatch enqueues n events, then runs the dispatcher until all are
// acked, and closes it: the bytes are those of the whole life of the
// events, the log's checkpoints and the acks included.
func dispatch(dir string, producers, n int, srv *lambdatest.Server, opts ...dispatcher.Option) (result, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return result{}, err
	}
	d, err := dispatcher.Open(filepath.Join(dir, "q.db"), append([]dispatcher.Option{dispatcher.WithLambda(srv.Client()), dispatcher.WithConcurrency(64)}, opts...)...)
	if err != nil {
		return result{}, err
	}
	ctx := context.Background()
	// The warm-up stands for a dispatcher that has run a while: its log
	// has filled and recycled segments, and its file has free pages.
	for range 4 {
		if *warm == 0 {
			break
		}
		if _, err := produce(64, *warm/4, func() error {
			_, err := d.Enqueue(ctx, dispatcher.Event{Function: "bench", Payload: payload})
			return err
		}); err != nil {
			return result{}, err
		}
		if err := drain(ctx, d); err != nil {
			return result{}, err
		}
	}
	before, devBefore, stBefore := writeBytes(), devBytes(dir), d.Stats()
	took, err := produce(producers, n, func() error {
		_, err := d.Enqueue(ctx, dispatcher.Event{Function: "bench", Payload: payload})
		return err
	})
	if err != nil {
		return result{}, err
	}
	afterEnqueue := writeBytes()
	st0 := d.Stats()
	if err := drain(ctx, d); err != nil {
		return result{}, err
	}
	afterDrain := writeBytes()
	st1 := d.Stats()
	if err := d.Close(); err != nil {
		return result{}, err
	}
	end := writeBytes()
	if *phases {
		fmt.Printf("  phases %d producers: enqueue %.0f, drain %.0f, close %.0f bytes/event\n", producers,
			float64(afterEnqueue-before)/float64(n), float64(afterDrain-afterEnqueue)/float64(n), float64(end-afterDrain)/float64(n))
		fmt.Printf("  commits: enqueue %d, drain %d\n", st0.Commits-stBefore.Commits, st1.Commits-st0.Commits)
	}
	return result{perSec: float64(n) / took.Seconds(), bytes: float64(end-before) / float64(n), dev: float64(devBytes(dir)-devBefore) / float64(n)}, nil
}

// drain runs d until every event is delivered.
func drain(ctx context.Context, d *dispatcher.Dispatcher) error {
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	if err := d.WaitDrained(ctx); err != nil {
		return err
	}
	stop()
	return <-done
}

// runDque enqueues n events into a dque (not in turbo mode: each Enqueue
// syncs its segment file), then dequeues them all.
func runDque(dir string, producers, n int) (result, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return result{}, err
	}
	q, err := dque.NewOrOpen("q", dir, 10000, func() any { return &item{} })
	if err != nil {
		return result{}, err
	}
	for range 4 {
		if *warm == 0 {
			break
		}
		if _, err := produce(64, *warm/4, func() error { return q.Enqueue(&item{Payload: payload}) }); err != nil {
			return result{}, err
		}
		for range *warm / 4 {
			if _, err := q.Dequeue(); err != nil {
				return result{}, err
			}
		}
	}
	before, devBefore := writeBytes(), devBytes(dir)
	took, err := produce(producers, n, func() error { return q.Enqueue(&item{Payload: payload}) })
	if err != nil {
		return result{}, err
	}
	for range n {
		if _, err := q.Dequeue(); err != nil {
			return result{}, err
		}
	}
	if err := q.Close(); err != nil {
		return result{}, err
	}
	return result{perSec: float64(n) / took.Seconds(), bytes: float64(writeBytes()-before) / float64(n), dev: float64(devBytes(dir)-devBefore) / float64(n)}, nil
}

type item struct{ Payload []byte }
