package wal

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// fileOffset returns the offset in its segment file of position p, given
// the segment's base.
func fileOffset(l *Log, p Position) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.live) - 1; i >= 0; i-- {
		if l.live[i].base <= p {
			return int64(p - l.live[i].base)
		}
	}
	return -1
}

// requirePadded checks where an Append that ended its records at
// recEnd left the log: at the next page boundary after a pad mark, or,
// where the rule puts none, right after the records.
func requirePadded(t *testing.T, l *Log, recEnd, end Position) {
	t.Helper()
	l.mu.Lock()
	s, nonce, written := l.live[len(l.live)-1], l.nonce, l.written
	l.mu.Unlock()
	off := int64(recEnd - s.base)
	next, ok := padTo(off)
	if ok && next+FrameHeaderSize <= s.size && (next < written || l.o.padAlways) {
		require.Equal(t, s.base+Position(next), end, "a pad mark after the records at offset %d", off)
		var mark [FrameHeaderSize]byte
		require.NoError(t, l.ReadAt(mark[:], recEnd))
		require.Equal(t, uint32(kindPad), binary.LittleEndian.Uint32(mark[:]))
		require.Equal(t, frameCRC(nonce, recEnd, kindPad, nil), binary.LittleEndian.Uint32(mark[4:]))
	} else {
		require.Equal(t, recEnd, end, "no pad mark at offset %d", off)
	}
}

// TestPadMarks: every Append ends at a page boundary of its segment file
// where a pad mark fits, so the next one starts a page of its own; the
// bytes between a pad mark and the boundary are never written, nor read.
func TestPadMarks(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{padAlways: true})
	rng := rand.New(rand.NewPCG(37, 38))
	l, _, _ := b.replay(t, 0)
	var want []rec
	for i := range 300 {
		var batch [][]byte
		for range 1 + rng.IntN(3) {
			batch = append(batch, payload(rng, 1+rng.IntN(3000)))
		}
		if i%10 == 0 {
			// Records that end within a few bytes of a boundary: too
			// close for a pad mark, or just far enough.
			off := fileOffset(l, l.End())
			gap := int(pageSize - off%pageSize)
			batch = [][]byte{payload(rng, gap+pageSize-FrameHeaderSize-rng.IntN(2*FrameHeaderSize))}
		}
		at := make([]Position, len(batch))
		end, err := l.AppendAt(at, batch...)
		require.NoError(t, err)
		last := at[len(at)-1] + Position(FrameHeaderSize+len(batch[len(batch)-1]))
		requirePadded(t, l, last, end)
		for i := range batch {
			want = append(want, rec{at[i], batch[i]})
		}
		require.NoError(t, l.Sync())
	}
	segs, _ := segmentFiles(t, b.dir)
	require.Greater(t, len(segs), 10)
	// Nothing written between a pad mark and its boundary: the segments
	// are new, so those bytes are still zeros.
	l.mu.Lock()
	live := append([]segment(nil), l.live...)
	l.mu.Unlock()
	for _, s := range live {
		f, err := os.ReadFile(filepath.Join(b.dir, segName(s.base)))
		require.NoError(t, err)
		for off := int64(HeaderSize); off+FrameHeaderSize <= s.size; {
			n := binary.LittleEndian.Uint32(f[off:])
			if n == 0 || n == kindNext || n == kindClose {
				break
			}
			if n != kindPad {
				off += FrameHeaderSize + int64(n)
				continue
			}
			next, _ := padTo(off)
			require.Equal(t, make([]byte, next-off-FrameHeaderSize), f[off+FrameHeaderSize:next], "between the pad mark at %d and %d in %s", off, next, segName(s.base))
			off = next
		}
	}
	require.NoError(t, l.Close())
	_, got, tail := b.replay(t, 0)
	requireRecs(t, want, got)
	require.Equal(t, "closed", tail.Reason)

	t.Run("StaleBytesAreNotRead", func(t *testing.T) {
		// Fill the gap after a pad mark with a frame valid where it lies:
		// Replay never reads it.
		b := setup(t, Options{padAlways: true})
		l, _, _ := b.replay(t, 0)
		want := appendSync(t, l, []byte("one"))
		pad := want[0].p + FrameHeaderSize + 3
		l.mu.Lock()
		nonce := l.nonce
		l.mu.Unlock()
		crash(t, l)
		path, off := segmentOf(t, b.dir, pad)
		stale := pad + FrameHeaderSize
		overwrite(t, path, off+FrameHeaderSize, putFrame(nil, nonce, stale, 5, []byte("stale")))
		_, got, tail := b.replay(t, 0)
		requireRecs(t, want, got)
		require.Equal(t, Position(pageSize), tail.End)
	})
}

