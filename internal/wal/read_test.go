package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// appendAtSync appends the records in one AppendAt and syncs, returning
// them with their positions.
func appendAtSync(t *testing.T, l *Log, data ...[]byte) []rec {
	t.Helper()
	at := make([]Position, len(data))
	_, err := l.AppendAt(at, data...)
	require.NoError(t, err)
	require.NoError(t, l.Sync())
	recs := make([]rec, len(data))
	for i := range data {
		recs[i] = rec{at[i], data[i]}
	}
	return recs
}

// reader is what Log and Reader have in common.
type reader interface {
	ReadAt(b []byte, p Position) error
}

// requireReads reads each record's frame back through r: its length field
// and its data.
func requireReads(t *testing.T, r reader, recs []rec) {
	t.Helper()
	for i, w := range recs {
		var h [FrameHeaderSize]byte
		require.NoError(t, r.ReadAt(h[:], w.p), "header of record %d at %#x", i, uint64(w.p))
		require.Equal(t, uint32(len(w.data)), binary.LittleEndian.Uint32(h[:]), "length of record %d", i)
		got := make([]byte, len(w.data))
		require.NoError(t, r.ReadAt(got, w.p+FrameHeaderSize), "record %d at %#x", i, uint64(w.p))
		require.True(t, bytes.Equal(w.data, got), "data of record %d at %#x", i, uint64(w.p))
	}
}

// openFiles returns the files under dir this process has open, from
// /proc/self/fd; ok is false where there is none.
func openFiles(t *testing.T, dir string) (files []string, ok bool) {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, false
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, dir+string(filepath.Separator)) {
			files = append(files, target)
		}
	}
	return files, true
}

func TestReadAt(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	rng := rand.New(rand.NewPCG(28, 29))
	l := b.open(t)
	require.ErrorIs(t, l.ReadAt(make([]byte, 1), HeaderSize), ErrNotReplayed)
	_, err := l.Replay(0, nil)
	require.NoError(t, err)

	// Enough for many segments, in batches of one to a few records.
	var want []rec
	for range 120 {
		var batch [][]byte
		for range 1 + rng.IntN(4) {
			batch = append(batch, payload(rng, 1+rng.IntN(3000)))
		}
		want = append(want, appendAtSync(t, l, batch...)...)
	}
	segs, _ := segmentFiles(t, b.dir)
	require.Greater(t, len(segs), 4)
	requireReads(t, l, want)

	// Appended, not synced: readable as well.
	unsynced := appendAtSync(t, l, payload(rng, 100))
	requireReads(t, l, unsynced)
	want = append(want, unsynced...)

	end := l.End()
	for _, c := range []struct {
		p Position
		n int
	}{
		{end, 1},                            // at the end
		{end - 1, 2},                        // across it
		{Position(small) - 4, 8},            // across a segment's end
		{Position(len(segs)+10) * small, 1}, // far past the end
		{0, small + 1},                      // longer than its segment
	} {
		require.ErrorIs(t, l.ReadAt(make([]byte, c.n), c.p), ErrGap, "%d bytes at %#x", c.n, uint64(c.p))
	}
	require.NoError(t, l.ReadAt(nil, end-1))
	require.NoError(t, l.ReadAt(make([]byte, 4), Position(small)-4), "the last bytes of a segment")

	// Recycled: gone; the rest still there.
	keep := len(want) / 2
	require.NoError(t, l.Recycle(want[keep].p))
	path, _ := segmentOf(t, b.dir, want[keep].p)
	base, _, _ := parseName(filepath.Base(path))
	for _, w := range want {
		err := l.ReadAt(make([]byte, len(w.data)), w.p+FrameHeaderSize)
		if w.p < base {
			require.ErrorIs(t, err, ErrGap)
		} else {
			require.NoError(t, err)
		}
	}
	requireReads(t, l, want[keep:])
	require.NoError(t, l.Close())
	require.ErrorIs(t, l.ReadAt(make([]byte, 1), want[keep].p), ErrClosed)

	t.Run("BelowTheReplayPosition", func(t *testing.T) {
		// Replay from a later position leaves the segments below it in
		// the log, and readable.
		l := b.open(t)
		from := want[len(want)-3].p
		_, err := l.Replay(from, nil)
		require.NoError(t, err)
		fromSeg, _ := segmentOf(t, b.dir, from)
		require.NotEqual(t, path, fromSeg, "the replay starts in a later segment")
		requireReads(t, l, want[keep:])
		// And after more records, in a new segment or not.
		more := appendAtSync(t, l, payload(rng, small/2), payload(rng, small/2))
		requireReads(t, l, append(want[keep:], more...))
	})
}

