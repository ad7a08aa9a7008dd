package main_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPurge(t *testing.T) {
	t.Parallel()
	path := seed(t)

	require.Equal(t, 2, ctl(t, "", "purge", path).code, "no filter and no --all")

	r := ctl(t, "n\n", "purge", "--all", path)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "purge 3 letters? [y/N]")
	require.Equal(t, 3, stats(t, path).DeadLetters, "answered n: nothing purged")

	r = ctl(t, "", "purge", "--all", path)
	require.Equal(t, 1, r.code, "no answer is no")
	require.Equal(t, 3, stats(t, path).DeadLetters)

	r = ctl(t, "", "purge", "--older-than", "24h", "--yes", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "purged: 1\n", r.stdout)
	require.Equal(t, 2, stats(t, path).DeadLetters)

	r = ctl(t, "y\n", "--json", "purge", "--reason", "rejected", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, `{"purged":1}`, r.stdout)
	require.Equal(t, []string{"102"}, ids(jsonLines(t, ctl(t, "", "--json", "ls", "--state", "dead", path).stdout)))
	require.Equal(t, int64(3), stats(t, path).Ready, "queued events untouched")
}
