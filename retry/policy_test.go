package retry_test

import (
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher/retry"
)

func TestDefaultPolicy(t *testing.T) {
	t.Parallel()
	p := retry.DefaultPolicy()
	require.Equal(t, retry.Policy{
		MaxRetries:          2,
		InitialInterval:     time.Second,
		Multiplier:          2,
		MaxInterval:         5 * time.Minute,
		RandomizationFactor: 0.5,
		MaxEventAge:         6 * time.Hour,
		ProbeInterval:       time.Second,
		MaxProbeInterval:    time.Minute,
	}, p)
	require.NoError(t, p.Validate())
}

func TestValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		modify func(*retry.Policy)
		field  string // "" means valid
	}{
		{"Default", func(*retry.Policy) {}, ""},
		{"NoRetries", func(p *retry.Policy) { p.MaxRetries = 0 }, ""},
		{"NoJitter", func(p *retry.Policy) { p.RandomizationFactor = 0 }, ""},
		{"FullJitter", func(p *retry.Policy) { p.RandomizationFactor = 1 }, ""},
		{"ConstantDelay", func(p *retry.Policy) { p.Multiplier = 1 }, ""},
		{"EqualIntervals", func(p *retry.Policy) { p.MaxInterval = p.InitialInterval }, ""},
		{"NegativeRetries", func(p *retry.Policy) { p.MaxRetries = -1 }, "MaxRetries"},
		{"ZeroInitial", func(p *retry.Policy) { p.InitialInterval = 0 }, "InitialInterval"},
		{"NegativeInitial", func(p *retry.Policy) { p.InitialInterval = -time.Second }, "InitialInterval"},
		{"ShrinkingMultiplier", func(p *retry.Policy) { p.Multiplier = 0.5 }, "Multiplier"},
		{"ZeroMultiplier", func(p *retry.Policy) { p.Multiplier = 0 }, "Multiplier"},
		{"NaNMultiplier", func(p *retry.Policy) { p.Multiplier = math.NaN() }, "Multiplier"},
		{"InfMultiplier", func(p *retry.Policy) { p.Multiplier = math.Inf(1) }, "Multiplier"},
		{"ZeroMaxInterval", func(p *retry.Policy) { p.MaxInterval = 0 }, "MaxInterval"},
		{"MaxBelowInitial", func(p *retry.Policy) { p.MaxInterval = p.InitialInterval / 2 }, "MaxInterval"},
		{"NegativeJitter", func(p *retry.Policy) { p.RandomizationFactor = -0.1 }, "RandomizationFactor"},
		{"JitterAboveOne", func(p *retry.Policy) { p.RandomizationFactor = 1.5 }, "RandomizationFactor"},
		{"NaNJitter", func(p *retry.Policy) { p.RandomizationFactor = math.NaN() }, "RandomizationFactor"},
		{"ZeroAge", func(p *retry.Policy) { p.MaxEventAge = 0 }, "MaxEventAge"},
		{"NegativeAge", func(p *retry.Policy) { p.MaxEventAge = -time.Hour }, "MaxEventAge"},
		{"ZeroProbe", func(p *retry.Policy) { p.ProbeInterval = 0 }, "ProbeInterval"},
		{"ZeroMaxProbe", func(p *retry.Policy) { p.MaxProbeInterval = 0 }, "MaxProbeInterval"},
		{"MaxProbeBelowProbe", func(p *retry.Policy) { p.MaxProbeInterval = p.ProbeInterval / 2 }, "MaxProbeInterval"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := retry.DefaultPolicy()
			tc.modify(&p)
			err := p.Validate()
			if tc.field == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, retry.ErrInvalidPolicy)
			require.Contains(t, err.Error(), "retry: invalid policy: "+tc.field+" is ")
		})
	}
}

func TestValidateZeroPolicyListsEveryField(t *testing.T) {
	t.Parallel()
	err := retry.Policy{}.Validate()
	require.ErrorIs(t, err, retry.ErrInvalidPolicy)
	var joined interface{ Unwrap() []error }
	require.True(t, errors.As(err, &joined))
	// MaxRetries 0 and RandomizationFactor 0 are valid; the other six are not.
	require.Len(t, joined.Unwrap(), 6)
	for _, field := range []string{"InitialInterval", "Multiplier", "MaxInterval", "MaxEventAge", "ProbeInterval", "MaxProbeInterval"} {
		require.Contains(t, err.Error(), field+" is ")
	}
}

