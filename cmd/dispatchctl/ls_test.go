package main_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLs(t *testing.T) {
	t.Parallel()
	path := seed(t)

	t.Run("ReadyTable", func(t *testing.T) {
		r := ctl(t, "", "ls", "--state", "ready", path)
		require.Equal(t, 0, r.code, r.stderr)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		require.Len(t, lines, 4)
		require.Regexp(t, `^ID\s+STATE\s+FUNCTION\s+QUALIFIER\s+KEY\s+ATTEMPTS\s+ENQUEUED\s+SIZE$`, lines[0])
		require.Regexp(t, `^1\s+ready\s+orders\s+-\s+order-1\s+0\s+\S+\s+22$`, lines[1])
		require.Regexp(t, `^3\s+ready\s+billing\s+prod\s+-`, lines[3])
		require.Empty(t, r.stderr)
	})
	t.Run("FunctionJSON", func(t *testing.T) {
		r := ctl(t, "", "--json", "ls", "--function", "orders", path)
		require.Equal(t, 0, r.code, r.stderr)
		rows := jsonLines(t, r.stdout)
		require.Equal(t, []string{"1", "2"}, ids(rows))
		require.Equal(t, "ready", rows[0]["state"])
	})
	t.Run("Paging", func(t *testing.T) {
		r := ctl(t, "", "--json", "ls", "--limit", "2", path)
		require.Equal(t, 0, r.code, r.stderr)
		rows := jsonLines(t, r.stdout)
		require.Len(t, rows, 3)
		require.Equal(t, map[string]any{"next": "2"}, rows[2])
		r = ctl(t, "", "--json", "ls", "--limit", "2", "--after", "2", path)
		rows = jsonLines(t, r.stdout)
		require.Equal(t, []string{"3"}, ids(rows))
		require.Len(t, rows, 1, "no next line on the last page")

		r = ctl(t, "", "ls", "--limit", "1", path)
		require.Equal(t, 0, r.code, r.stderr)
		require.Equal(t, "more: --after 1\n", r.stderr)
	})
	t.Run("Scheduled", func(t *testing.T) {
		r := ctl(t, "", "--json", "ls", "--state", "scheduled", path)
		require.Equal(t, 0, r.code, r.stderr)
		require.Empty(t, r.stdout)
	})
	t.Run("Dead", func(t *testing.T) {
		r := ctl(t, "", "ls", "--state", "dead", path)
		require.Equal(t, 0, r.code, r.stderr)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		require.Len(t, lines, 4)
		require.Regexp(t, `^100\s+retries-exhausted\s+orders\s+-\s+-\s+3\s+`, lines[1])

		r = ctl(t, "", "--json", "ls", "--state", "dead", "--function", "orders", path)
		require.Equal(t, []string{"100", "102"}, ids(jsonLines(t, r.stdout)))

		r = ctl(t, "", "--json", "ls", "--reason", "rejected", path)
		require.Equal(t, 0, r.code, r.stderr)
		rows := jsonLines(t, r.stdout)
		require.Equal(t, []string{"101"}, ids(rows))
		require.Equal(t, "rejected", rows[0]["reason"])

		r = ctl(t, "", "--json", "ls", "--state", "dead", "--older-than", "24h", path)
		require.Equal(t, []string{"100"}, ids(jsonLines(t, r.stdout)))

		r = ctl(t, "", "--json", "ls", "--state", "dead", "--limit", "1", "--after", "100", path)
		rows = jsonLines(t, r.stdout)
		require.Equal(t, []string{"101"}, ids(rows))
		require.Equal(t, map[string]any{"next": "101"}, rows[len(rows)-1])
	})
	t.Run("Usage", func(t *testing.T) {
		require.Equal(t, 2, ctl(t, "", "ls", "--state", "bogus", path).code)
		require.Equal(t, 2, ctl(t, "", "ls", "--state", "ready", "--reason", "rejected", path).code)
		require.Equal(t, 2, ctl(t, "", "ls").code)
	})
}
