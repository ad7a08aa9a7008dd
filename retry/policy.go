package retry

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Default values of a [Policy], as returned by [DefaultPolicy].
const (
	DefaultMaxRetries          = 2
	DefaultInitialInterval     = 1 * time.Second
	DefaultMultiplier          = 2.0
	DefaultMaxInterval         = 5 * time.Minute
	DefaultRandomizationFactor = 0.5
	DefaultMaxEventAge         = 6 * time.Hour
	DefaultProbeInterval       = 1 * time.Second
	DefaultMaxProbeInterval    = 1 * time.Minute
)

// ErrInvalidPolicy is returned, wrapped, by [Policy.Validate] for every field
// that holds an unusable value. Test for it with errors.Is.
var ErrInvalidPolicy = errors.New("retry: invalid policy")

// Policy is the dispatcher's retry policy: how many times a failed event is
// retried, how long to wait between attempts, how old an event may grow
// before it is given up, and how often to probe Lambda while dispatch is
// paused.
//
// Start from [DefaultPolicy] and change the fields you need; the zero Policy
// is not valid. A Policy is a plain value with no state: share it freely.
type Policy struct {
	// MaxRetries is the number of retries after the first attempt. The
	// default, 2, gives three attempts in all, like Lambda's own
	// asynchronous retries. 0 means a single attempt.
	MaxRetries int

	// InitialInterval is the delay after the first failed attempt, before
	// jitter. Default 1s.
	InitialInterval time.Duration

	// Multiplier scales the delay after each further failed attempt.
	// Default 2; 1 gives a constant delay.
	Multiplier float64

	// MaxInterval caps every delay, after jitter too. Default 5m.
	MaxInterval time.Duration

	// RandomizationFactor is the jitter: a delay d becomes a value in
	// [d·(1−f), d·(1+f)]. Default 0.5; 0 means none.
	RandomizationFactor float64

	// MaxEventAge is how long after enqueue an event may still be retried.
	// Default 6h, as Lambda's. See [Policy.Decide] for when it applies.
	MaxEventAge time.Duration

	// ProbeInterval is the pause after the first failed probe while Lambda is
	// unreachable or the credentials fail. Default 1s. Probe delays grow by
	// Multiplier and are jittered by RandomizationFactor.
	ProbeInterval time.Duration

	// MaxProbeInterval caps the probe delay. Default 1m.
	MaxProbeInterval time.Duration
}

// DefaultPolicy returns the default policy: 2 retries (three attempts), delays
// of 1s, 2s, 4s … up to 5m with ±50% jitter, a maximum event age of 6h, and
// probes every 1s, 2s, 4s … up to 1m while paused.
func DefaultPolicy() Policy {
	return Policy{
		MaxRetries:          DefaultMaxRetries,
		InitialInterval:     DefaultInitialInterval,
		Multiplier:          DefaultMultiplier,
		MaxInterval:         DefaultMaxInterval,
		RandomizationFactor: DefaultRandomizationFactor,
		MaxEventAge:         DefaultMaxEventAge,
		ProbeInterval:       DefaultProbeInterval,
		MaxProbeInterval:    DefaultMaxProbeInterval,
	}
}

// Validate reports every field of p that holds an unusable value, one wrapped
// [ErrInvalidPolicy] per field, joined with errors.Join. It returns nil for a
// valid policy.
func (p Policy) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidPolicy}, args...)...))
	}
	if p.MaxRetries < 0 {
		bad("MaxRetries is %d, must be >= 0", p.MaxRetries)
	}
	if p.InitialInterval <= 0 {
		bad("InitialInterval is %v, must be > 0", p.InitialInterval)
	}
	if math.IsNaN(p.Multiplier) || math.IsInf(p.Multiplier, 0) || p.Multiplier < 1 {
		bad("Multiplier is %v, must be a finite number >= 1", p.Multiplier)
	}
	if p.MaxInterval <= 0 || p.MaxInterval < p.InitialInterval {
		bad("MaxInterval is %v, must be > 0 and >= InitialInterval (%v)", p.MaxInterval, p.InitialInterval)
	}
	if math.IsNaN(p.RandomizationFactor) || p.RandomizationFactor < 0 || p.RandomizationFactor > 1 {
		bad("RandomizationFactor is %v, must be in [0, 1]", p.RandomizationFactor)
	}
	if p.MaxEventAge <= 0 {
		bad("MaxEventAge is %v, must be > 0", p.MaxEventAge)
	}
	if p.ProbeInterval <= 0 {
		bad("ProbeInterval is %v, must be > 0", p.ProbeInterval)
	}
	if p.MaxProbeInterval <= 0 || p.MaxProbeInterval < p.ProbeInterval {
		bad("MaxProbeInterval is %v, must be > 0 and >= ProbeInterval (%v)", p.MaxProbeInterval, p.ProbeInterval)
	}
	return errors.Join(errs...)
}

