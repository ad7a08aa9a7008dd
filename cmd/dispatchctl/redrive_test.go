package main_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRedrive(t *testing.T) {
	t.Parallel()
	path := seed(t)

	r := ctl(t, "", "redrive", path)
	require.Equal(t, 2, r.code, "no ids, no filter, no --all")
	require.Contains(t, r.stderr, "nothing selected")
	require.Equal(t, 2, ctl(t, "", "redrive", "--function", "orders", "100", path).code)

	r = ctl(t, "", "redrive", "--function", "orders", "--to", "orders-v2", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "redriven: 2\n", r.stdout)

	r = ctl(t, "", "--json", "ls", "--function", "orders-v2", path)
	rows := jsonLines(t, r.stdout)
	require.Len(t, rows, 2)
	require.Equal(t, "ready", rows[0]["state"])
	require.Equal(t, []string{"101"}, ids(jsonLines(t, ctl(t, "", "--json", "ls", "--state", "dead", path).stdout)))

	r = ctl(t, "", "--json", "redrive", "101", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, `{"redriven":1}`, r.stdout)
	require.Equal(t, 4, ctl(t, "", "redrive", "101", path).code, "already redriven")

	s := stats(t, path)
	require.Equal(t, int64(6), s.Ready)
	require.Equal(t, 0, s.DeadLetters)
}
