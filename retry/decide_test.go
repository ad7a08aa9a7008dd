package retry_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher/retry"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	enqueued := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	fresh := enqueued.Add(time.Minute)
	atLimit := enqueued.Add(6 * time.Hour)
	old := atLimit.Add(time.Nanosecond)
	veryOld := enqueued.Add(72 * time.Hour)

	noRetries := retry.DefaultPolicy()
	noRetries.MaxRetries = 0

	cases := []struct {
		name     string
		policy   retry.Policy
		class    retry.Class
		attempts int
		enqueued time.Time
		now      time.Time
		want     retry.Decision
		reason   retry.Reason
	}{
		{"Success", retry.DefaultPolicy(), retry.Success, 1, enqueued, fresh, retry.Done, ""},
		{"SuccessWhenOld", retry.DefaultPolicy(), retry.Success, 3, enqueued, veryOld, retry.Done, ""},

		{"PermanentFirstAttempt", retry.DefaultPolicy(), retry.Permanent, 1, enqueued, fresh, retry.DeadLetter, retry.ReasonRejected},
		{"PermanentWhenOld", retry.DefaultPolicy(), retry.Permanent, 1, enqueued, veryOld, retry.DeadLetter, retry.ReasonRejected},

		{"Unreachable", retry.DefaultPolicy(), retry.Unreachable, 1, enqueued, fresh, retry.Pause, ""},
		{"Credentials", retry.DefaultPolicy(), retry.Credentials, 1, enqueued, fresh, retry.Pause, ""},
		// Pausing never spends the backlog, however old or however many attempts.
		{"UnreachableWhenOld", retry.DefaultPolicy(), retry.Unreachable, 1, enqueued, veryOld, retry.Pause, ""},
		{"CredentialsAfterRetries", retry.DefaultPolicy(), retry.Credentials, 9, enqueued, veryOld, retry.Pause, ""},

		{"TransientFirst", retry.DefaultPolicy(), retry.Transient, 1, enqueued, fresh, retry.Retry, ""},
		{"TransientSecond", retry.DefaultPolicy(), retry.Transient, 2, enqueued, fresh, retry.Retry, ""},
		{"TransientThird", retry.DefaultPolicy(), retry.Transient, 3, enqueued, fresh, retry.DeadLetter, retry.ReasonRetriesExhausted},
		{"ThrottledSecond", retry.DefaultPolicy(), retry.Throttled, 2, enqueued, fresh, retry.Retry, ""},
		{"ThrottledThird", retry.DefaultPolicy(), retry.Throttled, 3, enqueued, fresh, retry.DeadLetter, retry.ReasonRetriesExhausted},
		{"UnknownClassIsTransient", retry.DefaultPolicy(), retry.Class(0), 1, enqueued, fresh, retry.Retry, ""},

		{"MaxRetriesZero", noRetries, retry.Transient, 1, enqueued, fresh, retry.DeadLetter, retry.ReasonRetriesExhausted},
		{"MaxRetriesZeroThrottled", noRetries, retry.Throttled, 1, enqueued, fresh, retry.DeadLetter, retry.ReasonRetriesExhausted},

		{"AgeAtLimit", retry.DefaultPolicy(), retry.Transient, 1, enqueued, atLimit, retry.Retry, ""},
		{"AgeExceeded", retry.DefaultPolicy(), retry.Transient, 1, enqueued, old, retry.DeadLetter, retry.ReasonEventAgeExceeded},
		{"AgeExceededThrottled", retry.DefaultPolicy(), retry.Throttled, 1, enqueued, old, retry.DeadLetter, retry.ReasonEventAgeExceeded},
		{"AgeBeatsExhausted", retry.DefaultPolicy(), retry.Transient, 3, enqueued, old, retry.DeadLetter, retry.ReasonEventAgeExceeded},
		{"UnknownEnqueueTimeSkipsAge", retry.DefaultPolicy(), retry.Transient, 1, time.Time{}, veryOld, retry.Retry, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, reason := tc.policy.Decide(tc.class, tc.attempts, tc.enqueued, tc.now)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.reason, reason)
		})
	}
}

func TestDecideAttemptsInAll(t *testing.T) {
	t.Parallel()
	// MaxRetries n means n+1 attempts in all.
	for maxRetries := 0; maxRetries <= 5; maxRetries++ {
		p := retry.DefaultPolicy()
		p.MaxRetries = maxRetries
		now := time.Now()
		attempts := 0
		for {
			attempts++
			d, _ := p.Decide(retry.Transient, attempts, now, now)
			if d != retry.Retry {
				require.Equal(t, retry.DeadLetter, d)
				break
			}
		}
		require.Equal(t, maxRetries+1, attempts)
	}
}

func TestDecisionString(t *testing.T) {
	t.Parallel()
	for d, want := range map[retry.Decision]string{
		retry.Done:        "done",
		retry.Retry:       "retry",
		retry.DeadLetter:  "dead-letter",
		retry.Pause:       "pause",
		retry.Decision(0): "Decision(0)",
	} {
		require.Equal(t, want, d.String())
	}
}