// Delay returns the backoff before the next attempt, where attempt is the
// number of attempts that have failed so far (attempt 1 is the delay after the
// first failed attempt; values below 1 count as 1) and rnd is a random number
// in [0, 1) supplied by the caller (values outside are clamped into it).
//
// The delay before jitter is InitialInterval·Multiplier^(attempt−1), capped at
// MaxInterval; jitter then spreads it uniformly over ±RandomizationFactor, rnd
// 0 giving the low end and rnd 0.5 the unjittered value; the result is capped
// at MaxInterval again. Delay is a pure function of p, attempt and rnd.
func (p Policy) Delay(attempt int, rnd float64) time.Duration {
	return delay(p.InitialInterval, p.MaxInterval, p.Multiplier, p.RandomizationFactor, attempt, rnd)
}

// ProbeDelay returns the pause after the n-th consecutive failed probe while
// dispatch is paused (n 1 is the pause after the first failed probe; values
// below 1 count as 1). It grows like [Policy.Delay], from ProbeInterval by
// Multiplier with RandomizationFactor jitter, and is capped at
// MaxProbeInterval.
func (p Policy) ProbeDelay(n int, rnd float64) time.Duration {
	return delay(p.ProbeInterval, p.MaxProbeInterval, p.Multiplier, p.RandomizationFactor, n, rnd)
}

// NextDue returns when the event should next be attempted after its attempt-th
// failed attempt at time now: now + [Policy.Delay](attempt, rnd), unless
// retryAfter (the server's Retry-After, see [InvokeError.RetryAfter]) asks
// for later, in which case now + retryAfter wins. A retryAfter <= 0 is
// ignored. Retry-After is not capped by MaxInterval: it is Lambda's word.
func (p Policy) NextDue(attempt int, now time.Time, retryAfter time.Duration, rnd float64) time.Time {
	due := now.Add(p.Delay(attempt, rnd))
	if retryAfter > 0 {
		if ra := now.Add(retryAfter); ra.After(due) {
			return ra
		}
	}
	return due
}

// maxSteps bounds the number of backoff steps delay takes. It is far more
// than any real retry or probe count, and any multiplier of practical use
// reaches the cap long before it, so it only guards against absurd inputs
// (math.MaxInt attempts, a multiplier of 1.0000001) making Delay slow.
const maxSteps = 10_000

// delay computes the n-th backoff interval with a fresh
// backoff.ExponentialBackOff and applies jitter from rnd.
//
// Why a fresh ExponentialBackOff per call, stepped n times: backoff exports
// no function that computes the n-th interval, and its ExponentialBackOff is
// stateful and not safe for concurrent use, so sharing one would make the
// delay depend on what other goroutines did. A fresh value per call is a
// small struct and at most a few dozen steps before the interval reaches its
// cap (we stop stepping there, or when the interval stops changing).
//
// Why RandomizationFactor 0 on it and our own jitter: NextBackOff draws its
// jitter from math/rand's global source, which would make Delay impure and
// tests nondeterministic. With factor 0 backoff returns the exact interval
// (it still calls rand.Float64 but ignores the value), and we spread it with
// the caller's rnd using backoff's documented formula, interval·(1 ± factor).
//
// Every field is set: backoff's defaults (500ms, ×1.5, 60s cap, and a 15
// minute MaxElapsedTime after which NextBackOff silently returns Stop) are
// not ours. MaxElapsedTime 0 means never stop, and a fixed clock keeps the
// elapsed-time bookkeeping away from the wall clock.
func delay(initial, maxInterval time.Duration, multiplier, factor float64, n int, rnd float64) time.Duration {
	if maxInterval <= 0 || initial <= 0 {
		return 0
	}
	b := backoff.ExponentialBackOff{
		InitialInterval:     initial,
		RandomizationFactor: 0,
		Multiplier:          multiplier,
		MaxInterval:         maxInterval,
		MaxElapsedTime:      0,
		Stop:                backoff.Stop,
		Clock:               fixedClock{},
	}
	b.Reset()
	n = min(max(n, 1), maxSteps)
	interval := b.NextBackOff()
	for i := 1; i < n && interval < maxInterval; i++ {
		next := b.NextBackOff()
		if next == interval {
			break // fixed point: Multiplier 1, or too small to grow
		}
		interval = next
	}
	interval = min(max(interval, 0), maxInterval)

	if !(factor > 0) { // also NaN
		return interval
	}
	factor = min(factor, 1)
	switch {
	case !(rnd >= 0): // also NaN
		rnd = 0
	case rnd >= 1:
		rnd = math.Nextafter(1, 0)
	}
	lo := float64(interval) * (1 - factor)
	hi := float64(interval) * (1 + factor)
	d := lo + rnd*(hi-lo)
	switch {
	case d >= float64(maxInterval): // compare as floats: no overflow
		return maxInterval
	case d <= 0:
		return 0
	}
	return time.Duration(d)
}

// fixedClock is the backoff.Clock of the throwaway ExponentialBackOff in
// delay: with MaxElapsedTime 0 elapsed time is never consulted for a
// decision, so a constant keeps Delay off the wall clock.
type fixedClock struct{}

// Now returns the zero time.
func (fixedClock) Now() time.Time { return time.Time{} }
