package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const small = MinSegmentSize // 64 KiB: many segments from little data

type rec struct {
	p    Position
	data []byte
}

// bundle is what most tests need: a directory and the options to open the
// log in it with.
type bundle struct {
	dir string
	o   Options
}

func setup(t *testing.T, o Options) *bundle {
	t.Helper()
	if o.SegmentSize == 0 {
		o.SegmentSize = small
	}
	return &bundle{dir: filepath.Join(t.TempDir(), "wal"), o: o}
}

// open opens the log; the test's cleanup closes it if the test did not.
func (b *bundle) open(t *testing.T) *Log {
	t.Helper()
	l, err := Open(b.dir, b.o)
	require.NoError(t, err)
	t.Cleanup(func() {
		if err := l.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("close: %v", err)
		}
	})
	return l
}

// replay opens the log, replays it from `from` and returns the records.
func (b *bundle) replay(t *testing.T, from Position) (*Log, []rec, Tail) {
	t.Helper()
	l := b.open(t)
	recs, tail, err := replayAll(l, from)
	require.NoError(t, err)
	return l, recs, tail
}

func replayAll(l *Log, from Position) ([]rec, Tail, error) {
	var recs []rec
	tail, err := l.Replay(from, func(p Position, data []byte) error {
		recs = append(recs, rec{p, bytes.Clone(data)})
		return nil
	})
	return recs, tail, err
}

// crash leaves the log as a killed process would: nothing synced, no close
// mark (the page cache still holds what was written, as it would after a
// kill but not after a power loss).
func crash(t *testing.T, l *Log) {
	t.Helper()
	l.mu.Lock()
	l.err = errors.New("simulated crash")
	l.mu.Unlock()
	require.NoError(t, l.Close())
}

// appendSync appends the records and syncs, returning them with their
// positions.
func appendSync(t *testing.T, l *Log, data ...[]byte) []rec {
	t.Helper()
	recs := appendOnly(t, l, data...)
	require.NoError(t, l.Sync())
	return recs
}

// appendOnly appends the records one call per record, to learn each one's
// position.
func appendOnly(t *testing.T, l *Log, data ...[]byte) []rec {
	t.Helper()
	var recs []rec
	for _, d := range data {
		first, end, err := l.Append(d)
		require.NoError(t, err)
		require.Equal(t, end, l.End())
		recs = append(recs, rec{first, d})
	}
	return recs
}

func payload(rng *rand.Rand, n int) []byte {
	b := make([]byte, (n+7)&^7)
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	return b[:n]
}

// randomSizes draws record sizes, mostly small, some larger than a small
// segment.
func randomSizes(rng *rand.Rand, n int) []int {
	sizes := make([]int, n)
	for i := range sizes {
		switch r := rng.IntN(100); {
		case r < 3:
			sizes[i] = small + rng.IntN(2*small)
		case r < 15:
			sizes[i] = 1 + rng.IntN(16<<10)
		default:
			sizes[i] = 1 + rng.IntN(600)
		}
	}
	return sizes
}

func requireRecs(t *testing.T, want, got []rec) {
	t.Helper()
	require.Equal(t, len(want), len(got), "records replayed")
	for i := range want {
		require.Equal(t, want[i].p, got[i].p, "position of record %d", i)
		require.True(t, bytes.Equal(want[i].data, got[i].data), "data of record %d", i)
	}
}

func segmentFiles(t *testing.T, dir string) (segs, spares []string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		switch filepath.Ext(e.Name()) {
		case segSuffix:
			segs = append(segs, e.Name())
		case spareSuffix:
			spares = append(spares, e.Name())
		}
	}
	return segs, spares
}

// segmentOf returns the path and file offset of position p.
func segmentOf(t *testing.T, dir string, p Position) (string, int64) {
	t.Helper()
	segs, _ := segmentFiles(t, dir)
	for i := len(segs) - 1; i >= 0; i-- {
		base, _, ok := parseName(segs[i])
		require.True(t, ok)
		if base <= p {
			return filepath.Join(dir, segs[i]), int64(p - base)
		}
	}
	t.Fatalf("no segment holds %#x", uint64(p))
	return "", 0
}

