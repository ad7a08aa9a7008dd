package delivery

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestAIMD(t *testing.T) {
	t.Parallel()
	a := newAIMD(64)
	limit, changed := a.state()
	require.Equal(t, 64, limit)

	before := time.Now()
	require.True(t, a.throttled(before))
	require.Equal(t, 32, a.current(), "halved")
	select {
	case <-changed:
	default:
		t.Fatal("waiters are told when the limit moves")
	}
	require.False(t, a.throttled(before), "invocations in flight with the old limit do not cut again")
	require.Equal(t, 32, a.current())
	require.True(t, a.throttled(time.Now().Add(time.Millisecond)))
	require.Equal(t, 16, a.current())

	for range 15 {
		a.succeeded()
	}
	require.Equal(t, 16, a.current(), "not yet a limit's worth of successes")
	a.succeeded()
	a.succeeded()
	require.Equal(t, 17, a.current(), "one more after about a limit's worth of successes")
	for range 10_000 {
		a.succeeded()
	}
	require.Equal(t, 64, a.current(), "never above the configured concurrency")
	for range 20 {
		a.throttled(time.Now().Add(time.Hour))
	}
	require.Equal(t, 1, a.current(), "never below one")
}
