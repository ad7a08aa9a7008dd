package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzReplay replays a segment file of arbitrary bytes. The first input
// byte is a mode: when odd, the file's header is made valid (its nonce
// kept) so that the fuzzer spends its time on the frames, of format
// version 1 when the mode's bit 1 is set too, else of the current one.
// Replay must not
// panic, must return only records whose bytes and checksum are in the
// file where it says, and must leave a log that takes an Append and reads
// back the same records plus the new one.
//
// The seeds in testdata/fuzz/FuzzReplay are written by TestFuzzSeeds with
// WAL_WRITE_FUZZ_SEEDS=1.
func FuzzReplay(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 1 || len(in) > 256<<10 {
			return
		}
		mode, file := in[0], bytes.Clone(in[1:])
		if mode&1 == 1 && len(file) >= HeaderSize {
			h := header{size: int64(len(file)), nonce: binary.LittleEndian.Uint64(file[24:])}
			if mode&2 != 0 {
				h.version = 1
			}
			copy(file, h.encode())
		}
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, segName(0)), file, 0o600))

		check := newFrameCheck(file)
		l, err := Open(dir, Options{SegmentSize: small})
		require.NoError(t, err)
		var got []rec
		tail, err := l.Replay(0, func(p Position, data []byte) error {
			if len(got) > 0 && p <= got[len(got)-1].p {
				return fmt.Errorf("record at %#x after one at %#x", uint64(p), uint64(got[len(got)-1].p))
			}
			if why := check.record(p, data); why != "" {
				return errors.New(why)
			}
			got = append(got, rec{p, bytes.Clone(data)})
			return nil
		})
		if err != nil {
			var ce *CorruptError
			require.ErrorAs(t, err, &ce)
			require.NoError(t, l.Close())
			return
		}
		require.GreaterOrEqual(t, tail.End, Position(HeaderSize))
		require.LessOrEqual(t, int(tail.End)+FrameHeaderSize, len(file))

		more := []byte("appended after the fuzzed tail")
		p, _, err := l.Append(more)
		require.NoError(t, err)
		require.NoError(t, l.Close())
		l, err = Open(dir, Options{SegmentSize: small})
		require.NoError(t, err)
		got2, tail2, err := replayAll(l, 0)
		require.NoError(t, err)
		require.NoError(t, l.Close())
		requireRecs(t, append(got, rec{p, more}), got2)
		require.False(t, tail2.Torn, tail2.Reason)
	})
}

// frameCheck checks records against the raw file, independently of the
// reader: a record's bytes must be there, and its checksum must match
// under the header's nonce or one that an epoch-looking frame before it
// carries.
type frameCheck struct {
	file   []byte
	nonces []uint64
	epochs []int // offsets of the frames that look like epoch marks
}

func newFrameCheck(file []byte) *frameCheck {
	c := &frameCheck{file: file}
	if len(file) >= HeaderSize {
		c.nonces = append(c.nonces, binary.LittleEndian.Uint64(file[24:]))
	}
	for off := 0; off+epochFrame <= len(file); off++ {
		if binary.LittleEndian.Uint32(file[off:]) == kindEpoch {
			c.epochs = append(c.epochs, off)
		}
	}
	return c
}

func (c *frameCheck) record(p Position, data []byte) string {
	off := int(p)
	if off < HeaderSize || len(data) == 0 || off+FrameHeaderSize+len(data) > len(c.file) {
		return fmt.Sprintf("record of %d bytes at %#x is not in the file", len(data), off)
	}
	if int(binary.LittleEndian.Uint32(c.file[off:])) != len(data) || !bytes.Equal(c.file[off+FrameHeaderSize:][:len(data)], data) {
		return fmt.Sprintf("record at %#x is not what the file holds", off)
	}
	sum := binary.LittleEndian.Uint32(c.file[off+4:])
	nonces := slices.Clone(c.nonces)
	for _, e := range c.epochs {
		if e < off {
			nonces = append(nonces, binary.LittleEndian.Uint64(c.file[e+FrameHeaderSize:]))
		}
	}
	for _, n := range nonces {
		if frameCRC(n, p, uint32(len(data)), data) == sum {
			return ""
		}
	}
	return fmt.Sprintf("record at %#x has a checksum no nonce matches", off)
}

