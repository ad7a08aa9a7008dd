package main_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestShow(t *testing.T) {
	t.Parallel()
	path := seed(t)

	r := ctl(t, "", "show", "1", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `(?m)^function:\s+orders$`, r.stdout)
	require.Regexp(t, `(?m)^key:\s+order-1$`, r.stdout)
	require.Contains(t, r.stdout, "payload:\n  {\n    \"id\": 1,\n    \"items\": [\n      1,\n      2\n    ]\n  }\n")

	r = ctl(t, "", "show", "100", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `(?m)^reason:\s+retries-exhausted$`, r.stdout)
	require.Regexp(t, `(?m)^last error:\s+ServiceException boom \(status 500, request req-1\)$`, r.stdout)
	require.Contains(t, r.stdout, "payload:\n  {\n    \"id\": 100\n  }\n")

	r = ctl(t, "", "--json", "show", "100", path)
	require.Equal(t, 0, r.code, r.stderr)
	var l map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &l))
	require.Equal(t, "dead", l["state"])
	require.Equal(t, map[string]any{"id": float64(100)}, l["payload"])

	r = ctl(t, "", "show", "999", path)
	require.Equal(t, 4, r.code)
	require.Contains(t, r.stderr, "no event or dead letter with id 999")

	require.Equal(t, 2, ctl(t, "", "show", "abc", path).code)
}