// TestReadAtHandles: the handles ReadAt opens are closed by Recycle and
// by Close.
func TestReadAtHandles(t *testing.T) {
	t.Parallel()
	if _, ok := openFiles(t, t.TempDir()); !ok {
		t.Skip("no /proc/self/fd")
	}
	b := setup(t, Options{})
	rng := rand.New(rand.NewPCG(30, 31))
	l, _, _ := b.replay(t, 0)
	var want []rec
	for range 6 * small / 4000 {
		want = append(want, appendAtSync(t, l, payload(rng, 4000))...)
	}
	waitIdle(t, l)
	before, _ := openFiles(t, b.dir)
	requireReads(t, l, want)
	l.mu.Lock()
	live := len(l.live)
	l.mu.Unlock()
	require.Greater(t, live, 4)
	read, _ := openFiles(t, b.dir)
	require.Len(t, read, len(before)+live, "one handle per segment read: %v", read)
	requireReads(t, l, want)
	again, _ := openFiles(t, b.dir)
	require.Len(t, again, len(read), "handles are kept")

	// Recycle all but the last segment: their handles go.
	last := want[len(want)-1].p
	require.NoError(t, l.Recycle(last))
	after, _ := openFiles(t, b.dir)
	require.Len(t, after, len(before)+1, "%v", after)
	l.rd.mu.RLock()
	require.Len(t, l.rd.files, 1)
	l.rd.mu.RUnlock()

	require.NoError(t, l.Close())
	closed, _ := openFiles(t, b.dir)
	require.Empty(t, closed)
}

// TestReadAtConcurrent reads records back while the writer appends and a
// checkpointer recycles: the race detector checks the locking, and every
// read either returns the record or finds it recycled.
func TestReadAtConcurrent(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	l, _, _ := b.replay(t, 0)

	var (
		mu       sync.Mutex
		written  []rec
		recycled atomic.Uint64 // set before each Recycle
		done     = make(chan struct{})
		wg       sync.WaitGroup
		reads    atomic.Int64
	)
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(32, uint64(g)))
			for {
				select {
				case <-done:
					return
				default:
				}
				mu.Lock()
				if len(written) == 0 {
					mu.Unlock()
					continue
				}
				w := written[rng.IntN(len(written))]
				mu.Unlock()
				got := make([]byte, len(w.data))
				err := l.ReadAt(got, w.p+FrameHeaderSize)
				switch {
				case err == nil:
					if !bytes.Equal(w.data, got) {
						t.Errorf("record at %#x reads back wrong", uint64(w.p))
						return
					}
					reads.Add(1)
				case recycled.Load() > uint64(w.p):
					// Recycled meanwhile: its segment may be gone.
				default:
					t.Errorf("record at %#x: %v", uint64(w.p), err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			_ = l.ReadAt(make([]byte, 8), Position(recycled.Load()))
		}
	}()

	// A Reader of the same directory beside it: it finds new segments,
	// and may read a recycled one's new bytes.
	r, err := OpenReader(b.dir)
	require.NoError(t, err)
	defer r.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(32, 99))
		for {
			select {
			case <-done:
				return
			default:
			}
			mu.Lock()
			if len(written) == 0 {
				mu.Unlock()
				continue
			}
			w := written[rng.IntN(len(written))]
			mu.Unlock()
			got := make([]byte, len(w.data))
			err := r.ReadAt(got, w.p+FrameHeaderSize)
			switch {
			case err == nil && bytes.Equal(w.data, got):
				reads.Add(1)
			case recycled.Load() > uint64(w.p) && (err == nil || errors.Is(err, ErrGap)):
				// Recycled meanwhile.
			default:
				t.Errorf("reader: record at %#x: %v", uint64(w.p), err)
				return
			}
		}
	}()

	rng := rand.New(rand.NewPCG(33, 34))
	for i := range 400 {
		recs := make([][]byte, 1+rng.IntN(3))
		for j := range recs {
			recs[j] = payload(rng, 1+rng.IntN(2500))
		}
		at := make([]Position, len(recs))
		_, err := l.AppendAt(at, recs...)
		require.NoError(t, err)
		mu.Lock()
		for j := range recs {
			written = append(written, rec{at[j], recs[j]})
		}
		mu.Unlock()
		require.NoError(t, l.Sync())
		if i%40 == 39 {
			mu.Lock()
			upTo := written[len(written)/2].p
			mu.Unlock()
			recycled.Store(uint64(upTo))
			require.NoError(t, l.Recycle(upTo))
		}
	}
	close(done)
	wg.Wait()
	require.Positive(t, reads.Load())
	require.NoError(t, l.Close())
}

