package store

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// leafOf returns a leaf page of bucket name in the file at path and the
// number of keys on it.
func leafOf(t *testing.T, path string, name []byte) (id uint64, count int) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	pf, err := readMetas(bytes.NewReader(b), int64(len(b)))
	require.NoError(t, err)
	w := newWalker(pf, true)
	var leaves [][2]uint64
	w.page = func(id uint64, p [][]byte, flags uint16, n int) {
		if len(p) == 1 && bytes.Equal(p[0], name) && flags == pageLeaf {
			leaves = append(leaves, [2]uint64{id, uint64(n)})
		}
	}
	w.walk()
	require.Empty(t, w.problems)
	require.Greater(t, len(leaves), 2, "bucket %s should span several leaves", name)
	l := leaves[len(leaves)/2]
	return l[0], int(l[1])
}

// damaged writes a copy of the file at path with fn applied to it.
func damaged(t *testing.T, path string, fn func(b []byte, ps int)) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	fn(b, os.Getpagesize())
	out := filepath.Join(t.TempDir(), "damaged.db")
	require.NoError(t, os.WriteFile(out, b, 0o600))
	return out
}

func TestCheck(t *testing.T) {
	t.Parallel()
	base := buildQueue(t, 600)

	t.Run("CleanFileIsOK", func(t *testing.T) {
		t.Parallel()
		rep, err := Check(base)
		require.NoError(t, err)
		require.True(t, rep.OK(), "%v", rep.Problems)
		require.Equal(t, int64(600), rep.Events)
		require.Equal(t, int64(3), rep.Leased)
		require.Positive(t, rep.Pages)
	})

	t.Run("DamagedPageIsNamed", func(t *testing.T) {
		t.Parallel()
		id, _ := leafOf(t, base, bucketPayloads)
		path := damaged(t, base, func(b []byte, ps int) { b[int(id)*ps+8] = 0x20 })
		before := fileSum(path)
		rep, err := Check(path)
		require.NoError(t, err)
		require.False(t, rep.OK())
		require.Contains(t, rep.Problems[0].String(), "flags 0x20")
		require.Contains(t, rep.Problems[0].Where, `bucket "payloads"`)
		require.Equal(t, before, fileSum(path), "Check never writes")
	})

	t.Run("TruncatedFile", func(t *testing.T) {
		t.Parallel()
		path := damaged(t, base, func([]byte, int) {})
		require.NoError(t, os.Truncate(path, int64(3*os.Getpagesize())))
		rep, err := Check(path)
		require.NoError(t, err)
		require.False(t, rep.OK())
		require.Contains(t, rep.Problems[0].What, "high-water mark")
	})

	t.Run("FlippedRecordIsNamed", func(t *testing.T) {
		t.Parallel()
		path := damaged(t, base, func([]byte, int) {})
		rawUpdate(t, path, func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketEvents)
			rec := bytes.Clone(b.Get(seqKey(7)))
			rec[bytes.Index(rec, []byte("orders"))] ^= 0x20
			return b.Put(seqKey(7), rec)
		})
		rep, err := Check(path)
		require.NoError(t, err)
		require.Equal(t, []Problem{{Where: "event 7", What: "record checksum mismatch"}}, rep.Problems)
		require.Equal(t, int64(599), rep.Events)
	})

	t.Run("CountersAgainstContents", func(t *testing.T) {
		t.Parallel()
		path := damaged(t, base, func([]byte, int) {})
		rawUpdate(t, path, func(tx *bolt.Tx) error {
			m := tx.Bucket(bucketMeta)
			c, err := decodeCounts(m.Get(keyCounters))
			require.NoError(t, err)
			c.events++
			return m.Put(keyCounters, c.encode())
		})
		rep, err := Check(path)
		require.NoError(t, err)
		require.Equal(t, []Problem{{Where: "counters", What: "events 601, but the file holds 600"}}, rep.Problems)
	})

	t.Run("HeldFileIsRefused", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Options{})
		_, err := Check(b.path)
		require.ErrorIs(t, err, ErrLocked)
	})
}

