package main_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStats(t *testing.T) {
	t.Parallel()
	path := seed(t)

	r := ctl(t, "", "stats", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `(?m)^ready\s+3$`, r.stdout)
	require.Regexp(t, `(?m)^dead letters\s+3$`, r.stdout)
	require.Regexp(t, `(?m)^keys\s+1$`, r.stdout)

	s := stats(t, path)
	require.Equal(t, int64(3), s.Ready)
	require.Equal(t, int64(3), s.Queued)
	require.Equal(t, 3, s.DeadLetters)
	require.Equal(t, uint64(1), s.Keys)
	require.Positive(t, s.Bytes)

	// --json after the command works too.
	r = ctl(t, "", "stats", "--json", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.True(t, json.Valid([]byte(r.stdout)))
}