func overwrite(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(b, off)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	rng := rand.New(rand.NewPCG(1, 2))
	l, _, tail := b.replay(t, 0)
	require.Equal(t, Tail{End: HeaderSize, New: true, Reason: "new log", Segment: segName(0)}, tail)

	var want []rec
	for _, n := range randomSizes(rng, 400) {
		want = append(want, appendOnly(t, l, payload(rng, n))...)
		if rng.IntN(4) == 0 {
			require.NoError(t, l.Sync())
		}
	}
	// One Append of many records: positions follow each other.
	var batch [][]byte
	for _, n := range randomSizes(rng, 50) {
		batch = append(batch, payload(rng, n))
	}
	first, end, err := l.Append(batch...)
	require.NoError(t, err)
	require.NoError(t, l.Sync())
	end1 := l.End()
	require.Equal(t, end, end1)
	require.NoError(t, l.Close())

	l, got, tail := b.replay(t, 0)
	require.False(t, tail.Torn, tail.Reason)
	require.Equal(t, "closed", tail.Reason)
	require.Equal(t, end1, tail.End)
	requireRecs(t, want, got[:len(want)])
	require.Len(t, got, len(want)+len(batch))
	require.Equal(t, first, got[len(want)].p)
	for i, d := range batch {
		require.True(t, bytes.Equal(d, got[len(want)+i].data))
	}
	segs, _ := segmentFiles(t, b.dir)
	require.Greater(t, len(segs), 20, "segments written")
	require.NoError(t, l.Close())

	t.Run("FromTheMiddle", func(t *testing.T) {
		for _, i := range []int{1, 77, 200, len(want) - 1} {
			l, rest, _ := b.replay(t, want[i].p)
			requireRecs(t, want[i:], rest[:len(want)-i])
			require.NoError(t, l.Close())
		}
		// An end is a position too: the records after it.
		l, rest, _ := b.replay(t, want[99].p+Position(FrameHeaderSize+len(want[99].data)))
		requireRecs(t, want[100:], rest[:len(want)-100])
		require.NoError(t, l.Close())
		// The end of the log: nothing.
		l, rest, tail := b.replay(t, end1)
		require.Empty(t, rest)
		require.Equal(t, end1, tail.End)
		require.NoError(t, l.Close())
	})
}

func TestReopenContinues(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	rng := rand.New(rand.NewPCG(3, 4))
	var want []rec
	var end Position
	for session := range 6 {
		l, got, tail := b.replay(t, 0)
		requireRecs(t, want, got)
		require.False(t, tail.Torn, tail.Reason)
		if session > 0 {
			require.Equal(t, end, tail.End, "where the last session ended")
		}
		require.Equal(t, tail.End, l.End())
		added := appendSync(t, l, payload(rng, 100), payload(rng, 40<<10), payload(rng, 3))
		// The first record after a Replay follows an epoch mark, but in a
		// new log.
		if session > 0 {
			require.Equal(t, tail.End+epochFrame, added[0].p)
		} else {
			require.Equal(t, tail.End, added[0].p)
		}
		want = append(want, added...)
		end = l.End()
		require.NoError(t, l.Close())
	}
}