// noJitter is the default policy without jitter.
func noJitter() retry.Policy {
	p := retry.DefaultPolicy()
	p.RandomizationFactor = 0
	return p
}

func TestDelayDefaultSequence(t *testing.T) {
	t.Parallel()
	p := noJitter()
	want := []time.Duration{
		time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second,
		32 * time.Second, 64 * time.Second, 128 * time.Second, 256 * time.Second, 5 * time.Minute, 5 * time.Minute,
	}
	for i, w := range want {
		require.Equal(t, w, p.Delay(i+1, 0.5), "attempt %d", i+1)
	}
	// With jitter, rnd 0.5 is the middle of the range: the unjittered value.
	d := retry.DefaultPolicy()
	for i, w := range want[:9] {
		require.Equal(t, w, d.Delay(i+1, 0.5), "attempt %d", i+1)
	}
}

func TestDelayMonotoneAndCapped(t *testing.T) {
	t.Parallel()
	p := noJitter()
	prev := time.Duration(0)
	for attempt := 1; attempt <= 200; attempt++ {
		d := p.Delay(attempt, 0.5)
		require.GreaterOrEqual(t, d, prev, "attempt %d", attempt)
		require.LessOrEqual(t, d, p.MaxInterval, "attempt %d", attempt)
		prev = d
	}
	require.Equal(t, p.MaxInterval, prev)

	// Capped after jitter too.
	j := retry.DefaultPolicy()
	for attempt := 1; attempt <= 50; attempt++ {
		for _, rnd := range []float64{0, 0.25, 0.5, 0.75, 0.999999} {
			require.LessOrEqual(t, j.Delay(attempt, rnd), j.MaxInterval, "attempt %d rnd %v", attempt, rnd)
		}
	}
	require.Equal(t, j.MaxInterval, j.Delay(20, 0.999999))
	require.Equal(t, j.MaxInterval/2, j.Delay(20, 0))
}

func TestDelayJitterWithinFactor(t *testing.T) {
	t.Parallel()
	for _, factor := range []float64{0.1, 0.5, 1} {
		p := retry.DefaultPolicy()
		p.RandomizationFactor = factor
		for attempt := 1; attempt <= 6; attempt++ { // base·(1+factor) stays under the cap
			base := noJitter().Delay(attempt, 0.5)
			lo := time.Duration(float64(base) * (1 - factor))
			hi := time.Duration(float64(base) * (1 + factor))
			for i := 0; i <= 100; i++ {
				rnd := float64(i) / 101
				d := p.Delay(attempt, rnd)
				require.GreaterOrEqual(t, d, lo, "factor %v attempt %d rnd %v", factor, attempt, rnd)
				require.LessOrEqual(t, d, hi, "factor %v attempt %d rnd %v", factor, attempt, rnd)
			}
			require.Equal(t, lo, p.Delay(attempt, 0))
			require.InDelta(t, float64(hi), float64(p.Delay(attempt, math.Nextafter(1, 0))), float64(time.Microsecond))
		}
	}
}

func TestDelayHonoursEveryField(t *testing.T) {
	t.Parallel()
	p := retry.Policy{
		MaxRetries:          1,
		InitialInterval:     100 * time.Millisecond,
		Multiplier:          3,
		MaxInterval:         time.Second,
		RandomizationFactor: 0,
		MaxEventAge:         time.Minute,
		ProbeInterval:       10 * time.Millisecond,
		MaxProbeInterval:    50 * time.Millisecond,
	}
	require.NoError(t, p.Validate())
	require.Equal(t, 100*time.Millisecond, p.Delay(1, 0.9))
	require.Equal(t, 300*time.Millisecond, p.Delay(2, 0.9))
	require.Equal(t, 900*time.Millisecond, p.Delay(3, 0.9))
	require.Equal(t, time.Second, p.Delay(4, 0.9))

	p.RandomizationFactor = 0.2
	require.Equal(t, 80*time.Millisecond, p.Delay(1, 0))
	require.Equal(t, 240*time.Millisecond, p.Delay(2, 0))

	p.Multiplier = 1
	p.RandomizationFactor = 0
	for attempt := 1; attempt <= 10; attempt++ {
		require.Equal(t, 100*time.Millisecond, p.Delay(attempt, 0.5))
	}
}

