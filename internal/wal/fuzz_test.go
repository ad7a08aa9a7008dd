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
// kept) so that the fuzzer spends its time on the frames. Replay must not
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
			copy(file, header{size: int64(len(file)), nonce: binary.LittleEndian.Uint64(file[24:])}.encode())
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
// damaged, each behind its mode byte.
func fuzzSeeds() map[string][]byte {
	const size = 1024
	const nonce = 0x1122334455667788
	seg := func(frames func(b []byte, p Position) []byte) []byte {
		b := header{size: size, nonce: nonce}.encode()
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
	return map[string][]byte{
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