func TestOversizeRecord(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	rng := rand.New(rand.NewPCG(5, 6))
	l, _, _ := b.replay(t, 0)
	big := payload(rng, 3*small)
	want := appendSync(t, l, payload(rng, 10), big, payload(rng, 20))
	want = append(want, appendSync(t, l, payload(rng, small-200))...)
	require.NoError(t, l.Close())

	segs, _ := segmentFiles(t, b.dir)
	var sizes []int64
	for _, s := range segs {
		info, err := os.Stat(filepath.Join(b.dir, s))
		require.NoError(t, err)
		sizes = append(sizes, info.Size())
	}
	// The first segment, one of its own for the large record, then the
	// configured size again (the prepared next segment may follow).
	require.GreaterOrEqual(t, len(sizes), 3)
	require.Equal(t, []int64{small, 3*small + 4096, small}, sizes[:3])

	l, got, _ := b.replay(t, 0)
	requireRecs(t, want, got)

	// After a reopen, the next segment made ready before the writer
	// needs it is too small for a large record: it is set aside for one
	// that fits.
	require.NoError(t, l.Close())
	var logged bytes.Buffer
	b.o.Logger = slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l, got, _ = b.replay(t, 0)
	requireRecs(t, want, got)
	want = append(want, appendSync(t, l, payload(rng, small-200))...)
	waitIdle(t, l) // the next segment is ready, and too small for:
	want = append(want, appendSync(t, l, payload(rng, 2*small))...)
	require.NoError(t, l.Close())
	require.Contains(t, logged.String(), "wal: segment kept as a spare")
	_, got, _ = b.replay(t, 0)
	requireRecs(t, want, got)
}

func TestRecycle(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	rng := rand.New(rand.NewPCG(7, 8))
	l, _, _ := b.replay(t, 0)

	var want []rec
	write := func(n int) {
		for range n {
			want = append(want, appendOnly(t, l, payload(rng, 200+rng.IntN(3000)))...)
		}
		require.NoError(t, l.Sync())
	}
	write(300) // ~500 KiB: eight segments or so
	segsBefore, _ := segmentFiles(t, b.dir)
	upTo := want[len(want)-1].p
	require.NoError(t, l.Recycle(upTo))
	segs, spares := segmentFiles(t, b.dir)
	require.Less(t, len(segs), len(segsBefore))
	require.LessOrEqual(t, len(spares), maxSpares)
	// The segment holding upTo is kept.
	path, _ := segmentOf(t, b.dir, upTo)
	require.FileExists(t, path)

	// Write on: the spares become segments again, with their old frames
	// in them.
	keep := len(want) - 1
	write(600)
	require.NoError(t, l.Recycle(want[keep].p))
	segsNow, sparesNow := segmentFiles(t, b.dir)
	require.LessOrEqual(t, len(sparesNow), maxSpares)
	// Bounded: what is live plus the spares, not everything ever written.
	require.Less(t, l.Size(), int64(len(segsNow)+maxSpares+1)*small)
	require.NoError(t, l.Close())

	l, got, tail := b.replay(t, want[keep].p)
	require.False(t, tail.Torn, tail.Reason)
	requireRecs(t, want[keep:], got)

	_, _, err := replayAll(l, 0)
	require.ErrorIs(t, err, ErrGap)
	_, _, err = replayAll(l, want[0].p)
	require.ErrorIs(t, err, ErrGap)
	require.NoError(t, l.Close())

	t.Run("StaleFramesAreNotReplayed", func(t *testing.T) {
		// A spare reused as the next segment still holds its old frames
		// past the new records: a reopen reads up to the new ones only.
		b := setup(t, Options{padAlways: true})
		l, _, _ := b.replay(t, 0)
		// Each Append a page of its own (see pad marks): in each life,
		// the records lie at the same offsets.
		big := payload(rng, 1000)
		for range 3 * small / pageSize {
			appendOnly(t, l, big)
		}
		require.NoError(t, l.Sync())
		require.NoError(t, l.Recycle(l.End()))
		_, spares := segmentFiles(t, b.dir)
		require.NotEmpty(t, spares)
		// Fill until the spares are in use again; each new segment gets a
		// few records, then the log stops (no close mark) with old
		// frames of the same length right after the new ones.
		var after []rec
		for len(after) < 2*small/pageSize+5 {
			after = append(after, appendSync(t, l, big)...)
		}
		crash(t, l)
		_, got, tail := b.replay(t, after[0].p)
		requireRecs(t, after, got)
		require.True(t, tail.Torn, "the previous life's bytes lie past the end")
		require.Contains(t, tail.Reason, "checksum mismatch in the record")
	})
}

