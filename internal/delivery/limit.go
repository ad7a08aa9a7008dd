package delivery

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// aimd is the in-flight limit: halved on throttling, raised by one after a
// limit's worth of successes, like TCP's congestion window, so a burst
// backs off as a whole instead of hammering a function at its concurrency
// limit.
type aimd struct {
	mu      sync.Mutex
	limit   float64
	max     float64
	lastCut time.Time
	changed chan struct{} // closed when the whole-number limit changes
}

func newAIMD(max int) *aimd {
	return &aimd{limit: float64(max), max: float64(max), changed: make(chan struct{})}
}

func (a *aimd) current() int {
	n, _ := a.state()
	return n
}

// state returns the limit and a channel closed when it next changes.
func (a *aimd) state() (int, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return int(a.limit), a.changed
}

// set changes the limit, telling waiters when its whole part moves, and
// reports whether it did.
func (a *aimd) set(v float64) bool {
	moved := int(v) != int(a.limit)
	if moved {
		close(a.changed)
		a.changed = make(chan struct{})
	}
	a.limit = v
	return moved
}

// throttled halves the limit, once for all the invocations that were in
// flight together: those started before the last cut saw the old limit.
func (a *aimd) throttled(started time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if started.Before(a.lastCut) {
		return false
	}
	a.set(max(1, a.limit/2))
	a.lastCut = time.Now()
	return true
}

// succeeded raises the limit a little, and reports whether its whole part
// moved.
func (a *aimd) succeeded() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.set(min(a.max, a.limit+1/a.limit))
}

// pacer spaces invocations to at most Config.Rate a second, across all
// workers; nil means no limit.
type pacer struct {
	lim *rate.Limiter
}

// newPacer takes a rate the root's WithRateLimit accepted: 0, or positive
// and finite.
func newPacer(perSecond float64) *pacer {
	if perSecond == 0 {
		return nil
	}
	// A burst of one: invocations are spaced evenly, never bunched after
	// an idle spell.
	return &pacer{lim: rate.NewLimiter(rate.Limit(perSecond), 1)}
}

// wait returns when the next invocation may start, or with ctx's error
// when ctx ends first; the turn it held then goes to the next waiter.
func (p *pacer) wait(ctx context.Context) error {
	if p == nil {
		return nil
	}
	return p.lim.Wait(ctx)
}
