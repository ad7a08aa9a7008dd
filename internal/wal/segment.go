package wal

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The segment header, HeaderSize bytes at the start of every segment file:
//
//	0   magic "LDWAL\x00"
//	6   format version: 2; this library reads 1 and 2 (1 has no pad
//	    marks)
//	7   reserved, zero
//	8   segment size in bytes, u64, the file's size
//	16  base position, u64, the position of the file's first byte
//	24  nonce, u64, drawn afresh each time the file is made ready for a base
//	32  reserved, zero
//	60  CRC-32C of bytes 0 to 60, u32
//
// Integers are little-endian, here and in frames.
const (
	// HeaderSize is the size of a segment's header: a segment's first
	// frame is at its base plus HeaderSize.
	HeaderSize  = 64
	headerCRCAt = 60
	// formatVersion is the version of the segments this library writes;
	// it reads those from minFormatVersion on. Version 2 adds pad marks.
	formatVersion    = 2
	minFormatVersion = 1
)

var magic = [6]byte{'L', 'D', 'W', 'A', 'L', 0}

// FrameHeaderSize is the size of a frame's header: the data of a record
// appended at position p lies at p+FrameHeaderSize.
const FrameHeaderSize = 8

// Frame kinds. A frame is [u32 length or kind][u32 CRC-32C][payload]; a
// length at or above kindLowest is one of these kinds, anything else the
// length of a record's data.
const (
	// kindNext ends a segment: the stream continues at the next segment's
	// first frame. No payload.
	kindNext = 0xFFFFFFFF
	// kindEpoch starts a new nonce for the rest of the segment: the
	// writer's first frame after a Replay. Payload: the new nonce, 8
	// bytes.
	kindEpoch = 0xFFFFFFFE
	// kindClose marks where a Log was closed: a clean end. No payload.
	kindClose = 0xFFFFFFFD
	// kindPad ends an Append's write short of a page boundary of the
	// segment file: the next frame is at that boundary, and the bytes
	// between are not written. No payload. Format version 2 on.
	kindPad    = 0xFFFFFFFC
	kindLowest = kindPad
	epochFrame = FrameHeaderSize + 8
)

// pageSize is the alignment pad marks keep: the page of the page cache,
// and the block of the file systems the log is meant for.
const pageSize = 4096

// padTo returns where the next frame goes after a pad mark at file offset
// off: the next page boundary. ok is false where the writer puts no pad
// mark: at a boundary, or too close to the next one for the mark.
func padTo(off int64) (next int64, ok bool) {
	next = off&^(pageSize-1) + pageSize
	return next, off%pageSize != 0 && next-off >= FrameHeaderSize
}

// maxSegmentSize bounds a header's size field, so a damaged one is refused
// before anything is sized from it; it is also the largest SegmentSize and
// bounds oversized segments (MaxRecord stays below it).
const maxSegmentSize = 1 << 31

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frameCRC is the checksum of a frame at position p written under nonce:
// CRC-32C over the nonce, the position and the length field (8, 8 and 4
// bytes, little-endian), then the payload. The nonce and position make a
// frame valid in one place of one life of one segment only.
func frameCRC(nonce uint64, p Position, length uint32, payload []byte) uint32 {
	// The 20 bytes of the seed go through the table by hand: handed to
	// crc32.Update in an array, they would be allocated, once per frame.
	crc := ^uint32(0)
	for _, v := range [...]struct {
		x uint64
		n int
	}{{nonce, 8}, {uint64(p), 8}, {uint64(length), 4}} {
		for i := range v.n {
			crc = castagnoli[byte(crc)^byte(v.x>>(8*i))] ^ crc>>8
		}
	}
	return crc32.Update(^crc, castagnoli, payload)
}

// putFrame appends a frame to buf.
func putFrame(buf []byte, nonce uint64, p Position, length uint32, payload []byte) []byte {
	buf = binary.LittleEndian.AppendUint32(buf, length)
	buf = binary.LittleEndian.AppendUint32(buf, frameCRC(nonce, p, length, payload))
	return append(buf, payload...)
}

// header is a segment header, decoded.
type header struct {
	size    int64
	base    Position
	nonce   uint64
	version byte // zero encodes formatVersion
}

// pads says whether the segment may hold pad marks.
func (h header) pads() bool { return h.version >= 2 }

func (h header) encode() []byte {
	b := make([]byte, HeaderSize)
	copy(b, magic[:])
	b[6] = h.version
	if h.version == 0 {
		b[6] = formatVersion
	}
	binary.LittleEndian.PutUint64(b[8:], uint64(h.size))
	binary.LittleEndian.PutUint64(b[16:], uint64(h.base))
	binary.LittleEndian.PutUint64(b[24:], h.nonce)
	binary.LittleEndian.PutUint32(b[headerCRCAt:], crc32.Checksum(b[:headerCRCAt], castagnoli))
	return b
}