func TestTornTail(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(9, 10))
	// Build one log, then cut its last record at every byte in a copy.
	src := setup(t, Options{})
	l, _, _ := src.replay(t, 0)
	want := appendSync(t, l, payload(rng, 300), payload(rng, 17), payload(rng, 5000))
	lastData := payload(rng, 45)
	for i := range lastData {
		lastData[i] |= 1 // zeros written over a zero byte would change nothing
	}
	last := appendSync(t, l, lastData)[0]
	crash(t, l)

	for _, fill := range []string{"zeros", "garbage"} {
		for cut := range FrameHeaderSize + len(last.data) {
			t.Run(fmt.Sprintf("%s from byte %d", fill, cut), func(t *testing.T) {
				t.Parallel()
				tornAt(t, src, want, last, fill, cut)
			})
		}
	}
}

// tornAt cuts the last record of the log in src at byte cut, with zeros or
// garbage after it, in a copy, and replays and appends to the copy.
func tornAt(t *testing.T, src *bundle, want []rec, last rec, fill string, cut int) {
	rng := rand.New(rand.NewPCG(uint64(cut), uint64(len(fill))))
	lastEnd := last.p + Position(FrameHeaderSize+len(last.data))
	b := setup(t, Options{})
	require.NoError(t, os.CopyFS(b.dir, os.DirFS(src.dir)))
	path, off := segmentOf(t, b.dir, last.p)
	rest := make([]byte, int(lastEnd-last.p)-cut+FrameHeaderSize)
	if fill == "garbage" {
		orig, err := os.ReadFile(path)
		require.NoError(t, err)
		rest = payload(rng, len(rest))
		rest[0] = orig[off+int64(cut)] ^ byte(1+rng.IntN(255))
	}
	overwrite(t, path, off+int64(cut), rest)

	l, got, tail := b.replay(t, 0)
	requireRecs(t, want, got)
	require.Equal(t, last.p, tail.End)
	// Zeros from the first byte are a write that never happened.
	require.Equal(t, fill == "garbage" || cut > 0, tail.Torn, tail.Reason)
	require.Equal(t, filepath.Base(path), tail.Segment)

	more := appendSync(t, l, payload(rng, 1+rng.IntN(90)))
	require.NoError(t, l.Close())
	_, got, tail = b.replay(t, 0)
	requireRecs(t, append(slices.Clone(want), more...), got)
	require.False(t, tail.Torn, tail.Reason)
}

func TestFlippedBit(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(11, 12))
	for _, where := range []string{"length", "checksum", "data"} {
		t.Run(where, func(t *testing.T) {
			b := setup(t, Options{})
			l, _, _ := b.replay(t, 0)
			var want []rec
			for range 40 {
				want = append(want, appendSync(t, l, payload(rng, 50+rng.IntN(200)))...)
			}
			require.NoError(t, l.Close())
			mid := want[20]
			path, off := segmentOf(t, b.dir, mid.p)
			switch where {
			case "checksum":
				off += 4
			case "data":
				off += FrameHeaderSize + int64(rng.IntN(len(mid.data)))
			}
			f, err := os.ReadFile(path)
			require.NoError(t, err)
			overwrite(t, path, off, []byte{f[off] ^ 1<<rng.IntN(8)})

			l, got, tail := b.replay(t, 0)
			requireRecs(t, want[:20], got)
			require.True(t, tail.Torn)
			require.Equal(t, mid.p, tail.End)
			require.NotEmpty(t, tail.Reason)

			// Replayed from a later record (synced, and so were those
			// before it), the damage is corruption, not an end.
			_, err = l.Replay(want[30].p, nil)
			var ce *CorruptError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, filepath.Base(path), ce.Segment)
			_, recOff := segmentOf(t, b.dir, mid.p)
			require.Equal(t, recOff, ce.Offset)
		})
	}
}

