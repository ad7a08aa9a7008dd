package main_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher/store"
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

func TestSalvageScanPages(t *testing.T) {
	t.Parallel()
	// A queue of 3,000 events cut to 60%: the roots of its buckets lie
	// past the cut, most of its leaves below it.
	path := filepath.Join(t.TempDir(), "events.db")
	// Each batch its own transaction of the file, as the layout this test
	// cuts needs: the write-ahead log would apply all thirty in one.
	st, err := store.Open(path, store.Options{NoLog: true})
	require.NoError(t, err)
	for b := range 30 {
		evs := make([]store.NewEvent, 100)
		for i := range evs {
			evs[i] = store.NewEvent{Function: "orders", Payload: fmt.Appendf(nil, `{"b":%d,"i":%d}`, b, i)}
		}
		_, err := st.Enqueue(t.Context(), evs)
		require.NoError(t, err)
	}
	require.NoError(t, st.Close())
	fi, err := os.Stat(path)
	require.NoError(t, err)
	ps := int64(os.Getpagesize())
	require.NoError(t, os.Truncate(path, fi.Size()*6/10/ps*ps))

	plain := filepath.Join(t.TempDir(), "plain.db")
	r := ctl(t, "", "--json", "salvage", path, plain)
	require.Equal(t, 0, r.code, r.stderr)
	var without struct {
		Events int64 `json:"events"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &without))

	scanned := filepath.Join(t.TempDir(), "scanned.db")
	r = ctl(t, "", "--json", "salvage", "--scan-pages", path, scanned)
	requireNoFault(t, r)
	require.Equal(t, 0, r.code, r.stderr)
	var with struct {
		Events          int64 `json:"events"`
		FromOrphanPages int64 `json:"fromOrphanPages"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &with))
	require.Greater(t, with.Events, without.Events+1000, "the scan finds the leaves the tree lost")
	require.Equal(t, with.Events-without.Events, with.FromOrphanPages)
	require.Equal(t, 0, ctl(t, "", "check", scanned).code, "the salvaged file is sound")
	require.Equal(t, with.Events, stats(t, scanned).Queued)

	r = ctl(t, "", "salvage", "--scan-pages", path, filepath.Join(t.TempDir(), "again.db"))
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, fmt.Sprintf("%d events came from", with.FromOrphanPages))
	require.Contains(t, r.stdout, "will be sent again")
	require.NotContains(t, ctl(t, "", "salvage", path, filepath.Join(t.TempDir(), "plain2.db")).stdout, "orphan")
}