// TestPadTornTail: a record after a pad mark that fails its check ends
// the log at the page boundary, and the next session writes there.
func TestPadTornTail(t *testing.T) {
	t.Parallel()
	for i, where := range []string{"length", "checksum", "data", "zeros"} {
		t.Run(where, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(39, uint64(i)))
			b := setup(t, Options{padAlways: true})
			l, _, _ := b.replay(t, 0)
			want := appendSync(t, l, payload(rng, 700), payload(rng, 3000))
			require.Zero(t, fileOffset(l, l.End())%pageSize, "after a pad mark")
			cut := appendSync(t, l, payload(rng, 500), payload(rng, 20))
			require.Zero(t, fileOffset(l, cut[0].p)%pageSize)
			crash(t, l)
			path, off := segmentOf(t, b.dir, cut[0].p)
			f, err := os.ReadFile(path)
			require.NoError(t, err)
			switch where {
			case "length":
				overwrite(t, path, off+1, []byte{f[off+1] ^ 0x10})
			case "checksum":
				overwrite(t, path, off+5, []byte{f[off+5] ^ 0x01})
			case "data":
				overwrite(t, path, off+FrameHeaderSize+100, []byte{f[off+FrameHeaderSize+100] ^ 0x80})
			case "zeros":
				overwrite(t, path, off, make([]byte, FrameHeaderSize))
			}
			l, got, tail := b.replay(t, 0)
			requireRecs(t, want, got)
			require.Equal(t, cut[0].p, tail.End)
			require.Equal(t, where != "zeros", tail.Torn, tail.Reason)
			more := appendSync(t, l, payload(rng, 100))
			require.Equal(t, cut[0].p+epochFrame, more[0].p)
			require.NoError(t, l.Close())
			_, got, tail = b.replay(t, 0)
			requireRecs(t, append(want, more...), got)
			require.False(t, tail.Torn, tail.Reason)
		})
	}
}

// TestPadCrash: an Append's write cut short by a crash, as pages of it
// reach the disk or not, in any order.
func TestPadCrash(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(41, 42))
	// One round of three records over three pages, then a pad mark.
	build := func(t *testing.T) (*bundle, []rec, []rec, string, int64) {
		b := setup(t, Options{padAlways: true})
		l, _, _ := b.replay(t, 0)
		want := appendSync(t, l, payload(rng, 300))
		_, err := l.AppendAt(make([]Position, 3), payload(rng, 3000), payload(rng, 3000), payload(rng, 3000))
		require.NoError(t, err)
		crash(t, l)
		l, got, _ := b.replay(t, 0)
		require.Len(t, got, 4)
		crash(t, l)
		start := got[1].p
		require.Zero(t, start%pageSize)
		path, off := segmentOf(t, b.dir, start)
		return b, want, got[1:], path, off
	}

	t.Run("LastPageLost", func(t *testing.T) {
		b, want, round, path, off := build(t)
		// The third page never written: the third record and the pad
		// mark are gone.
		overwrite(t, path, off+2*pageSize, make([]byte, pageSize))
		_, got, tail := b.replay(t, 0)
		requireRecs(t, append(want, round[:2]...), got)
		require.Equal(t, round[2].p, tail.End)
		require.True(t, tail.Torn, tail.Reason)
	})

	t.Run("FirstPageLost", func(t *testing.T) {
		// Only the first page lost: the records after it, and the pad
		// mark, are valid under the nonce, past the end. The next
		// session writes a record that ends where the old pad mark
		// lies, and its own pad mark there is lost too: the old one,
		// under the old nonce, must not be followed.
		b, want, round, path, off := build(t)
		f, err := os.ReadFile(path)
		require.NoError(t, err)
		padAt := round[2].p + FrameHeaderSize + 3000
		oldPad := bytes.Clone(f[off+int64(padAt-round[0].p):][:FrameHeaderSize])
		require.Equal(t, uint32(kindPad), binary.LittleEndian.Uint32(oldPad))
		overwrite(t, path, off, make([]byte, pageSize))

		l, got, tail := b.replay(t, 0)
		requireRecs(t, want, got)
		require.Equal(t, round[0].p, tail.End)
		require.False(t, tail.Torn, "zeros: a write that never reached the disk")
		x := payload(rng, int(padAt-round[0].p)-epochFrame-FrameHeaderSize)
		more := appendSync(t, l, x)
		require.Equal(t, padAt, more[0].p+FrameHeaderSize+Position(len(x)))
		crash(t, l)
		overwrite(t, path, off+int64(padAt-round[0].p), oldPad)

		_, got, tail = b.replay(t, 0)
		requireRecs(t, append(want, more...), got)
		require.Equal(t, padAt, tail.End)
		require.True(t, tail.Torn)
		require.Contains(t, tail.Reason, "checksum mismatch in a pad mark")
	})
}

