package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// salvageChecked salvages src with o into a new file, and checks what
// every salvage must give: src unwritten, a sound new file, and counters
// that agree with the report.
func salvageChecked(t *testing.T, src string, o SalvageOptions) (SalvageReport, *Store) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "salvaged.db")
	before := fileSum(src)
	rep, err := SalvageWith(src, dst, o)
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

	rep, st2 := salvageChecked(t, src, SalvageOptions{})
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

// eventsBySeq returns the events of st by sequence number.
func eventsBySeq(t *testing.T, st *Store) map[uint64]Event {
	t.Helper()
	out := map[uint64]Event{}
	for _, e := range scanAll(t, st) {
		out[e.Seq] = e
	}
	return out
}

// livePages returns, for each event of the file at path, the last page
// (overflow included) of the leaf holding its record and of the one
// holding its payload, as its newer tree reaches them.
func livePages(t *testing.T, path string) (rec, pay map[uint64]uint64) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	pf, err := readMetas(bytes.NewReader(b), int64(len(b)))
	require.NoError(t, err)
	ps := uint64(pf.meta.pageSize)
	rec, pay = map[uint64]uint64{}, map[uint64]uint64{}
	w := newWalker(pf, true)
	var last uint64 // of the leaf page being read
	w.page = func(id uint64, _ [][]byte, flags uint16, _ int) {
		last = id + uint64(native.Uint32(b[id*ps+12:]))
	}
	w.kv = func(path [][]byte, k, _ []byte) {
		if len(path) != 1 || len(k) != 8 {
			return
		}
		switch seq := binary.BigEndian.Uint64(k); string(path[0]) {
		case string(bucketEvents):
			rec[seq] = last
		case string(bucketPayloads):
			pay[seq] = last
		}
	}
	w.walk()
	require.Empty(t, w.problems)
	return rec, pay
}

// TestSalvageScanTruncatedFile cuts a queue written in one transaction,
// and one written in thirty, part way through its pages: the tree alone
// misses leaves it cannot reach, the page scan brings back every event
// whose record and payload lie below the cut, each as it was.
//
// 1,500 events show what 3,000 did: half the pages, cut at the same share
// of them, with the same result, salvaged by the scan alone, in half the
// time under -race. DISPATCH_SOAK=1 writes 3,000.
func TestSalvageScanTruncatedFile(t *testing.T) {
	t.Parallel()
	n := 1500
	if soak() {
		n = 3000
	}
	for _, batches := range []int{1, 30} {
		t.Run(fmt.Sprintf("%dBatches", batches), func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "q.db")
			st, err := Open(path, Options{})
			require.NoError(t, err)
			for b := range batches {
				evs := newEvents(n/batches, fmt.Sprintf("fn-%d", b))
				for i := range evs {
					evs[i].Key = fmt.Sprintf("k-%d-%d", b, i)
				}
				enqueue(t, st, evs...)
				// Each batch its own transaction, as the layout this test
				// cuts needs: the log would apply them all in one.
				require.NoError(t, st.flush())
			}
			orig := eventsBySeq(t, st)
			require.NoError(t, st.Close())

			fi, err := os.Stat(path)
			require.NoError(t, err)
			// The cut is a share of the pages in use: bbolt grows the file
			// by doubling, so a share of its size could lie past them all.
			_, used := fileSize(t, path)
			ps := int64(os.Getpagesize())
			rec, pay := livePages(t, path)
			// The events whose record and payload both lie below cut.
			survivors := func(cut uint64) map[uint64]bool {
				want := map[uint64]bool{}
				for seq, last := range rec {
					if last < cut && pay[seq] < cut {
						want[seq] = true
					}
				}
				return want
			}
			cut := uint64(used * 6 / 10 / ps)
			if batches == 1 {
				// One transaction writes each bucket's leaves together,
				// in an order the freelist chooses: cut where a third
				// of the events survive.
				for cut = 2; len(survivors(cut)) < n/3; cut++ {
				}
			}
			want := survivors(cut)
			src := damaged(t, path, func([]byte, int) {})
			require.NoError(t, os.Truncate(src, int64(cut)*ps))
			require.Greater(t, len(want), n/6, "the cut keeps many leaves")
			require.Less(t, len(want), n)

			plain, _ := salvageChecked(t, src, SalvageOptions{})
			rep, st2 := salvageChecked(t, src, SalvageOptions{ScanPages: true})
			t.Logf("%d batches, %d pages cut to %d; %d events have record and payload below the cut; salvaged %d without the scan, %d with it (%d from %d orphan pages)",
				batches, fi.Size()/ps, cut, len(want), plain.Events, rep.Events, rep.FromOrphanPages, rep.OrphanPages)
			require.Less(t, plain.Events, int64(len(want)), "the tree alone misses leaves it cannot reach")

			got := eventsBySeq(t, st2)
			for seq := range want {
				require.Contains(t, got, seq, "every event whose pages survive is recovered")
			}
			for seq, e := range got {
				o := orig[seq]
				require.Equal(t, o.Function, e.Function, "event %d", seq)
				require.Equal(t, o.Key, e.Key, "event %d", seq)
				require.Equal(t, o.Payload, e.Payload, "event %d", seq)
				require.Equal(t, o.Enqueued, e.Enqueued, "event %d", seq)
			}
			if batches == 1 {
				// One transaction leaves no stale copies: exactly those.
				require.Len(t, got, len(want))
			}
			require.Equal(t, rep.Events-plain.Events, rep.FromOrphanPages)
			require.Positive(t, rep.OrphanPages)
		})
	}
}

