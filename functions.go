package dispatcher

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/lambdadispatch/dispatcher/internal/delivery"
)

// FunctionLimit is the flow control of one function: Lambda's concurrency
// is per function (reserved concurrency) as well as per account, and a
// function that throttles should slow only itself.
type FunctionLimit struct {
	// MaxInFlight is the most invocations of the function in flight at
	// once, such as its reserved concurrency; 0 means WithConcurrency's.
	// Throttling lowers the function's limit below it and successes raise
	// it back, never above it nor above WithConcurrency.
	MaxInFlight int
	// PerSecond is the most invocations of the function a second; 0 means
	// no limit. WithRateLimit still caps all functions together.
	PerSecond float64
}

// WithFunctionLimit sets the flow control of function, named exactly as
// its events name it (events naming it differently, by ARN say, are
// another function to the dispatcher); function "" sets the default of
// every function without a limit of its own. It may be given once per
// function.
//
// Without it, each function may have up to WithConcurrency invocations in
// flight, each lowered by its own throttles (TooManyRequestsException with
// a function's reason, such as
// ReservedFunctionConcurrentInvocationLimitExceeded) and raised by its own
// successes; a throttle naming the account's limit
// (ConcurrentInvocationLimitExceeded) lowers a limit shared by all.
func WithFunctionLimit(function string, l FunctionLimit) Option {
	return func(o *options) error {
		switch {
		case l.MaxInFlight < 0:
			return fmt.Errorf("dispatcher: WithFunctionLimit(%q): MaxInFlight %d is negative", function, l.MaxInFlight)
		case math.IsNaN(l.PerSecond) || math.IsInf(l.PerSecond, 0) || l.PerSecond < 0:
			return fmt.Errorf("dispatcher: WithFunctionLimit(%q): PerSecond %v must be a positive finite rate, or 0 for none", function, l.PerSecond)
		case l.PerSecond > 0 && float64(time.Second)/l.PerSecond >= math.MaxInt64:
			return fmt.Errorf("dispatcher: WithFunctionLimit(%q): PerSecond %v: the interval between invocations overflows a time.Duration", function, l.PerSecond)
		}
		if function == "" {
			o.defaultLimit = delivery.Limit{MaxInFlight: l.MaxInFlight, Rate: l.PerSecond}
			return nil
		}
		if err := validateEvent(0, &Event{Function: function}, limits{}); err != nil {
			return fmt.Errorf("dispatcher: WithFunctionLimit: %w", err)
		}
		if o.limits == nil {
			o.limits = map[string]delivery.Limit{}
		}
		o.limits[function] = delivery.Limit{MaxInFlight: l.MaxInFlight, Rate: l.PerSecond}
		return nil
	}
}

// Functions returns the inspector of the functions the queue sends to:
// their figures, and pausing and resuming each.
func (d *Dispatcher) Functions() *Functions { return &Functions{d: d} }

// Functions reads and pauses the functions the queue sends to. After the
// Dispatcher's Close, every method returns ErrClosed.
type Functions struct {
	d *Dispatcher
}

// FunctionStats are one function's figures.
type FunctionStats struct {
	// Function is the name its events give.
	Function string
	// Paused is set while the function is paused (Functions.Pause).
	Paused bool
	// Ready, Scheduled and InFlight count its events due now, due later
	// (retries, mostly), and handed to a worker.
	Ready, Scheduled, InFlight int64
	// Limit is its in-flight limit now: its configured MaxInFlight, less
	// what throttling took; 0 until a Run has sent to it.
	Limit int
	// Since Open: events delivered and dead-lettered, and the times
	// throttling lowered its limit.
	Delivered, DeadLettered, Throttled uint64
	// Configured is its flow control as WithFunctionLimit set it (its
	// own, or the default), zero fields where none was set.
	Configured FunctionLimit
}

// All returns the figures of every function that has events queued, is
// paused, or was sent to since Open, sorted by name.
func (f *Functions) All() ([]FunctionStats, error) {
	if f.d.closed.Load() {
		return nil, ErrClosed
	}
	held, err := f.d.st.Functions()
	if err != nil {
		return nil, translate(err)
	}
	byName := map[string]*FunctionStats{}
	get := func(name string) *FunctionStats {
		s := byName[name]
		if s == nil {
			s = &FunctionStats{Function: name}
			byName[name] = s
		}
		return s
	}
	for _, h := range held {
		s := get(h.Name)
		s.Paused, s.Ready, s.Scheduled = h.Paused, h.Ready, h.Scheduled
	}
	for name, c := range f.d.counts.Functions() {
		s := get(name)
		s.InFlight, s.Limit = c.InFlight.Load(), c.Limit()
		s.Delivered, s.DeadLettered, s.Throttled = c.Delivered.Load(), c.DeadLettered.Load(), c.Throttled.Load()
	}
	out := make([]FunctionStats, 0, len(byName))
	for _, s := range byName {
		s.Configured = f.d.configuredLimit(s.Function)
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b FunctionStats) int { return strings.Compare(a.Function, b.Function) })
	return out, nil
}

// Get returns one function's figures; a function the dispatcher has never
// seen has zero figures and no error.
func (f *Functions) Get(function string) (FunctionStats, error) {
	all, err := f.All()
	if err != nil {
		return FunctionStats{}, err
	}
	for _, s := range all {
		if s.Function == function {
			return s, nil
		}
	}
	return FunctionStats{Function: function, Configured: f.d.configuredLimit(function)}, nil
}

func (d *Dispatcher) configuredLimit(function string) FunctionLimit {
	l, ok := d.opts.limits[function]
	if !ok {
		l = d.opts.defaultLimit
	}
	return FunctionLimit{MaxInFlight: l.MaxInFlight, PerSecond: l.Rate}
}

// Pause stops sending to function, durably: the pause holds across a
// restart until Resume. Its events stay queued and spend no attempt:
// those leased but not yet sent go back to the queue unsent; invocations
// already under way finish. Enqueue goes on accepting its events. Pausing
// a paused function, or one with no events, is allowed.
func (f *Functions) Pause(ctx context.Context, function string) error {
	return f.setPaused(ctx, function, true)
}

// Resume sends to a paused function again.
func (f *Functions) Resume(ctx context.Context, function string) error {
	return f.setPaused(ctx, function, false)
}

func (f *Functions) setPaused(ctx context.Context, function string, paused bool) error {
	if f.d.closed.Load() {
		return ErrClosed
	}
	if f.d.opts.readOnly {
		return ErrReadOnly
	}
	if err := validateEvent(0, &Event{Function: function}, f.d.lim); err != nil {
		return err
	}
	if err := f.d.st.SetPaused(ctx, function, paused); err != nil {
		return translate(err)
	}
	verb := "paused"
	if !paused {
		verb = "resumed"
	}
	f.d.log.Info("function "+verb, "function", function)
	return nil
}