// TestFormatV1 opens a log written by the format version 1 code of this
// package (testdata/v1log.tar.gz: segments of MinSegmentSize; a first
// session appended records numbered 1 to 180 in batches of three and
// closed the log; a second one replayed it, appended records 181 to 240
// one by one, recycled the first segment and stopped without closing).
// It replays, reads, and writes on: no pad mark in the version 1 segment,
// pad marks in the next.
func TestFormatV1(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{padAlways: true})
	untar(t, filepath.Join("testdata", "v1log.tar.gz"), b.dir)
	segs, spares := segmentFiles(t, b.dir)
	require.NotEmpty(t, spares)
	oldest, _, _ := parseName(segs[0])
	from := oldest + HeaderSize

	l := b.open(t)
	var got []rec
	var nums []uint64
	tail, err := l.Replay(from, func(p Position, data []byte) error {
		n, ok := parseNumbered(data)
		require.True(t, ok, "record at %#x", uint64(p))
		got = append(got, rec{p, bytes.Clone(data)})
		nums = append(nums, n)
		return nil
	})
	require.NoError(t, err)
	require.NotEmpty(t, nums)
	for i := range nums {
		require.Equal(t, nums[0]+uint64(i), nums[i])
	}
	require.Equal(t, uint64(240), nums[len(nums)-1])
	require.False(t, tail.Torn, tail.Reason)
	requireReads(t, l, got)
	l.mu.Lock()
	require.False(t, l.pads, "the segment written on is of version 1")
	l.mu.Unlock()

	// On in the version 1 segment: no pad mark; then in new segments, of
	// version 2, pad marks.
	var more []rec
	n := uint64(240)
	for len(more) < 80 {
		n++
		data := numbered(n, 16+int(n*37%1500))
		r := appendAtSync(t, l, data)
		more = append(more, r...)
		l.mu.Lock()
		pads := l.pads
		l.mu.Unlock()
		recEnd := r[0].p + Position(FrameHeaderSize+len(data))
		if !pads {
			require.Equal(t, recEnd, l.End())
		} else {
			requirePadded(t, l, recEnd, l.End())
		}
	}
	l.mu.Lock()
	require.True(t, l.pads)
	cur := l.live[len(l.live)-1]
	l.mu.Unlock()
	f, err := os.ReadFile(filepath.Join(b.dir, segName(cur.base)))
	require.NoError(t, err)
	require.Equal(t, byte(formatVersion), f[6])
	requireReads(t, l, append(got, more...))
	require.NoError(t, l.Close())

	_, all, tail := b.replay(t, from)
	requireRecs(t, append(got, more...), all)
	require.Equal(t, "closed", tail.Reason)
}

// untar extracts the regular files of a .tar.gz into dir.
func untar(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	tr := tar.NewReader(zr)
	require.NoError(t, os.MkdirAll(dir, 0o700))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		require.NoError(t, err)
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, filepath.Base(h.Name)), b, 0o600))
	}
}

// TestPadPolicy: no pad mark where the page after the boundary was never
// written (blocks fresh from fallocate, each a journal commit when first
// written); pad marks in a segment reused from a spare, whose blocks were
// written in its previous life.
func TestPadPolicy(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	rng := rand.New(rand.NewPCG(43, 44))
	l, _, _ := b.replay(t, 0)
	l.mu.Lock()
	fresh := l.written < l.live[0].size
	l.mu.Unlock()
	if !fresh {
		t.Skip("the file system reports no unwritten block in a new segment")
	}
	for range 5 {
		r := appendSync(t, l, payload(rng, 1100))
		require.Equal(t, r[0].p+FrameHeaderSize+1100, l.End(), "no pad mark in a new segment")
	}
	for l.End() < 3*small {
		appendSync(t, l, payload(rng, 3000))
	}
	require.NoError(t, l.Recycle(l.End()))
	recycled := l.End()
	for range 10 * small / 3000 {
		appendSync(t, l, payload(rng, 3000))
		l.mu.Lock()
		s, pos, written := l.live[len(l.live)-1], l.pos, l.written
		l.mu.Unlock()
		if s.base < recycled || written < int64(pos-s.base)+4*pageSize {
			continue
		}
		// A reused segment, written well past the end: pad marks.
		r := appendSync(t, l, payload(rng, 1100))
		requirePadded(t, l, r[0].p+FrameHeaderSize+1100, l.End())
		require.Zero(t, fileOffset(l, l.End())%pageSize)
		return
	}
	t.Fatal("the log never wrote in a reused segment")
}