func TestSalvageScanBringsBackAckedEvents(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	acked := enqueue(t, b.st, newEvents(1000, "delivered")...)
	leased, err := b.st.Lease(t.Context(), 1000, time.Hour)
	require.NoError(t, err)
	require.Len(t, leased, 1000)
	require.NoError(t, b.st.Ack(t.Context(), acked...))
	live := enqueue(t, b.st, newEvents(100, "live")...)
	require.NoError(t, b.st.Close())

	plain, _ := salvageChecked(t, b.path, SalvageOptions{})
	require.Equal(t, SalvageReport{Events: 100}, plain, "a sound file: the tree alone")

	rep, st := salvageChecked(t, b.path, SalvageOptions{ScanPages: true})
	require.Positive(t, rep.FromOrphanPages, "freed pages still hold acked events, and the scan takes them")
	require.Equal(t, 100+rep.FromOrphanPages, rep.Events)
	require.Empty(t, rep.Problems)
	got := eventsBySeq(t, st)
	for _, seq := range live {
		require.Equal(t, "live", got[seq].Function)
	}
	for seq, e := range got {
		if e.Function == "delivered" {
			require.LessOrEqual(t, seq, acked[len(acked)-1], "an acked event, back")
			// The lease's copy (1 attempt) or, where its page was reused
			// since, the enqueue's (0): bbolt's page reuse decides which.
			require.LessOrEqual(t, e.Attempts, 1, "a copy this event really had")
		}
	}
}

// leafPage builds leaf page id of size ps holding kvs, sorted by key.
func leafPage(id uint64, ps int, kvs ...[2][]byte) []byte {
	p := make([]byte, ps)
	native.PutUint64(p, id)
	native.PutUint16(p[8:], pageLeaf)
	native.PutUint16(p[10:], uint16(len(kvs)))
	data := pageHeaderSize + len(kvs)*elementSize
	for i, kv := range kvs {
		at := pageHeaderSize + i*elementSize
		native.PutUint32(p[at+4:], uint32(data-at))
		native.PutUint32(p[at+8:], uint32(len(kv[0])))
		native.PutUint32(p[at+12:], uint32(len(kv[1])))
		data += copy(p[data:], kv[0])
		data += copy(p[data:], kv[1])
	}
	return p
}