// TestFuzzSeeds checks the fuzz seeds against the format, and writes
// them with WAL_WRITE_FUZZ_SEEDS=1.
func TestFuzzSeeds(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("testdata", "fuzz", "FuzzReplay")
	seeds := fuzzSeeds()
	if os.Getenv("WAL_WRITE_FUZZ_SEEDS") != "" {
		require.NoError(t, os.MkdirAll(dir, 0o755))
		for name, in := range seeds {
			require.NoError(t, os.WriteFile(filepath.Join(dir, name), fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", in), 0o644))
		}
	}
	for name, in := range seeds {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err, "run with WAL_WRITE_FUZZ_SEEDS=1 to write the seeds")
		require.Equal(t, fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", in), string(b), "%s is stale: run with WAL_WRITE_FUZZ_SEEDS=1", name)
	}
}

// fuzzSeeds are small segments (a segment of any size reads), valid and
// damaged, each behind its mode byte: of format version 1 (the seeds
// written before version 2), and of version 2 with pad marks.
func fuzzSeeds() map[string][]byte {
	const size = 1024
	const nonce = 0x1122334455667788
	seg := func(frames func(b []byte, p Position) []byte) []byte {
		b := header{size: size, nonce: nonce, version: 1}.encode()
		b = frames(b, HeaderSize)
		return append(b, make([]byte, size-len(b))...)
	}
	records := func(b []byte, p Position, nonce uint64, data ...string) ([]byte, Position) {
		for _, d := range data {
			b = putFrame(b, nonce, p, uint32(len(d)), []byte(d))
			p += Position(FrameHeaderSize + len(d))
		}
		return b, p
	}
	valid := seg(func(b []byte, p Position) []byte {
		b, _ = records(b, p, nonce, "one", "two", "three")
		return b
	})
	epoch := seg(func(b []byte, p Position) []byte {
		b, p = records(b, p, nonce, "before the epoch")
		b = putFrame(b, nonce, p, kindEpoch, binary.LittleEndian.AppendUint64(nil, 42))
		b, _ = records(b, p+epochFrame, 42, "after", "the epoch")
		return b
	})
	closed := seg(func(b []byte, p Position) []byte {
		b, p = records(b, p, nonce, "closed after this")
		b = putFrame(b, nonce, p, kindClose, nil)
		b, _ = records(b, p+FrameHeaderSize, nonce, "stale past the close mark")
		return b
	})
	next := seg(func(b []byte, p Position) []byte {
		b, p = records(b, p, nonce, "and on to the next segment")
		return putFrame(b, nonce, p, kindNext, nil)
	})
	torn := slices.Clone(valid)
	torn[HeaderSize+FrameHeaderSize+3+FrameHeaderSize+1] ^= 0x40 // in "two"
	long := slices.Clone(valid)
	binary.LittleEndian.PutUint32(long[HeaderSize:], 1<<30) // a length past the file
	badHeader := slices.Clone(valid)
	badHeader[10] ^= 1

	// Version 2: a page and a bit, for a pad mark to lead somewhere.
	const padSize = pageSize + 256
	seg2 := func(version byte, frames func(b []byte, p Position) []byte) []byte {
		b := header{size: padSize, nonce: nonce, version: version}.encode()
		b = frames(b, HeaderSize)
		return append(b, make([]byte, padSize-len(b))...)[:padSize]
	}
	// padded: records, a pad mark, stale bytes (a record valid where it
	// lies, had the writer written it) before the boundary, records at
	// the boundary.
	padded := func(b []byte, p Position) []byte {
		b, p = records(b, p, nonce, "before", "the pad")
		b = putFrame(b, nonce, p, kindPad, nil)
		stale := p + FrameHeaderSize
		b = putFrame(b, nonce, stale, 5, []byte("stale"))
		b = append(b, make([]byte, pageSize-len(b))...)
		b, _ = records(b, pageSize, nonce, "after", "the pad")
		return b
	}
	pad := seg2(2, padded)
	padTorn := slices.Clone(pad)
	padTorn[pageSize+FrameHeaderSize+2] ^= 0x08 // in "after"
	padV1 := seg2(1, padded)
	// Pad marks the writer never writes: one that straddles a boundary,
	// and one with no room for a frame after its boundary.
	padStraddle := seg2(2, func(b []byte, p Position) []byte {
		b, p = records(b, p, nonce, "one")
		b, p = records(b, p, nonce, string(make([]byte, pageSize-4-int(p)-FrameHeaderSize)))
		return putFrame(b, nonce, p, kindPad, nil)
	})
	padNoRoom := seg2(2, func(b []byte, p Position) []byte {
		b, p = records(b, p, nonce, "one")
		b = putFrame(b, nonce, p, kindPad, nil)
		b = append(b, make([]byte, pageSize-len(b))...)
		b, p = records(b, pageSize, nonce, "two")
		return putFrame(b, nonce, p, kindPad, nil)
	})
	// An epoch after the pad: its nonce holds after the boundary.
	padEpoch := seg2(2, func(b []byte, p Position) []byte {
		b, p = records(b, p, nonce, "one")
		b = putFrame(b, nonce, p, kindEpoch, binary.LittleEndian.AppendUint64(nil, 43))
		b, p = records(b, p+epochFrame, 43, "two")
		b = putFrame(b, 43, p, kindPad, nil)
		b = append(b, make([]byte, pageSize-len(b))...)
		b, p = records(b, pageSize, 43, "three")
		return putFrame(b, 43, p, kindClose, nil)
	})
	return map[string][]byte{
		"pad":           append([]byte{0}, pad...),
		"pad-fixed":     append([]byte{1}, pad...),
		"pad-fixed-v1":  append([]byte{3}, pad...),
		"pad-torn":      append([]byte{0}, padTorn...),
		"pad-v1":        append([]byte{0}, padV1...),
		"pad-straddle":  append([]byte{0}, padStraddle...),
		"pad-no-room":   append([]byte{0}, padNoRoom...),
		"pad-epoch":     append([]byte{0}, padEpoch...),
		"valid":         append([]byte{0}, valid...),
		"valid-fixed":   append([]byte{1}, valid...),
		"epoch":         append([]byte{0}, epoch...),
		"closed":        append([]byte{0}, closed...),
		"next-missing":  append([]byte{0}, next...),
		"torn":          append([]byte{1}, torn...),
		"length":        append([]byte{1}, long...),
		"bad-header":    append([]byte{0}, badHeader...),
		"short":         append([]byte{1}, valid[:HeaderSize+5]...),
		"empty":         {1},
		"header-only":   append([]byte{0}, valid[:HeaderSize]...),
		"garbage-fixed": append([]byte{1}, bytes.Repeat([]byte{0xA5, 0x5A, 0xFF, 0x00, 0x13}, 300)...),
	}
}

// TestPadSeeds replays the seeds with pad marks and checks what each
// reads as.
func TestPadSeeds(t *testing.T) {
	t.Parallel()
	seeds := fuzzSeeds()
	for _, c := range []struct {
		seed    string
		records []string
		end     Position // of the tail; 0 for a *CorruptError
		reason  string
	}{
		{"pad", []string{"before", "the pad", "after", "the pad"}, pageSize + 2*FrameHeaderSize + 12, "zeroed tail"},
		{"pad-fixed", []string{"before", "the pad", "after", "the pad"}, pageSize + 2*FrameHeaderSize + 12, "zeroed tail"},
		{"pad-torn", []string{"before", "the pad"}, pageSize, "checksum mismatch in the record"},
		{"pad-v1", nil, 0, "a pad mark in a segment of format version 1"},
		{"pad-fixed-v1", nil, 0, "a pad mark in a segment of format version 1"},
		{"pad-straddle", []string{"one", string(make([]byte, pageSize-4-HeaderSize-2*FrameHeaderSize-3))}, pageSize - 4, "out of place"},
		{"pad-no-room", []string{"one", "two"}, pageSize + FrameHeaderSize + 3, "out of place"},
		{"pad-epoch", []string{"one", "two", "three"}, pageSize + FrameHeaderSize + 5, "closed"},
	} {
		t.Run(c.seed, func(t *testing.T) {
			in := seeds[c.seed]
			file := in[1:]
			if in[0]&1 == 1 {
				h := header{size: int64(len(file)), nonce: binary.LittleEndian.Uint64(file[24:])}
				if in[0]&2 != 0 {
					h.version = 1
				}
				file = append(h.encode(), file[HeaderSize:]...)
			}
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, segName(0)), file, 0o600))
			l, err := Open(dir, Options{SegmentSize: small})
			require.NoError(t, err)
			defer l.Close()
			got, tail, err := replayAll(l, 0)
			if c.end == 0 {
				var ce *CorruptError
				require.ErrorAs(t, err, &ce)
				require.Contains(t, ce.Reason, c.reason)
				return
			}
			require.NoError(t, err)
			var data []string
			for _, r := range got {
				data = append(data, string(r.data))
			}
			require.Equal(t, c.records, data)
			require.Equal(t, c.end, tail.End)
			require.Contains(t, tail.Reason, c.reason)
		})
	}
}