// TestResumeOverValidFrames covers the frames a crash can leave past the
// end that are valid under the segment's nonce: the writer must not let
// them line up behind its new records.
func TestResumeOverValidFrames(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(13, 14))

	t.Run("InTheSegment", func(t *testing.T) {
		// One Append of three records; the crash lost the first one's
		// bytes only (zeros: what a page never written reads as).
		b := setup(t, Options{})
		l, _, _ := b.replay(t, 0)
		want := appendSync(t, l, payload(rng, 100))
		lost := payload(rng, 64)
		first, _, err := l.Append(lost, payload(rng, 64), payload(rng, 64))
		require.NoError(t, err)
		crash(t, l)
		path, off := segmentOf(t, b.dir, first)
		overwrite(t, path, off, make([]byte, FrameHeaderSize+len(lost)))

		f, err := os.ReadFile(path)
		require.NoError(t, err)
		old := bytes.Clone(f[off:][:pageSize])

		l, got, tail := b.replay(t, 0)
		requireRecs(t, want, got)
		require.Equal(t, first, tail.End)
		// A record of the lost one's length, written where it was: the
		// two after it would follow it exactly, but for the new nonce.
		// (Its frame moves by the epoch mark's size: write the mark's
		// worth less so the next frame lands on the old second record.)
		more := appendSync(t, l, payload(rng, len(lost)-epochFrame))
		require.Equal(t, first+epochFrame, more[0].p)
		crash(t, l)
		// The pad mark after it lies on the old second record; say the
		// crash lost it, and left the old bytes there.
		pad := int64(FrameHeaderSize + len(lost))
		overwrite(t, path, off+pad, old[pad:])
		_, got, tail = b.replay(t, 0)
		requireRecs(t, append(want, more...), got)
		require.True(t, tail.Torn, "the old records are there, and fail")
		require.Equal(t, first+Position(pad), tail.End)
		require.Contains(t, tail.Reason, "checksum mismatch in the record")
	})

	t.Run("InTheNextSegment", func(t *testing.T) {
		// An Append that filled a segment and went on into the next one;
		// the crash lost the next mark only.
		b := setup(t, Options{})
		l, _, _ := b.replay(t, 0)
		want := appendSync(t, l, payload(rng, 1000))
		var fill [][]byte
		for range small/1000 + 30 {
			fill = append(fill, payload(rng, 1000))
		}
		first, _, err := l.Append(fill...)
		require.NoError(t, err)
		crash(t, l)
		// Find the next mark ending the first segment and zero it.
		f, err := os.ReadFile(filepath.Join(b.dir, segName(0)))
		require.NoError(t, err)
		p := first
		for {
			n := binary.LittleEndian.Uint32(f[p:])
			if n == kindNext {
				break
			}
			p += Position(FrameHeaderSize + int(n))
		}
		overwrite(t, filepath.Join(b.dir, segName(0)), int64(p), make([]byte, FrameHeaderSize))

		l, got, tail := b.replay(t, 0)
		require.False(t, tail.Torn, tail.Reason)
		require.Equal(t, p, tail.End)
		require.Len(t, got, len(want)+int(p-first)/(FrameHeaderSize+1000))
		// The next segment became a spare; the writer fills the first
		// one and moves on into a segment at the same base, whose records
		// from the crashed Append must not be read.
		var more []rec
		for range 3 {
			more = append(more, appendSync(t, l, payload(rng, 1000))...)
		}
		require.NoError(t, l.Close())
		_, got2, tail := b.replay(t, 0)
		require.False(t, tail.Torn, tail.Reason)
		requireRecs(t, append(got, more...), got2)
		require.Greater(t, more[2].p, Position(small), "the writer went on into the next segment")
	})
}