func TestDelayEdgeInputs(t *testing.T) {
	t.Parallel()
	p := retry.DefaultPolicy()
	// Attempts below 1 count as 1.
	require.Equal(t, p.Delay(1, 0.3), p.Delay(0, 0.3))
	require.Equal(t, p.Delay(1, 0.3), p.Delay(-5, 0.3))
	// A huge attempt number is capped, and quick.
	require.Equal(t, p.MaxInterval, p.Delay(math.MaxInt, 0.9))
	// rnd outside [0, 1) is clamped.
	require.Equal(t, p.Delay(3, 0), p.Delay(3, -1))
	require.Equal(t, p.Delay(3, 0), p.Delay(3, math.NaN()))
	require.Equal(t, p.Delay(3, math.Nextafter(1, 0)), p.Delay(3, 1))
	require.Equal(t, p.Delay(3, math.Nextafter(1, 0)), p.Delay(3, 7))
	// A multiplier so close to 1 that the interval crawls still returns.
	slow := p
	slow.Multiplier = 1.0000001
	require.LessOrEqual(t, slow.Delay(math.MaxInt, 0.5), slow.MaxInterval)
	// An invalid policy does not panic or hang.
	require.Zero(t, retry.Policy{}.Delay(3, 0.5))
	require.Zero(t, retry.Policy{}.ProbeDelay(3, 0.5))
	require.Equal(t, time.Duration(math.MaxInt64), retry.Policy{
		InitialInterval: time.Duration(math.MaxInt64), MaxInterval: time.Duration(math.MaxInt64),
		Multiplier: 2, RandomizationFactor: 1,
	}.Delay(2, 0.99))
}

func TestDelayIsPure(t *testing.T) {
	t.Parallel()
	p := retry.DefaultPolicy()
	want := make([]time.Duration, 10)
	for i := range want {
		want[i] = p.Delay(i+1, 0.37)
	}
	// The same inputs give the same output, from any goroutine at once
	// (run with -race).
	var wg sync.WaitGroup
	results := make([][]time.Duration, 8)
	for g := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				got := make([]time.Duration, len(want))
				for i := range got {
					got[i] = p.Delay(i+1, 0.37)
				}
				results[g] = got
			}
		}()
	}
	wg.Wait()
	for _, got := range results {
		require.Equal(t, want, got)
	}
}

func TestProbeDelay(t *testing.T) {
	t.Parallel()
	p := noJitter()
	want := []time.Duration{
		time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second,
		32 * time.Second, time.Minute, time.Minute,
	}
	for i, w := range want {
		require.Equal(t, w, p.ProbeDelay(i+1, 0.5), "probe %d", i+1)
	}
	require.Equal(t, time.Minute, p.ProbeDelay(100_000, 0.5)) // a week offline
	require.Equal(t, p.ProbeDelay(1, 0.5), p.ProbeDelay(0, 0.5))

	// Its own fields, the shared multiplier and jitter.
	p.ProbeInterval = 100 * time.Millisecond
	p.MaxProbeInterval = 250 * time.Millisecond
	p.Multiplier = 1.5
	p.RandomizationFactor = 0.5
	require.Equal(t, 50*time.Millisecond, p.ProbeDelay(1, 0))
	require.Equal(t, 150*time.Millisecond, p.ProbeDelay(2, 0.5))
	require.Equal(t, 250*time.Millisecond, p.ProbeDelay(3, 0.99)) // 225ms·1.49, capped
	require.Equal(t, 250*time.Millisecond, p.ProbeDelay(50, 0.5))
}

func TestNextDue(t *testing.T) {
	t.Parallel()
	p := noJitter()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		name       string
		attempt    int
		retryAfter time.Duration
		want       time.Time
	}{
		{"Backoff", 1, 0, now.Add(time.Second)},
		{"SecondAttempt", 2, 0, now.Add(2 * time.Second)},
		{"RetryAfterLater", 1, 3 * time.Second, now.Add(3 * time.Second)},
		{"RetryAfterEarlier", 3, time.Second, now.Add(4 * time.Second)},
		{"RetryAfterEqual", 2, 2 * time.Second, now.Add(2 * time.Second)},
		{"RetryAfterBeyondMaxInterval", 1, time.Hour, now.Add(time.Hour)},
		{"NegativeRetryAfterIgnored", 1, -time.Minute, now.Add(time.Second)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, p.NextDue(tc.attempt, now, tc.retryAfter, 0.5))
		})
	}
}
