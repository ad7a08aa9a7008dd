package delivery

import (
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/lambdadispatch/dispatcher/store"
)

// Limit is a function's configured flow control.
type Limit struct {
	// MaxInFlight is the most invocations of the function in flight at
	// once; 0 means Config.Concurrency. Throttling lowers the function's
	// limit below it, successes raise it back (AIMD), never above it.
	MaxInFlight int
	// Rate is the most invocations of the function a second; 0 means no
	// limit.
	Rate float64
}

// functions is the per-function side of one Run: for each function, the
// events leased and waiting for their turn, the ones admitted (handed to
// the workers, in the work channel or invoking), its in-flight limit and
// its rate limiter. The leaser pushes leased events in; admit moves them
// to the workers, round robin across functions, each function only while
// it is under its own limit and rate, so one throttled function holds no
// worker and delays no other function's events.
type functions struct {
	cfg  *Config
	work chan job // admitted events; never fills: see admit

	mu      sync.Mutex
	byName  map[string]*fnState
	ring    []*fnState // functions with events waiting, in the order they got them
	next    int        // where the next admit pass starts in ring
	held    int        // events leased and not settled, all functions
	room    int        // how many more may be admitted: cap(work) less admitted
	wake    *time.Timer
	wakeSet bool
	closed  bool // Run is ending: admit no more
}

// job is an admitted event and its function's state.
type job struct {
	ev store.Event
	fn *fnState
}

// fnState is one function's state in a Run.
type fnState struct {
	name     string
	waiting  []store.Event
	admitted int // in the work channel or invoking
	limit    *aimd
	pace     *rate.Limiter // nil: no rate limit
	inRing   bool
	counts   *FunctionCounters
}

func newFunctions(cfg *Config, work chan job) *functions {
	f := &functions{cfg: cfg, work: work, byName: map[string]*fnState{}, room: cap(work)}
	f.wake = time.AfterFunc(time.Hour, f.admitLocked)
	f.wake.Stop()
	return f
}

// limitOf is the configured limit of function, its own or the default.
func (c *Config) limitOf(function string) Limit {
	l, ok := c.Limits[function]
	if !ok {
		l = c.DefaultLimit
	}
	if l.MaxInFlight <= 0 || l.MaxInFlight > c.Concurrency {
		l.MaxInFlight = c.Concurrency
	}
	return l
}

// state returns function's state, created on first use. f.mu is held.
func (f *functions) state(function string) *fnState {
	s := f.byName[function]
	if s == nil {
		l := f.cfg.limitOf(function)
		s = &fnState{name: function, limit: newAIMD(l.MaxInFlight), counts: f.cfg.Counters.function(function)}
		if l.Rate > 0 {
			// A burst of one, as the overall pacer: evenly spaced.
			s.pace = rate.NewLimiter(rate.Limit(l.Rate), 1)
		}
		s.counts.setLimit(s.limit.current())
		f.byName[function] = s
	}
	return s
}

// quota is how many more events of function the leaser may take: up to
// heldLimits of its limits held, as for the whole dispatcher. The store
// calls it inside the lease transaction.
func (f *functions) quota(function string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.byName[function]
	if s == nil {
		return heldLimits * f.cfg.limitOf(function).MaxInFlight
	}
	return heldLimits*s.limit.current() - len(s.waiting) - s.admitted
}

// push queues leased events for admission.
func (f *functions) push(evs []store.Event) {
	f.mu.Lock()
	for _, ev := range evs {
		s := f.state(ev.Function)
		s.waiting = append(s.waiting, ev)
		if !s.inRing {
			s.inRing = true
			f.ring = append(f.ring, s)
		}
	}
	f.held += len(evs)
	f.admit()
	f.mu.Unlock()
}

// heldNow returns the events leased and not yet settled.
func (f *functions) heldNow() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held
}

