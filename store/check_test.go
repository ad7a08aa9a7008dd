package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

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
		require.Equal(t, int64(600-n), rep.Events, "%+v", rep)
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

// registryQueue is a closed queue with functions A (5 events, one leased),
// B (3, one scheduled) and C (paused, none), and the ids they got.
func registryQueue(t *testing.T) (path string, ids map[string]uint32) {
	t.Helper()
	b := setup(t, Options{})
	ctx := t.Context()
	enqueue(t, b.st, newEvents(5, "A")...)
	enqueue(t, b.st, newEvents(2, "B")...)
	enqueue(t, b.st, NewEvent{Function: "B", Due: b.clock.Now().Add(time.Hour)})
	_, err := b.st.Lease(ctx, 1, time.Hour)
	require.NoError(t, err)
	require.NoError(t, b.st.SetPaused(ctx, "C", true))
	ids = map[string]uint32{}
	b.st.statMu.Lock()
	for name, f := range b.st.fns {
		ids[name] = f.id
	}
	b.st.statMu.Unlock()
	require.NoError(t, b.st.Close())
	return b.path, ids
}

func TestCheckRegistry(t *testing.T) {
	t.Parallel()
	base, ids := registryQueue(t)
	seqOfA := uint64(2) // ready: the lease took event 1

	check := func(t *testing.T, fn func(tx *bolt.Tx) error) Report {
		t.Helper()
		path := damaged(t, base, func([]byte, int) {})
		rawUpdate(t, path, fn)
		rep, err := Check(path)
		require.NoError(t, err)
		return rep
	}
	keyOf := func(tx *bolt.Tx, seq uint64) []byte {
		c := tx.Bucket(bucketFnReady).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if fnKeySeq(k) == seq {
				return bytes.Clone(k)
			}
		}
		t.Fatalf("no key for event %d", seq)
		return nil
	}
	record := func(tx *bolt.Tx, name string) fnRecord {
		r, err := decodeFnRecord(tx.Bucket(bucketFunctions).Get([]byte(name)))
		require.NoError(t, err)
		return r
	}

	t.Run("Clean", func(t *testing.T) {
		t.Parallel()
		rep, err := Check(base)
		require.NoError(t, err)
		require.True(t, rep.OK(), "%v", rep.Problems)
		require.Equal(t, formatVersion, rep.Format)
		require.Equal(t, 3, rep.Functions)
		require.Equal(t, int64(8), rep.Events)
	})

	for _, tc := range []struct {
		name string
		fn   func(tx *bolt.Tx) error
		want []Problem
	}{
		{"MissingKey", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketFnReady).Delete(keyOf(tx, seqOfA))
		}, []Problem{{Where: "event 2", What: "ready, but not in the ready index"}}},
		{"KeyTwice", func(tx *bolt.Tx) error {
			k := keyOf(tx, seqOfA)
			k[12]++ // another due time
			return tx.Bucket(bucketFnReady).Put(k, nil)
		}, []Problem{{Where: "event 2", What: "in the ready index 2 times"}}},
		{"KeyWithoutEvent", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketFnReady).Put(fnReadyKey(ids["A"], 0, 0, 999), nil)
		}, []Problem{{Where: "ready index", What: "key of event 999, which the file does not hold"}}},
		{"KeyUnderAnotherID", func(tx *bolt.Tx) error {
			k := keyOf(tx, seqOfA)
			if err := tx.Bucket(bucketFnReady).Delete(k); err != nil {
				return err
			}
			binary.BigEndian.PutUint32(k, ids["B"])
			return tx.Bucket(bucketFnReady).Put(k, nil)
		}, []Problem{{Where: "event 2", What: fmt.Sprintf(`indexed under function id %d, but "A" has id %d`, ids["B"], ids["A"])}}},
		{"Counts", func(tx *bolt.Tx) error {
			r := record(tx, "A")
			r.leased = 0
			return tx.Bucket(bucketFunctions).Put([]byte("A"), r.encode())
		}, []Problem{{Where: `function "A"`, What: "registry counts 5 events, 0 leased, 360 bytes, but the file holds 5, 1, 360"}}},
		{"NoRecord", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketFunctions).Delete([]byte("B"))
		}, []Problem{
			{Where: "event 6", What: `ready, but its function "B" has no registry record`},
			{Where: "event 7", What: `ready, but its function "B" has no registry record`},
			{Where: "event 8", What: `ready, but its function "B" has no registry record`},
			{Where: `function "B"`, What: "holds 3 events, but has no registry record"},
		}},
		{"RecordThatShouldBeGone", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketFunctions).Put([]byte("D"), fnRecord{id: 99}.encode())
		}, []Problem{{Where: `function "D"`, What: "a record with no events that is not paused: it should have been deleted"}}},
		{"SameID", func(tx *bolt.Tx) error {
			r := record(tx, "C")
			r.id = ids["A"]
			return tx.Bucket(bucketFunctions).Put([]byte("C"), r.encode())
		}, []Problem{{Where: `function "C"`, What: fmt.Sprintf(`id %d is "A"'s too`, ids["A"])}}},
		{"UnreadableRecord", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketFunctions).Put([]byte("C"), []byte{1, 2, 3})
		}, []Problem{{Where: `function "C"`, What: "truncated"}}},
		{"Format1IndexLeft", func(tx *bolt.Tx) error {
			_, err := tx.CreateBucket(bucketReadyV1)
			return err
		}, []Problem{{Where: "bucket ready", What: fmt.Sprintf("format 1's ready index, left in a format %d file", formatVersion)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rep := check(t, tc.fn)
			require.ElementsMatch(t, tc.want, rep.Problems)
		})
	}
}

// TestSalvageRebuildsTheRegistry: ids and counts are those of what was
// copied, and a pause survives.
func TestSalvageRebuildsTheRegistry(t *testing.T) {
	t.Parallel()
	src, _ := registryQueue(t)
	dst := filepath.Join(t.TempDir(), "salvaged.db")
	_, err := Salvage(src, dst)
	require.NoError(t, err)
	rep, err := Check(dst)
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
	st, err := Open(dst, Options{})
	require.NoError(t, err)
	defer st.Close()
	fs := functionsOf(t, st)
	require.Equal(t, []string{"A", "B", "C"}, slices.Sorted(maps.Keys(fs)))
	require.Equal(t, int64(5), fs["A"].Events)
	require.Zero(t, fs["A"].Leased, "a lease becomes ready")
	require.Equal(t, int64(3), fs["B"].Events)
	require.True(t, fs["C"].Paused)
	require.True(t, st.Paused("C"))
}

// TestSalvageProgress: the count reported after each write transaction
// grows and ends on what the report says was copied.
func TestSalvageProgress(t *testing.T) {
	t.Parallel()
	base := buildQueue(t, 2500)
	var calls []int64
	rep, err := SalvageWith(base, filepath.Join(t.TempDir(), "salvaged.db"), SalvageOptions{Progress: func(n int64) { calls = append(calls, n) }})
	require.NoError(t, err)
	require.Greater(t, len(calls), 2, "more than one transaction, more than one call")
	for i := 1; i < len(calls); i++ {
		require.Greater(t, calls[i], calls[i-1])
	}
	require.Equal(t, rep.Events+rep.Values, calls[len(calls)-1])
}