func TestSalvage(t *testing.T) {
	t.Parallel()
	base := buildQueue(t, 600)

	// salvage copies src into a new file and opens it.
	salvage := func(t *testing.T, src string) (SalvageReport, *Store) {
		t.Helper()
		dst := filepath.Join(t.TempDir(), "salvaged.db")
		before := fileSum(src)
		rep, err := Salvage(src, dst)
		require.NoError(t, err)
		require.Equal(t, before, fileSum(src), "the source is never written")
		check, err := Check(dst)
		require.NoError(t, err)
		require.True(t, check.OK(), "the new file is sound: %v", check.Problems)
		st, err := Open(dst, Options{})
		require.NoError(t, err)
		t.Cleanup(func() { st.Close() })
		s := stats(t, st)
		require.Equal(t, rep.Events, s.Events, "counters agree with what was copied")
		require.Equal(t, int64(0), s.Leased)
		return rep, st
	}

	t.Run("CleanFileCopiesEverything", func(t *testing.T) {
		t.Parallel()
		rep, st := salvage(t, base)
		require.Equal(t, SalvageReport{Events: 600, Values: 5}, rep)
		orig, err := Open(damaged(t, base, func([]byte, int) {}), Options{})
		require.NoError(t, err)
		defer orig.Close()
		want, got := scanAll(t, orig), scanAll(t, st)
		require.Len(t, got, len(want))
		for i := range want {
			w := want[i]
			w.Leased, w.LeaseUntil = false, got[i].LeaseUntil // leases become ready
			require.Equal(t, w, got[i])
		}
		require.Equal(t, 1, got[0].Attempts, "a lease's attempt is kept")
		require.NoError(t, st.db.View(func(tx *bolt.Tx) error {
			dl := tx.Bucket([]byte("deadletters"))
			require.NotNil(t, dl)
			require.Equal(t, uint64(5), dl.Sequence(), "the letter count is kept")
			require.Equal(t, []byte("letter"), dl.Get(seqKey(3)))
			return nil
		}))
		next, err := st.Enqueue(t.Context(), newEvents(1, "fn"))
		require.NoError(t, err)
		require.Equal(t, uint64(601), next[0], "sequence numbers are not reused")
	})

	t.Run("OneDamagedLeafPage", func(t *testing.T) {
		t.Parallel()
		id, n := leafOf(t, base, bucketEvents)
		src := damaged(t, base, func(b []byte, ps int) { b[int(id)*ps+11] ^= 0x80 })
		_, err := Open(src, Options{})
		var ce *CorruptError
		require.ErrorAs(t, err, &ce, "Open refuses the file")

		rep, st := salvage(t, src)
		require.Equal(t, int64(600-n), rep.Events, "every event not on the damaged page")
		require.Equal(t, 1, rep.LostPages)
		require.Equal(t, int64(5), rep.Values)
		require.NotEmpty(t, rep.Problems)
		require.Len(t, scanAll(t, st), 600-n)
	})

	t.Run("DamagedPayloadPage", func(t *testing.T) {
		t.Parallel()
		id, n := leafOf(t, base, bucketPayloads)
		src := damaged(t, base, func(b []byte, ps int) { b[int(id)*ps] ^= 0x01 })
		rep, _ := salvage(t, src)
		require.Equal(t, int64(600-n), rep.Events)
		require.Equal(t, int64(n), rep.LostEvents, "records whose payload is lost are counted")
	})

	t.Run("RefusesAnExistingFile", func(t *testing.T) {
		t.Parallel()
		dst := filepath.Join(t.TempDir(), "there.db")
		require.NoError(t, os.WriteFile(dst, []byte("mine"), 0o600))
		_, err := Salvage(base, dst)
		require.ErrorContains(t, err, "exists")
		b, err := os.ReadFile(dst)
		require.NoError(t, err)
		require.Equal(t, "mine", string(b))
	})
}
