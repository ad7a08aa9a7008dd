package main_test

import (
	"crypto/sha256"
	"encoding/json"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

type functionsOut struct {
	Functions []struct {
		Function         string
		Paused           bool
		Ready, Scheduled int64
	}
}

func functionsOf(t *testing.T, path string) map[string]bool {
	t.Helper()
	r := ctl(t, "", "--json", "stats", path)
	require.Equal(t, 0, r.code, r.stderr)
	var out functionsOut
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out))
	paused := map[string]bool{}
	for _, f := range out.Functions {
		paused[f.Function] = f.Paused
	}
	return paused
}

func TestPauseResume(t *testing.T) {
	t.Parallel()
	path := seed(t)
	require.Equal(t, map[string]bool{"orders": false, "billing": false}, functionsOf(t, path))

	r := ctl(t, "", "pause", path, "billing")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "paused billing\n", r.stdout)
	require.Equal(t, map[string]bool{"orders": false, "billing": true}, functionsOf(t, path), "durable: read back from the file")
	r = ctl(t, "", "stats", path)
	require.Regexp(t, `(?m)^billing\s+1\s+0\s+true$`, r.stdout)

	r = ctl(t, "", "--json", "resume", path, "billing")
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, `{"function":"billing","paused":false}`, r.stdout)
	require.Equal(t, map[string]bool{"orders": false, "billing": false}, functionsOf(t, path))
}

func TestPauseRefusesBadInputUnchanged(t *testing.T) {
	t.Parallel()
	path := seed(t)
	sum := func() [32]byte {
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		return sha256.Sum256(b)
	}
	before := sum()
	for _, args := range [][]string{
		{"pause", path, "not a function!"},
		{"pause", path},
		{"resume", path, "a", "b"},
	} {
		r := ctl(t, "", args...)
		require.Equal(t, 2, r.code, "%v: %s", args, r.stderr)
	}
	require.Equal(t, before, sum(), "bad input changes nothing on disk")
}

func TestCancelCommand(t *testing.T) {
	t.Parallel()
	path := seed(t) // orders ×2, billing ×1 queued
	r := ctl(t, "n\n", "cancel", "--function", "orders", path)
	require.Equal(t, 1, r.code, "declined: %s", r.stderr)
	require.Equal(t, int64(3), stats(t, path).Queued)
	r = ctl(t, "", "cancel", path)
	require.Equal(t, 2, r.code, "nothing selected")
	r = ctl(t, "", "cancel", "--yes", "--function", "orders", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "cancelled 2 events\n", r.stdout)
	require.Equal(t, int64(1), stats(t, path).Queued)
	r = ctl(t, "", "--json", "ls", "--state", "evicted", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, r.stdout, "no evictions in this file")
}