func TestCorruptHeader(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(15, 16))
	src := setup(t, Options{})
	l, _, _ := src.replay(t, 0)
	var want []rec
	for range 100 {
		want = append(want, appendSync(t, l, payload(rng, 2000))...)
	}
	require.NoError(t, l.Close())
	second := filepath.Join(src.dir, segName(small))
	require.FileExists(t, second)

	cases := map[string]func(t *testing.T, path string){
		"Magic":    func(t *testing.T, path string) { overwrite(t, path, 0, []byte("XX")) },
		"Checksum": func(t *testing.T, path string) { overwrite(t, path, headerCRCAt, []byte{1, 2, 3, 4}) },
		"Base": func(t *testing.T, path string) {
			overwrite(t, path, 0, header{size: small, base: 12345, nonce: 1}.encode())
		},
		"Size": func(t *testing.T, path string) {
			overwrite(t, path, 0, header{size: 1 << 40, base: small, nonce: 1}.encode())
		},
		"Version": func(t *testing.T, path string) {
			h := header{size: small, base: small, nonce: 1}.encode()
			h[6] = 9
			binary.LittleEndian.PutUint32(h[headerCRCAt:], crcHeader(h))
			overwrite(t, path, 0, h)
		},
		"Truncated": func(t *testing.T, path string) { require.NoError(t, os.Truncate(path, 40)) },
		"Short":     func(t *testing.T, path string) { require.NoError(t, os.Truncate(path, small-1)) },
		"Missing":   func(t *testing.T, path string) { require.NoError(t, os.Remove(path)) },
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			b := setup(t, Options{})
			require.NoError(t, os.CopyFS(b.dir, os.DirFS(src.dir)))
			damage(t, filepath.Join(b.dir, segName(small)))
			l := b.open(t)
			var n int
			_, err := l.Replay(0, func(Position, []byte) error { n++; return nil })
			var ce *CorruptError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, segName(small), ce.Segment)
			require.NotEmpty(t, ce.Reason)
			// Replay failed: the log takes no write.
			_, _, err = l.Append([]byte("x"))
			require.ErrorIs(t, err, ErrNotReplayed)
			if name == "Version" {
				require.Contains(t, ce.Reason, "version 9")
			}
			// From a record in the damaged segment, the same.
			if name != "Missing" {
				i := slices.IndexFunc(want, func(r rec) bool { return r.p > small })
				_, err = l.Replay(want[i].p, func(Position, []byte) error { return nil })
				require.ErrorAs(t, err, &ce)
			}
		})
	}
}

func crcHeader(h []byte) uint32 { return crc32.Checksum(h[:headerCRCAt], castagnoli) }

func TestErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{MaxRecord: 1000})
	l := b.open(t)

	_, _, err := l.Append([]byte("x"))
	require.ErrorIs(t, err, ErrNotReplayed)
	require.ErrorIs(t, l.Sync(), ErrNotReplayed)
	require.ErrorIs(t, l.Recycle(0), ErrNotReplayed)
	require.Equal(t, Position(0), l.End())

	_, err = l.Replay(0, nil)
	require.NoError(t, err)
	_, _, err = l.Append([]byte("x"), nil)
	require.ErrorIs(t, err, ErrRecordSize)
	_, _, err = l.Append(make([]byte, 1001))
	require.ErrorIs(t, err, ErrRecordSize)
	require.Equal(t, Position(HeaderSize), l.End(), "a refused Append writes nothing")
	first, end, err := l.Append()
	require.NoError(t, err)
	require.Equal(t, first, end)

	recs := appendSync(t, l, []byte("a"), []byte("b"), []byte("c"))
	end = l.End()
	_, err = l.Replay(0, nil)
	require.ErrorContains(t, err, "after Append")

	_, err = Open(b.dir, b.o)
	require.ErrorIs(t, err, ErrLocked)

	require.NoError(t, l.Close())
	require.ErrorIs(t, l.Close(), ErrClosed)
	_, _, err = l.Append([]byte("x"))
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, l.Sync(), ErrClosed)
	require.ErrorIs(t, l.Recycle(0), ErrClosed)
	_, err = l.Replay(0, nil)
	require.ErrorIs(t, err, ErrClosed)

	t.Run("FnError", func(t *testing.T) {
		l := b.open(t)
		stop := errors.New("stop")
		var seen []Position
		_, err := l.Replay(0, func(p Position, _ []byte) error {
			seen = append(seen, p)
			if len(seen) == 2 {
				return stop
			}
			return nil
		})
		require.ErrorIs(t, err, stop)
		require.Equal(t, []Position{recs[0].p, recs[1].p}, seen)
		_, _, err = l.Append([]byte("x"))
		require.ErrorIs(t, err, ErrNotReplayed)
		// Replay again, past the end of the log: a gap.
		_, err = l.Replay(end+1, func(Position, []byte) error { return nil })
		require.ErrorIs(t, err, ErrGap)
		got, _, err := replayAll(l, 0)
		require.NoError(t, err)
		requireRecs(t, recs, got)
	})

	t.Run("Options", func(t *testing.T) {
		for _, o := range []Options{{SegmentSize: MinSegmentSize - 1}, {SegmentSize: MaxSegmentSize + 1}, {MaxRecord: -1}, {MaxRecord: MaxMaxRecord + 1}} {
			_, err := Open(t.TempDir(), o)
			require.Error(t, err)
		}
	})
}