// decodeHeader checks a header read from a file whose name says base and
// whose size is fileSize, and returns why it is refused ("" if it is not).
func decodeHeader(b []byte, base Position, fileSize int64) (header, string) {
	if len(b) < HeaderSize {
		return header{}, fmt.Sprintf("file of %d bytes, shorter than a header", len(b))
	}
	if [6]byte(b[:6]) != magic {
		return header{}, "no segment magic"
	}
	if got, want := binary.LittleEndian.Uint32(b[headerCRCAt:]), crc32.Checksum(b[:headerCRCAt], castagnoli); got != want {
		return header{}, fmt.Sprintf("header checksum %08x, want %08x", got, want)
	}
	if b[6] < minFormatVersion || b[6] > formatVersion {
		// Checked after the checksum: a version this library does not
		// know is a newer library's file, not damage.
		return header{}, fmt.Sprintf("format version %d, this library reads %d to %d", b[6], minFormatVersion, formatVersion)
	}
	h := header{
		size:    int64(binary.LittleEndian.Uint64(b[8:])),
		base:    Position(binary.LittleEndian.Uint64(b[16:])),
		nonce:   binary.LittleEndian.Uint64(b[24:]),
		version: b[6],
	}
	switch {
	case h.base != base:
		return header{}, fmt.Sprintf("header base %#x, file named for %#x", uint64(h.base), uint64(base))
	case h.size < HeaderSize+FrameHeaderSize || h.size > maxSegmentSize:
		return header{}, fmt.Sprintf("segment size %d out of range", h.size)
	case h.size != fileSize:
		return header{}, fmt.Sprintf("header says %d bytes, file has %d", h.size, fileSize)
	case uint64(h.base)+uint64(h.size) < uint64(h.base):
		return header{}, "segment runs past the last position"
	}
	return h, ""
}

func newNonce() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand documents it)
	return binary.LittleEndian.Uint64(b[:])
}

// File names. A segment is named by its base position, so that listing the
// directory orders the log; a spare keeps the base it last had, only to
// stay unique; a file being prepared has a temporary name until it is
// complete and synced.
const (
	segSuffix   = ".wal"
	spareSuffix = ".spare"
	tmpSuffix   = ".tmp"
)

func segName(base Position) string   { return fmt.Sprintf("%016x%s", uint64(base), segSuffix) }
func spareName(base Position) string { return fmt.Sprintf("%016x%s", uint64(base), spareSuffix) }

// parseName returns the base of a segment or spare file name and which it
// is; ok is false for any other name.
func parseName(name string) (base Position, spare, ok bool) {
	stem, suffix := name, ""
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		stem, suffix = name[:i], name[i:]
	}
	if len(stem) != 16 || (suffix != segSuffix && suffix != spareSuffix) {
		return 0, false, false
	}
	v, err := strconv.ParseUint(stem, 16, 64)
	if err != nil {
		return 0, false, false
	}
	return Position(v), suffix == spareSuffix, true
}

// zeros is what new segments are filled with.
// zeros fills new segments a page at a time. Larger writes would be
// fewer, but Linux then caches the file in large folios, and every later
// small append dirties (and /proc/self/io counts, and writeback may
// write) a whole folio, up to 256 KiB, rather than the page it touched:
// measured here, 272 KB counted per 1 KiB record against 9 KB with
// page-sized fills.
var zeros = make([]byte, 4<<10)

// createSegment writes a new segment file of the given size and base in
// dir: real zero blocks up to its size and then its header, under a
// temporary name; it syncs the file, renames it to its segment name and
// syncs the directory, so that the segment exists whole, with its blocks
// allocated, before any record is written to it. stop is polled between
// blocks so that Close need not wait for a large file; it may be nil.
func createSegment(dir string, base Position, size int64, stop func() bool) (f *os.File, err error) {
	tmp := filepath.Join(dir, segName(base)+tmpSuffix)
	f, err = os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	done, err := preallocate(f, size)
	if err != nil {
		return nil, err
	}
	for off := int64(0); !done && off < size; {
		if stop != nil && stop() {
			return nil, errStopped
		}
		n := min(int64(len(zeros)), size-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return nil, err
		}
		off += n
	}
	if _, err := f.WriteAt(header{size: size, base: base, nonce: newNonce()}.encode(), 0); err != nil {
		return nil, err
	}
	// A full fsync: the file's size and blocks are new metadata.
	if err := f.Sync(); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, segName(base))); err != nil {
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	return f, nil
}

// reuseSpare makes the spare file `name` (of `size` bytes) the segment at
// base: it writes a header with the base and a new nonce, syncs it, then
// renames the file and syncs the directory. The records left in it from
// its previous life were written under another nonce and at other
// positions, so none of them passes its check in the new one. A crash
// before the rename leaves a spare whose header names a base it does not
// hold, which is harmless: a spare's header is never read. The file may
// already have the segment's name: Replay makes the segment it finds
// where the next one goes the next one this way (what a crashed Append
// left in it fails under the new nonce all the same).
func reuseSpare(dir, name string, base Position, size int64) (f *os.File, err error) {
	from := filepath.Join(dir, name)
	f, err = os.OpenFile(from, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	// Its pages are clean: it was synced before it was retired.
	dropCache(f)
	if _, err := f.WriteAt(header{size: size, base: base, nonce: newNonce()}.encode(), 0); err != nil {
		return nil, err
	}
	if err := fdatasync(f); err != nil {
		return nil, err
	}
	if name == segName(base) {
		return f, nil // a segment past the end, kept where it was
	}
	if err := os.Rename(from, filepath.Join(dir, segName(base))); err != nil {
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	return f, nil
}

var errStopped = errors.New("wal: preparation stopped by Close")

// syncDir makes the directory's entries (new names, renames, removals)
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// readFull reads len(b) bytes at off; a short file is an error, never a
// silent zero fill.
func readFull(f *os.File, b []byte, off int64) error {
	n, err := f.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}
