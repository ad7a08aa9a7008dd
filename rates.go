package dispatcher

import (
	"context"
	"sync"
	"time"

	"github.com/lambdadispatch/dispatcher/internal/wire"
)

// The admin handler's rates: a sample of the totals every rateInterval,
// ratePoints of them kept, so the dashboard shows the last 15 minutes
// even when nobody was looking during them. A sample is a few counters
// read under a lock, 90 of them about 4 KiB.
const (
	rateInterval = 10 * time.Second
	ratePoints   = 90
)

// rateSample is the totals at one moment, on the monotonic clock since
// Open: a wall clock stepped back or forward changes no rate.
type rateSample struct {
	at                                      time.Duration
	enqueued, delivered, deadLettered, retr uint64
}

type rateLog struct {
	start   time.Time
	mu      sync.Mutex
	samples []rateSample // oldest first, at most ratePoints+1
}

func (d *Dispatcher) rateSample() rateSample {
	s := d.Stats()
	return rateSample{at: time.Since(d.rates.start), enqueued: s.Enqueued, delivered: s.Delivered, deadLettered: s.DeadLettered, retr: s.Retried}
}

func (l *rateLog) add(s rateSample) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.samples) > ratePoints {
		l.samples = append(l.samples[:0], l.samples[1:]...)
	}
	l.samples = append(l.samples, s)
}

// rates returns the counts between each sample and the next, the last
// ending at now, oldest first.
func (l *rateLog) rates(now rateSample) wire.Rates {
	l.mu.Lock()
	samples := append(append([]rateSample(nil), l.samples...), now)
	l.mu.Unlock()
	r := wire.Rates{IntervalSeconds: int(rateInterval / time.Second), Points: []wire.Point{}}
	for i := 1; i < len(samples); i++ {
		a, b := samples[i-1], samples[i]
		r.Points = append(r.Points, wire.Point{
			AgeSeconds: int((now.at - b.at) / time.Second),
			Enqueued:   b.enqueued - a.enqueued, Delivered: b.delivered - a.delivered,
			DeadLettered: b.deadLettered - a.deadLettered, Retried: b.retr - a.retr,
		})
	}
	return r
}

// sampleRates samples the totals until ctx ends.
func (d *Dispatcher) sampleRates(ctx context.Context) {
	t := time.NewTicker(rateInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.rates.add(d.rateSample())
		}
	}
}