func TestSizeAndSpares(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	l, _, _ := b.replay(t, 0)
	rng := rand.New(rand.NewPCG(17, 18))
	for range 20 {
		for range 40 {
			appendOnly(t, l, payload(rng, 1000))
		}
		require.NoError(t, l.Sync())
		require.NoError(t, l.Recycle(l.End()))
		waitIdle(t, l)
		segs, spares := segmentFiles(t, b.dir)
		var onDisk int64
		for _, n := range append(segs, spares...) {
			info, err := os.Stat(filepath.Join(b.dir, n))
			require.NoError(t, err)
			onDisk += info.Size()
		}
		require.Equal(t, onDisk, l.Size())
		require.LessOrEqual(t, len(segs)+len(spares), 1+maxSpares)
	}
	// Nothing but .wal and .spare files, none left half made.
	entries, err := os.ReadDir(b.dir)
	require.NoError(t, err)
	for _, e := range entries {
		require.True(t, strings.HasSuffix(e.Name(), segSuffix) || strings.HasSuffix(e.Name(), spareSuffix), e.Name())
	}
}

// waitIdle waits until the background preparer has nothing left to do.
func waitIdle(t *testing.T, l *Log) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	wake := time.AfterFunc(10*time.Second, func() {
		l.pmu.Lock()
		l.pcond.Broadcast()
		l.pmu.Unlock()
	})
	defer wake.Stop()
	l.pmu.Lock()
	defer l.pmu.Unlock()
	for l.busy || (l.wantSet && l.next == nil && l.prepErr == nil) {
		if time.Now().After(deadline) {
			t.Fatal("the preparer did not finish")
		}
		l.pcond.Wait()
	}
}

