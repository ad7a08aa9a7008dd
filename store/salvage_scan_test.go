package store

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// salvageChecked salvages src into a new file, and checks what
// every salvage must give: src unwritten, a sound new file, and counters
// that agree with the report.
func salvageChecked(t *testing.T, src string) (SalvageReport, *Store) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "salvaged.db")
	before := fileSum(src)
	rep, err := Salvage(src, dst)
	require.NoError(t, err)
	require.Equal(t, before, fileSum(src), "the source is never written")
	check, err := Check(dst)
	require.NoError(t, err)
	require.True(t, check.OK(), "the new file is sound: %v", check.Problems)
	require.Equal(t, rep.Events, check.Events)
	st, err := Open(dst, Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	s := stats(t, st)
	require.Equal(t, rep.Events, s.Events, "counters agree with what was copied")
	require.Equal(t, int64(0), s.Leased)
	return rep, st
}

// treePages walks the tree of the newer (or the older) meta of the file
// at path and returns, for each page it reaches, the bucket it is in.
func treePages(t *testing.T, path string, older bool) map[uint64]string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	pf, err := readMetas(bytes.NewReader(b), int64(len(b)))
	require.NoError(t, err)
	if older {
		require.NotNil(t, pf.other)
		pf = pf.withMeta(*pf.other)
	}
	w := newWalker(pf, true)
	out := map[uint64]string{}
	w.page = func(id uint64, p [][]byte, flags uint16, n int) {
		if len(p) == 1 {
			out[id] = string(p[0])
		}
	}
	w.walk()
	require.Empty(t, w.problems)
	return out
}

func TestSalvageOlderMeta(t *testing.T) {
	t.Parallel()
	path := damaged(t, buildQueue(t, 600), func([]byte, int) {})
	st, err := Open(path, Options{})
	require.NoError(t, err)
	enqueue(t, st, newEvents(1, "late")...)
	require.NoError(t, st.Close())

	// A page of the events bucket that the last transaction wrote: the
	// newer tree reaches it, the older one does not.
	newer, older := treePages(t, path, false), treePages(t, path, true)
	var victim uint64
	for id, b := range newer {
		if _, ok := older[id]; !ok && b == string(bucketEvents) && (victim == 0 || id < victim) {
			victim = id
		}
	}
	require.NotZero(t, victim)
	src := damaged(t, path, func(b []byte, ps int) { b[int(victim)*ps+8] = 0x20 })

	rep, st2 := salvageChecked(t, src)
	require.True(t, rep.OlderMeta)
	require.Len(t, rep.Problems, 1, "the older tree is whole: %v", rep.Problems)
	require.Equal(t, "meta", rep.Problems[0].Where)
	require.Contains(t, rep.Problems[0].What, "salvaged from the older")
	require.Equal(t, int64(600), rep.Events, "the older tree holds every event but the last enqueued")
	require.Equal(t, int64(5), rep.Values)
	require.Zero(t, rep.LostPages)
	evs := scanAll(t, st2)
	require.Len(t, evs, 600)
	require.Equal(t, uint64(600), evs[len(evs)-1].Seq)
	next, err := st2.Enqueue(t.Context(), newEvents(1, "fn"))
	require.NoError(t, err)
	require.Equal(t, uint64(602), next[0], "the newer tree's sequence numbers are not reused")
}