// finish records that an admitted event of s is settled, and admits what
// that made room for.
func (f *functions) finish(s *fnState) {
	f.mu.Lock()
	s.admitted--
	s.counts.InFlight.Add(-1)
	f.held--
	f.room++
	f.admit()
	f.mu.Unlock()
}

// limitChanged admits what a raised limit made room for.
func (f *functions) limitChanged() {
	f.mu.Lock()
	f.admit()
	f.mu.Unlock()
}

func (f *functions) admitLocked() {
	f.mu.Lock()
	f.wakeSet = false
	f.admit()
	f.mu.Unlock()
}

// admit hands waiting events to the workers, one per function per pass,
// round robin from where the last pass stopped, while there is room in the
// work channel. f.mu is held. A function at its limit waits for one of its
// own invocations to end; one short of a rate token sets a timer for when
// it has one.
func (f *functions) admit() {
	if f.closed {
		return
	}
	var soonest time.Duration
	for f.room > 0 && len(f.ring) > 0 {
		progressed := false
		for i := 0; i < len(f.ring) && f.room > 0; {
			idx := (f.next + i) % len(f.ring)
			s := f.ring[idx]
			if len(s.waiting) == 0 {
				s.inRing = false
				f.ring = append(f.ring[:idx], f.ring[idx+1:]...)
				if idx < f.next {
					f.next--
				}
				if f.next >= len(f.ring) {
					f.next = 0
				}
				continue
			}
			i++
			if s.admitted >= s.limit.current() {
				continue
			}
			if s.pace != nil {
				r := s.pace.Reserve()
				if d := r.Delay(); d > 0 {
					r.Cancel()
					if soonest == 0 || d < soonest {
						soonest = d
					}
					continue
				}
			}
			ev := s.waiting[0]
			s.waiting[0] = store.Event{}
			s.waiting = s.waiting[1:]
			s.admitted++
			s.counts.InFlight.Add(1)
			f.room--
			f.work <- job{ev, s} // never blocks: room is at most the channel's free slots
			progressed = true
		}
		if len(f.ring) > 0 {
			f.next = (f.next + 1) % len(f.ring)
		}
		if !progressed {
			break
		}
	}
	if soonest > 0 && !f.wakeSet {
		f.wakeSet = true
		f.wake.Reset(soonest)
	}
}

// drain takes every event still waiting, for the leaser to return them to
// the queue when Run ends.
func (f *functions) drain() []store.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	f.wake.Stop()
	var evs []store.Event
	for _, s := range f.ring {
		evs = append(evs, s.waiting...)
		s.waiting, s.inRing = nil, false
	}
	f.ring = nil
	f.held -= len(evs)
	return evs
}

// FunctionCounters are what delivery counts for one function, from Open
// to Close across every Run.
type FunctionCounters struct {
	Delivered    atomic.Uint64
	DeadLettered atomic.Uint64
	// Throttled counts the times throttling lowered the function's limit.
	Throttled atomic.Uint64
	// InFlight is the function's events handed to workers now.
	InFlight atomic.Int64
	limit    atomic.Int64 // the function's in-flight limit; 0 before its first event
}

// Limit returns the function's in-flight limit as last set by a Run, 0
// when no Run has seen the function.
func (c *FunctionCounters) Limit() int { return int(c.limit.Load()) }

func (c *FunctionCounters) setLimit(n int) { c.limit.Store(int64(n)) }

// function returns the counters of function, created on first use.
func (c *Counters) function(name string) *FunctionCounters {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fns == nil {
		c.fns = map[string]*FunctionCounters{}
	}
	fc := c.fns[name]
	if fc == nil {
		fc = new(FunctionCounters)
		c.fns[name] = fc
	}
	return fc
}

// Functions returns the counters of every function counted so far.
func (c *Counters) Functions() map[string]*FunctionCounters {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]*FunctionCounters, len(c.fns))
	for n, fc := range c.fns {
		m[n] = fc
	}
	return m
}
