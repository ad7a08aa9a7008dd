package main_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestExport(t *testing.T) {
	t.Parallel()
	path := seed(t)

	r := ctl(t, "", "export", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, r.stderr, "no progress when stderr is not a terminal")
	rows := jsonLines(t, r.stdout)
	require.Equal(t, []string{"1", "2", "3"}, ids(rows))
	require.Equal(t, map[string]any{"id": float64(1), "items": []any{float64(1), float64(2)}}, rows[0]["payload"])
	require.Equal(t, "order-1", rows[0]["key"])
	require.Equal(t, "prod", rows[2]["qualifier"])
	for _, f := range []string{"function", "attempts", "enqueued", "due", "state", "priority"} {
		require.Contains(t, rows[0], f)
	}
	require.Equal(t, "ready", rows[0]["state"])
	require.Equal(t, "json", rows[0]["payloadEncoding"])
	require.NotContains(t, rows[0], "leased", "one way to say a state: the admin API's")

	r = ctl(t, "", "export", "--dead", path)
	require.Equal(t, 0, r.code, r.stderr)
	rows = jsonLines(t, r.stdout)
	require.Len(t, rows, 3)
	rc := rows[0]["requestContext"].(map[string]any)
	require.Equal(t, "RetriesExhausted", rc["condition"])
	require.Equal(t, "req-1", rc["requestId"])
	require.Equal(t, map[string]any{"id": float64(100)}, rows[0]["requestPayload"])
}
