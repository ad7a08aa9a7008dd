package main_test

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// damagedCopies returns copies of the file at path: cut to three pages,
// and with the flags of its root page overwritten.
func damagedCopies(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	ps := os.Getpagesize()
	dir := t.TempDir()
	out := map[string]string{}

	truncated := filepath.Join(dir, "truncated.db")
	require.NoError(t, os.WriteFile(truncated, b[:3*ps], 0o600))
	out["Truncated"] = truncated

	// The newer meta page (txid at byte 64) names the root page (byte 32).
	m := 0
	if binary.NativeEndian.Uint64(b[ps+64:]) > binary.NativeEndian.Uint64(b[64:]) {
		m = ps
	}
	flipped := append([]byte(nil), b...)
	flipped[int(binary.NativeEndian.Uint64(b[m+32:]))*ps+8] = 0x20
	out["HeaderFlipped"] = filepath.Join(dir, "flipped.db")
	require.NoError(t, os.WriteFile(out["HeaderFlipped"], flipped, 0o600))
	return out
}

// requireNoFault fails on the marks of a Go panic or a fatal signal.
func requireNoFault(t *testing.T, r result) {
	t.Helper()
	for _, mark := range []string{"panic:", "goroutine ", "SIGBUS", "SIGSEGV", "fatal error"} {
		require.NotContains(t, r.stderr, mark)
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	path := seed(t)

	t.Run("CleanFile", func(t *testing.T) {
		t.Parallel()
		r := ctl(t, "", "check", path)
		require.Equal(t, 0, r.code, r.stderr)
		require.Contains(t, r.stdout, "ok")

		r = ctl(t, "", "--json", "check", path)
		require.Equal(t, 0, r.code, r.stderr)
		var out struct {
			OK     bool  `json:"ok"`
			Events int64 `json:"events"`
		}
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &out))
		require.True(t, out.OK)
		require.Equal(t, int64(3), out.Events)
	})

	for name, damaged := range damagedCopies(t, path) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			before, err := os.ReadFile(damaged)
			require.NoError(t, err)
			for _, args := range [][]string{{"stats"}, {"ls"}, {"check"}, {"--json", "check"}} {
				r := ctl(t, "", append(args, damaged)...)
				requireNoFault(t, r)
				require.Equal(t, 1, r.code, "%v: %s", args, r.stderr)
				require.Contains(t, r.stderr, "dispatchctl "+args[len(args)-1])
			}
			r := ctl(t, "", "check", damaged)
			require.Contains(t, r.stderr, "is damaged")

			salvaged := filepath.Join(t.TempDir(), "salvaged.db")
			r = ctl(t, "", "salvage", damaged, salvaged)
			requireNoFault(t, r)
			require.Equal(t, 0, r.code, r.stderr)
			require.Contains(t, r.stdout, "could not be read")
			require.Contains(t, r.stderr, "is damaged")
			r = ctl(t, "", "check", salvaged)
			require.Equal(t, 0, r.code, "the salvaged file is sound: %s", r.stderr)
			require.Equal(t, 0, ctl(t, "", "stats", salvaged).code)

			after, err := os.ReadFile(damaged)
			require.NoError(t, err)
			require.Equal(t, before, after, "no command writes a damaged file")
		})
	}
}

func TestSalvage(t *testing.T) {
	t.Parallel()
	path := seed(t)
	salvaged := filepath.Join(t.TempDir(), "salvaged.db")
	r := ctl(t, "", "--json", "salvage", path, salvaged)
	require.Equal(t, 0, r.code, r.stderr)
	var rep struct {
		Events int64 `json:"events"`
		Values int64 `json:"values"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rep))
	require.Equal(t, int64(3), rep.Events)

	s := stats(t, salvaged)
	require.Equal(t, int64(3), s.Queued)
	require.Equal(t, 3, s.DeadLetters, "dead letters are copied, and counted")
	require.Equal(t, stats(t, path).Keys, s.Keys, "keys are copied, and counted")
	require.NotZero(t, s.Keys)
	require.Equal(t, []string{"100", "101", "102"}, ids(jsonLines(t, ctl(t, "", "--json", "ls", "--state", "dead", salvaged).stdout)))

	r = ctl(t, "", "salvage", path, salvaged)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "exists")
	require.Equal(t, 2, ctl(t, "", "salvage", path).code, "usage")
}