func TestSalvageScanTakesOnlyCheckedRecords(t *testing.T) {
	t.Parallel()
	path := damaged(t, buildQueue(t, 600), func([]byte, int) {})
	payload := func(seq uint64) []byte { return fmt.Appendf(nil, `{"orphan":%d}`, seq) }
	rec := func(seq uint64, fn string, attempts uint32) *record {
		p := payload(seq)
		return &record{function: fn, attempts: attempts, enqueued: 1, due: 1, lastAttempt: int64(attempts),
			payloadLen: uint32(len(p)), payloadCRC: checksum(p)}
	}
	const v1, v2, badSum, noPayload, twice, live = 10001, 10002, 10003, 10004, 10005, 5
	bad := rec(badSum, "bad", 0).encode(nil)
	bad[3] ^= 0x01
	kv := func(seq uint64, v []byte) [2][]byte { return [2][]byte{seqKey(seq), v} }

	// Three orphan pages past the end of the tree: records, payloads, and
	// an older copy of one record.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	require.NoError(t, err)
	fi, err := f.Stat()
	require.NoError(t, err)
	ps := os.Getpagesize()
	id := uint64(fi.Size()) / uint64(ps)
	for _, p := range [][]byte{
		leafPage(id, ps,
			kv(live, rec(live, "stale", 9).encode(nil)),
			kv(v1, rec(v1, "v1", 0).encodeV1(nil)),
			kv(v2, rec(v2, "v2", 0).encode(nil)),
			kv(badSum, bad),
			kv(noPayload, rec(noPayload, "nopayload", 0).encode(nil)),
			kv(twice, rec(twice, "older", 1).encode(nil))),
		leafPage(id+1, ps, kv(v1, payload(v1)), kv(v2, payload(v2)), kv(badSum, payload(badSum)), kv(twice, payload(twice))),
		leafPage(id+2, ps, kv(twice, rec(twice, "newer", 2).encode(nil))),
	} {
		_, err := f.Write(p)
		require.NoError(t, err)
	}
	require.NoError(t, f.Close())

	plain, _ := salvageChecked(t, path, SalvageOptions{})
	require.Equal(t, SalvageReport{Events: 600, Values: 5}, plain, "pages no tree reaches are not read")

	rep, st := salvageChecked(t, path, SalvageOptions{ScanPages: true})
	require.GreaterOrEqual(t, rep.OrphanPages, 3, "the three, and any freed leaf of the queue's")
	require.Equal(t, SalvageReport{Events: 602, Values: 5, OrphanPages: rep.OrphanPages, FromOrphanPages: 2, OrphanRecordsUnmatched: 1}, rep)
	got := eventsBySeq(t, st)
	require.Equal(t, "v2", got[v2].Function)
	require.Equal(t, payload(v2), got[v2].Payload)
	require.NotContains(t, got, uint64(v1), "a version 1 record carries no checksum: not taken from an orphan page")
	require.NotContains(t, got, uint64(badSum))
	require.NotContains(t, got, uint64(noPayload), "no payload, not written")
	require.Equal(t, "newer", got[twice].Function, "of two orphan copies, the one with more attempts")
	require.Equal(t, 2, got[twice].Attempts)
	require.Equal(t, "orders", got[live].Function, "the tree's copy wins over an orphan one")
	next, err := st.Enqueue(t.Context(), newEvents(1, "fn"))
	require.NoError(t, err)
	require.Equal(t, uint64(twice+1), next[0], "no sequence number seen is handed out again")
}

// TestSalvageScanNeverPanics salvages, with the page scan, copies of a
// queue with bytes flipped all over its pages: the salvage returns a file
// that checks, or an error, and never panics.
//
// Ten seeds, each 200 flips of its own over the queue's pages; the seeds
// are fixed, so every run damages the same ten files. DISPATCH_SOAK=1
// damages twenty.
func TestSalvageScanNeverPanics(t *testing.T) {
	t.Parallel()
	base := buildQueue(t, 600)
	seeds := uint64(10)
	if soak() {
		seeds = 20
	}
	for seed := range seeds {
		rng := rand.New(rand.NewPCG(seed, 1))
		src := damaged(t, base, func(b []byte, ps int) {
			// Bytes flipped all over, headers and element tables
			// included, as a scan of stale pages would meet them.
			for range 200 {
				page := 2 + rng.IntN(len(b)/ps-2)
				b[page*ps+rng.IntN(64+rng.IntN(ps-64))] ^= byte(1 + rng.IntN(255))
			}
		})
		dst := filepath.Join(t.TempDir(), "salvaged.db")
		rep, err := SalvageWith(src, dst, SalvageOptions{ScanPages: true})
		if err != nil {
			continue // a file whose metas are both gone
		}
		check, err := Check(dst)
		require.NoError(t, err)
		require.True(t, check.OK(), "seed %d: %v", seed, check.Problems)
		require.Equal(t, rep.Events, check.Events)
	}
}