func TestReader(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	rng := rand.New(rand.NewPCG(35, 36))

	// Before the log exists: a Reader of nothing, and nothing created.
	r, err := OpenReader(b.dir)
	require.NoError(t, err)
	require.ErrorIs(t, r.ReadAt(make([]byte, 1), HeaderSize), ErrGap)
	require.NoDirExists(t, b.dir)

	// The log begins, and grows segment by segment: the Reader finds
	// each new one.
	l, _, _ := b.replay(t, 0)
	var want []rec
	for range 100 {
		recs := appendAtSync(t, l, payload(rng, 1+rng.IntN(5000)))
		requireReads(t, r, recs)
		want = append(want, recs...)
	}
	segs, _ := segmentFiles(t, b.dir)
	require.Greater(t, len(segs), 3)
	requireReads(t, r, want)
	end := l.End()
	require.ErrorIs(t, r.ReadAt(make([]byte, 8), Position(small)-4), ErrGap, "across segments")
	require.ErrorIs(t, r.ReadAt(make([]byte, 1), Position(len(segs)+5)*small), ErrGap, "past the last segment")

	// Recycled: a new Reader finds the segments gone; the first one, which
	// had them open, reads what the files hold now (the caller verifies)
	// until it lists the directory again.
	keep := len(want) / 2
	require.NoError(t, l.Recycle(want[keep].p))
	path, _ := segmentOf(t, b.dir, want[keep].p)
	base, _, _ := parseName(filepath.Base(path))
	r2, err := OpenReader(b.dir)
	require.NoError(t, err)
	for _, w := range want {
		err := r2.ReadAt(make([]byte, len(w.data)), w.p+FrameHeaderSize)
		if w.p < base {
			require.ErrorIs(t, err, ErrGap)
		} else {
			require.NoError(t, err)
		}
	}
	// A position past what r knows makes it list again: then it no
	// longer reads the recycled segments.
	more := appendAtSync(t, l, payload(rng, small/2), payload(rng, small/2))
	require.Greater(t, more[1].p, end)
	requireReads(t, r, more)
	require.ErrorIs(t, r.ReadAt(make([]byte, 1), 1<<50), ErrGap)
	require.ErrorIs(t, r.ReadAt(make([]byte, 1), want[0].p), ErrGap)
	requireReads(t, r, want[keep:])
	require.NoError(t, r2.Close())

	// Damage: a header not valid, or naming another base.
	require.NoError(t, l.Close())
	damaged := filepath.Join(b.dir, segName(base))
	f, err := os.ReadFile(damaged)
	require.NoError(t, err)
	moved := Position(len(segs)+100) * small
	require.NoError(t, os.WriteFile(filepath.Join(b.dir, segName(moved)), f, 0o600))
	overwrite(t, damaged, 0, []byte("XX"))
	r3, err := OpenReader(b.dir)
	require.NoError(t, err)
	var ce *CorruptError
	require.ErrorAs(t, r3.ReadAt(make([]byte, 1), base+HeaderSize), &ce)
	require.Equal(t, segName(base), ce.Segment)
	require.ErrorAs(t, r3.ReadAt(make([]byte, 1), moved+HeaderSize), &ce)
	require.Contains(t, ce.Reason, "header base")
	require.NoError(t, r3.Close())

	// Close: no handle left; the next calls refused.
	require.NoError(t, r.Close())
	require.ErrorIs(t, r.ReadAt(make([]byte, 1), want[keep].p), ErrClosed)
	require.ErrorIs(t, r.Close(), ErrClosed)
	if files, ok := openFiles(t, b.dir); ok {
		require.Empty(t, files)
	}
}
