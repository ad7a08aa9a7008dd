package store

import (
	"cmp"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// fixture2 copies testdata/format2.bolt, written before priorities by
// the program in testdata/format2-gen.go.txt, into a new directory and
// reads its manifest; the clock is set to the time the file was closed.
func fixture2(t *testing.T) (string, manifest, *clock) {
	t.Helper()
	b, err := os.ReadFile("testdata/format2.bolt")
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "format2.db")
	require.NoError(t, os.WriteFile(path, b, 0o600))
	var m manifest
	j, err := os.ReadFile("testdata/format2.json")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(j, &m))
	return path, m, &clock{t: time.Unix(0, m.Clock).UTC()}
}

// rawVersions counts the event records of each version in the file, and
// the ready index keys by priority byte.
func rawVersions(t *testing.T, path string) (records map[byte]int, prios map[byte]int) {
	t.Helper()
	records, prios = map[byte]int{}, map[byte]int{}
	db, err := bolt.Open(path, 0, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		require.NoError(t, tx.Bucket(bucketEvents).ForEach(func(_, v []byte) error { records[v[0]]++; return nil }))
		return tx.Bucket(bucketFnReady).ForEach(func(k, _ []byte) error { prios[k[4]]++; return nil })
	}))
	return records, prios
}

// TestFormat2FileFromBefore: a file of version 2 records, written before
// priorities, opens as it is, leases in the order it did, and takes
// events of every priority beside its own.
func TestFormat2FileFromBefore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("AsWritten", func(t *testing.T) {
		t.Parallel()
		path, m, clk := fixture2(t)
		records, prios := rawVersions(t, path)
		require.Equal(t, map[byte]int{recordV2: 72}, records)
		require.Equal(t, map[byte]int{priorityNormal: 70}, prios)
		rep := checkFile(t, path)
		require.Equal(t, 2, rep.Format)
		require.Equal(t, int64(72), rep.Events)

		st, err := Open(path, Options{ReadOnly: true, Now: clk.Now, Elapsed: clk.Elapsed})
		require.NoError(t, err)
		defer st.Close()
		s := stats(t, st)
		require.Equal(t, Stats{Events: 72, Ready: 63, Scheduled: 7, Leased: 2, Bytes: m.Stats.Bytes}, s)
		want := m.want(true, m.Clock)
		got := functionsOf(t, st)
		r := got["reports"]
		require.True(t, r.Paused)
		r.Paused = false
		got["reports"] = r
		require.Equal(t, want, got)
	})

	t.Run("LeasesInTheOrderItDid", func(t *testing.T) {
		t.Parallel()
		path, m, clk := fixture2(t)
		st, err := Open(path, Options{Now: clk.Now, Elapsed: clk.Elapsed})
		require.NoError(t, err)
		defer st.Close()
		require.Equal(t, uint64(2), stats(t, st).Recovered)
		require.NoError(t, st.SetPaused(ctx, "reports", false))
		urgent := enqueue(t, st, NewEvent{Function: "orders", Priority: 1, Payload: []byte(`{"urgent":true}`)})[0]
		clk.Add(48 * time.Hour)

		byFn := map[string][]uint64{}
		for {
			got, err := st.Lease(ctx, 5, time.Minute)
			require.NoError(t, err)
			if len(got) == 0 {
				break
			}
			for _, e := range got {
				if e.Seq == urgent {
					require.Empty(t, byFn["orders"], "the urgent event before the old ones")
					continue
				}
				require.Zero(t, e.Priority)
				byFn[e.Function] = append(byFn[e.Function], e.Seq)
			}
			require.NoError(t, st.Ack(ctx, seqsOf(got)...))
		}
		want := map[string][]uint64{}
		evs := slices.Clone(m.Events)
		slices.SortFunc(evs, func(a, b struct {
			Seq       uint64 `json:"seq"`
			Function  string `json:"function"`
			Qualifier string `json:"qualifier"`
			Key       string `json:"key"`
			Payload   string `json:"payload"`
			Attempts  int    `json:"attempts"`
			Leased    bool   `json:"leased"`
			Due       int64  `json:"due"`
			LastError string `json:"last_error"`
		}) int {
			return cmp.Or(cmp.Compare(a.Due, b.Due), cmp.Compare(a.Seq, b.Seq))
		})
		for _, e := range evs {
			want[e.Function] = append(want[e.Function], e.Seq)
		}
		require.Equal(t, want, byFn, "each function's events by due time, then first in first out")
	})

	t.Run("PrioritiesBesideTheOldKeys", func(t *testing.T) {
		t.Parallel()
		path, _, clk := fixture2(t)
		st, err := Open(path, Options{Now: clk.Now, Elapsed: clk.Elapsed})
		require.NoError(t, err)
		seqs := enqueue(t, st,
			NewEvent{Function: "orders", Priority: MinPriority},
			NewEvent{Function: "orders", Priority: MaxPriority},
		)
		got, err := st.Lease(ctx, 1, time.Minute)
		require.NoError(t, err)
		require.Equal(t, seqs[1], got[0].Seq, "before the old events of orders, first in the rotation")
		require.NoError(t, st.Close())
		records, prios := rawVersions(t, path)
		require.Equal(t, map[byte]int{recordV2: 70, recordVersion: 4}, records, "the new events and the leases returned at Open are v3")
		require.Equal(t, map[byte]int{priorityNormal: 72, readyPriority(MinPriority): 1}, prios)
		checkFile(t, path)
	})

	t.Run("DropOldest", func(t *testing.T) {
		t.Parallel()
		path, m, clk := fixture2(t)
		st, err := Open(path, Options{Full: FullDropOldest, MaxEvents: 72, Now: clk.Now, Elapsed: clk.Elapsed})
		require.NoError(t, err)
		requireIndexed(t, st, "built over version 2 records")
		enqueue(t, st, NewEvent{Function: "orders"})
		got := evictions(t, st)
		require.Len(t, got, 1)
		require.Equal(t, m.Events[0].Seq, got[0].Seq, "the oldest")
		require.NoError(t, st.Close())
		checkFile(t, path)
	})

	t.Run("RecordsOfEveryVersion", func(t *testing.T) {
		t.Parallel()
		path, _, clk := fixture2(t)
		rawUpdate(t, path, func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketEvents)
			for seq := uint64(5); seq <= 8; seq++ {
				v := b.Get(seqKey(seq))
				if v == nil {
					continue
				}
				r, err := decodeRecord(v)
				require.NoError(t, err)
				if err := b.Put(seqKey(seq), r.encodeV1(nil)); err != nil {
					return err
				}
			}
			return nil
		})
		records, _ := rawVersions(t, path)
		require.Equal(t, 3, records[recordV1])
		checkFile(t, path)
		st, err := Open(path, Options{Full: FullDropOldest, Now: clk.Now, Elapsed: clk.Elapsed})
		require.NoError(t, err)
		requireIndexed(t, st, "over version 1 records too")
		clk.Add(48 * time.Hour)
		for {
			got, err := st.Lease(ctx, 10, time.Minute)
			require.NoError(t, err)
			if len(got) == 0 {
				break
			}
			require.NoError(t, st.Release(ctx, false, seqsOf(got[:1])...))
			require.NoError(t, st.Ack(ctx, seqsOf(got[1:])...))
			got, err = st.Lease(ctx, 1, time.Minute)
			require.NoError(t, err)
			require.NoError(t, st.Ack(ctx, seqsOf(got)...))
		}
		require.Equal(t, int64(5), stats(t, st).Events, "those of reports, paused")
		require.NoError(t, st.Close())
		checkFile(t, path)
	})
}

// TestFormat2FileMovesToFormat3: a format-2 file opened for writing gets
// the format-3 marker, so that a library of format 2, which would set
// version-3 records aside, refuses it instead; read-only, it stays 2.
func TestFormat2FileMovesToFormat3(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("testdata/format2.bolt")
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "f2.db")
	require.NoError(t, os.WriteFile(path, raw, 0o600))
	ro, err := Open(path, Options{ReadOnly: true})
	require.NoError(t, err)
	require.NoError(t, ro.Close())
	rep, err := Check(path)
	require.NoError(t, err)
	require.Equal(t, 2, rep.Format, "read-only writes nothing")
	st, err := Open(path, Options{})
	require.NoError(t, err)
	require.NoError(t, st.Close())
	rep, err = Check(path)
	require.NoError(t, err)
	require.Equal(t, formatVersion, rep.Format)
	require.True(t, rep.OK(), "%v", rep.Problems)
}