func TestConcurrentCallers(t *testing.T) {
	t.Parallel()
	// One writer, and a checkpointer and a metrics reader beside it: the
	// race detector is the check.
	b := setup(t, Options{})
	l, _, _ := b.replay(t, 0)
	rng := rand.New(rand.NewPCG(19, 20))
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			_ = l.Size()
			_ = l.End()
		}
	}()
	synced := make(chan Position, 1000)
	go func() {
		defer wg.Done()
		for p := range synced {
			if err := l.Recycle(p); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var want []rec
	for range 500 {
		want = appendSync(t, l, payload(rng, 1+rng.IntN(2000)))
		synced <- want[0].p
	}
	close(synced)
	close(done)
	wg.Wait()
	require.NoError(t, l.Close())
	_, got, _ := b.replay(t, want[0].p)
	requireRecs(t, want, got)
}

func TestWriteFailureSticks(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	l, _, _ := b.replay(t, 0)
	want := appendSync(t, l, []byte("kept"))
	// The file goes away under the writer, as a failing disk would.
	l.mu.Lock()
	require.NoError(t, l.cur.Close())
	l.mu.Unlock()
	_, _, err := l.Append([]byte("lost"))
	require.Error(t, err)
	_, _, err = l.Append([]byte("refused"))
	require.ErrorContains(t, err, "an earlier write failed")
	require.ErrorContains(t, l.Sync(), "an earlier write failed")
	require.NoError(t, l.Recycle(l.End()), "recycling does not write the current segment")
	require.NoError(t, l.Close(), "nothing left to sync")

	_, got, _ := b.replay(t, 0)
	requireRecs(t, want, got)
}

func TestPreparerFailure(t *testing.T) {
	t.Parallel()
	// When the preparer could not make the next segment, the writer
	// makes it when it needs it.
	b := setup(t, Options{})
	l, _, _ := b.replay(t, 0)
	waitIdle(t, l)
	l.pmu.Lock()
	if l.next != nil {
		require.NoError(t, l.next.f.Close())
		require.NoError(t, os.Remove(filepath.Join(b.dir, segName(l.next.hdr.base))))
		l.next = nil
	}
	l.prepErr = errors.New("disk full, say")
	l.pmu.Unlock()
	rng := rand.New(rand.NewPCG(24, 25))
	var want []rec
	for range 3 * small / 1000 {
		want = append(want, appendOnly(t, l, payload(rng, 1000))...)
	}
	require.NoError(t, l.Sync())
	require.NoError(t, l.Close())
	_, got, _ := b.replay(t, 0)
	requireRecs(t, want, got)
}

// TestStartAt: a log with no segment begins at the position asked for,
// so that an owner whose file records a position past a lost log goes
// on from there, and its next Replay from that position finds it.
func TestStartAt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l, err := Open(dir, Options{SegmentSize: MinSegmentSize})
	require.NoError(t, err)
	const at = Position(5*MinSegmentSize + 1000)
	tail, err := l.Replay(at, nil)
	require.NoError(t, err)
	require.True(t, tail.New)
	require.Equal(t, at, tail.End)
	first, _, err := l.Append([]byte("after"))
	require.NoError(t, err)
	require.Equal(t, at, first)
	require.NoError(t, l.Sync())
	require.NoError(t, l.Close())

	l, err = Open(dir, Options{SegmentSize: MinSegmentSize})
	require.NoError(t, err)
	defer l.Close()
	var got []string
	tail, err = l.Replay(at, func(_ Position, b []byte) error { got = append(got, string(b)); return nil })
	require.NoError(t, err)
	require.False(t, tail.New)
	require.Equal(t, []string{"after"}, got)
}

// TestAppendAt: the positions AppendAt stores are those Replay reports,
// across rollovers and in batches, and the same Append returns.
func TestAppendAt(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	rng := rand.New(rand.NewPCG(26, 27))
	l, _, _ := b.replay(t, 0)
	var want []rec
	for range 60 {
		var batch [][]byte
		for range 1 + rng.IntN(12) {
			batch = append(batch, payload(rng, 1+rng.IntN(6000)))
		}
		at := make([]Position, len(batch))
		end, err := l.AppendAt(at, batch...)
		require.NoError(t, err)
		require.Equal(t, l.End(), end)
		for i, d := range batch {
			want = append(want, rec{at[i], d})
		}
		require.NoError(t, l.Sync())
	}
	// A batch through Append: its first position is the one AppendAt
	// would have stored.
	first, _, err := l.Append([]byte("via Append"))
	require.NoError(t, err)
	want = append(want, rec{first, []byte("via Append")})
	require.NoError(t, l.Sync())

	// Positions and records that do not pair: nothing written.
	end := l.End()
	_, err = l.AppendAt(make([]Position, 1), []byte("a"), []byte("b"))
	require.Error(t, err)
	_, err = l.AppendAt(nil, []byte("a"))
	require.Error(t, err)
	_, err = l.AppendAt([]Position{7}, []byte{})
	require.ErrorIs(t, err, ErrRecordSize)
	require.Equal(t, end, l.End())
	got, err := l.AppendAt(nil)
	require.NoError(t, err)
	require.Equal(t, end, got)
	require.NoError(t, l.Close())

	segs, _ := segmentFiles(t, b.dir)
	require.Greater(t, len(segs), 3, "segments written")
	_, replayed, _ := b.replay(t, 0)
	requireRecs(t, want, replayed)
}
