package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// Replay calls fn for each record at or after from, in order, with the
// record's position and data; data is valid only during the call. It
// stops at the end of the log: the zeroed tail of a segment, the mark
// Close left, or the first frame that fails its check, which Tail
// reports. An error from fn stops it and is returned as is. A nil fn
// only checks the records and finds the end.
//
// from is a position this log returned (a record's position, an end, or
// End) of a synced record, or zero for the beginning of a log never
// recycled, or any position for a log with no segment yet, which then
// begins there. Replay reads the segment holding from from its first frame,
// checking each, and delivers those at or after from. It returns ErrGap
// when from lies before the oldest segment or past the end, and a
// *CorruptError when a segment it must read has a damaged header or is
// missing, or when a frame before from fails its check.
//
// Once Replay has succeeded the log writes at Tail.End. Replay may be
// called again until the first Append, and not after. On an empty
// directory (or one holding only spares) it starts the log: its first
// segment at from less HeaderSize (zero for a from of HeaderSize or
// less), so that its first record lies at from.
//
// Replay writes only to give the segments past the end a new nonce or
// set them aside as spares (see the package doc) and, for a new log, to
// create the first segment.
func (l *Log) Replay(from Position, fn func(p Position, data []byte) error) (Tail, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return Tail{}, ErrClosed
	case l.appended:
		return Tail{}, errors.New("wal: Replay after Append")
	}
	if l.cur != nil {
		l.cur.Close()
		l.cur = nil
	}
	l.replayed = false
	l.rd.reset(ErrNotReplayed)
	if len(l.live) == 0 {
		return l.start(from)
	}
	i := len(l.live) - 1
	for i >= 0 && l.live[i].base > from {
		i--
	}
	if i < 0 {
		return Tail{}, fmt.Errorf("%w: %#x is before the oldest segment, %s", ErrGap, uint64(from), segName(l.live[0].base))
	}
	w, err := l.walk(i, from, fn)
	if err != nil {
		return Tail{}, err
	}
	switch {
	case w.tail.End < from && w.tail.Torn:
		// from was synced, and so was every record before it: a frame
		// that fails there is damage, and the records at from cannot be
		// reached (the nonce in force there depends on what lies before).
		return Tail{}, &CorruptError{
			Segment: w.tail.Segment,
			Offset:  int64(w.tail.End - l.live[w.seg].base),
			Reason:  fmt.Sprintf("%s, before the replay position %#x", w.tail.Reason, uint64(from)),
		}
	case w.tail.End < from:
		return Tail{}, fmt.Errorf("%w: %#x is past the end of the log, %#x (%s)", ErrGap, uint64(from), uint64(w.tail.End), w.tail.Reason)
	}
	if err := l.finish(w); err != nil {
		return Tail{}, err
	}
	if w.tail.Torn {
		l.log.Debug("wal: torn tail", "end", uint64(w.tail.End), "segment", w.tail.Segment, "reason", w.tail.Reason)
	}
	return w.tail, nil
}

// start begins a new log.
func (l *Log) start(from Position) (Tail, error) {
	// A log begun under a position its owner already recorded (a file
	// copied without its log) begins there, so that positions only grow:
	// the first record lies at from.
	base := Position(0)
	if from > HeaderSize {
		base = from - HeaderSize
	}
	r, err := l.obtain(base, 0)
	if err != nil {
		return Tail{}, fmt.Errorf("wal: first segment: %w", err)
	}
	if err := errors.Join(l.removeTmps(), l.trimSpares()); err != nil {
		r.f.Close()
		return Tail{}, err
	}
	l.live = []segment{{base: base, size: r.hdr.size}}
	l.cur, l.pos, l.nonce, l.needEpoch = r.f, base+HeaderSize, r.hdr.nonce, false
	l.pads, l.written = r.hdr.pads(), r.written
	l.replayed = true
	l.rd.set(l.live, l.pos)
	l.setWant(base + Position(r.hdr.size))
	return Tail{End: l.pos, New: true, Reason: "new log", Segment: segName(base)}, nil
}

// walked is where a walk ended.
type walked struct {
	tail  Tail
	seg   int    // index in live of the segment holding the end
	nonce uint64 // in force at the end
	pads  bool   // that segment may hold pad marks
}

// walk reads the frames from the first of live[i] on, following the
// segments, until the end.
func (l *Log) walk(i int, from Position, fn func(Position, []byte) error) (walked, error) {
	r := &segReader{win: make([]byte, readWindow)}
	defer r.close()
	for {
		s := l.live[i]
		hdr, err := r.open(l.dir, s)
		if err != nil {
			return walked{}, err
		}
		nonce := hdr.nonce
		p := s.base + HeaderSize
		end := func(torn bool, format string, args ...any) (walked, error) {
			return walked{
				tail:  Tail{End: p, Torn: torn, Reason: fmt.Sprintf(format, args...), Segment: r.name},
				seg:   i,
				nonce: nonce,
				pads:  hdr.pads(),
			}, nil
		}
		for {
			off := int64(p - s.base)
			if off+FrameHeaderSize > s.size {
				// The writer always leaves room for a frame header.
				return end(true, "no room for a frame at offset %d", off)
			}
			h, err := r.at(off, FrameHeaderSize)
			if err != nil {
				return walked{}, err
			}
			length, sum := binary.LittleEndian.Uint32(h), binary.LittleEndian.Uint32(h[4:])
			switch {
			case length == 0 && sum == 0:
				return end(false, "zeroed tail")
			case length == kindNext || length == kindClose:
				if sum != frameCRC(nonce, p, length, nil) {
					return end(true, "checksum mismatch in a mark at offset %d", off)
				}
				if length == kindClose {
					return end(false, "closed")
				}
			case length == kindPad:
				if sum != frameCRC(nonce, p, length, nil) {
					return end(true, "checksum mismatch in a pad mark at offset %d", off)
				}
				if !hdr.pads() {
					return walked{}, &CorruptError{Segment: r.name, Offset: off, Reason: fmt.Sprintf("a pad mark in a segment of format version %d", hdr.version)}
				}
				// The writer wrote nothing between the mark and the page
				// boundary: what is there is never read.
				next, ok := padTo(off)
				if !ok || next+FrameHeaderSize > s.size {
					// Never written so: the writer pads only where a
					// frame fits before the boundary and a next mark after.
					return end(true, "pad mark at offset %d out of place", off)
				}
				p = s.base + Position(next)
				continue
			case length == kindEpoch:
				if off+epochFrame+FrameHeaderSize > s.size {
					return end(true, "epoch frame runs past the segment at offset %d", off)
				}
				b, err := r.at(off+FrameHeaderSize, 8)
				if err != nil {
					return walked{}, err
				}
				if sum != frameCRC(nonce, p, length, b) {
					return end(true, "checksum mismatch in an epoch frame at offset %d", off)
				}
				nonce = binary.LittleEndian.Uint64(b)
				p += epochFrame
				continue
			case length == 0:
				return end(true, "zero length with a checksum at offset %d", off)
			default:
				// A length is trusted no further than the segment: a damaged
				// one never sizes a read beyond the file.
				if off+FrameHeaderSize+int64(length)+FrameHeaderSize > s.size {
					return end(true, "record length %d at offset %d runs past the segment", length, off)
				}
				data, err := r.at(off+FrameHeaderSize, int(length))
				if err != nil {
					return walked{}, err
				}
				if sum != frameCRC(nonce, p, length, data) {
					return end(true, "checksum mismatch in the record at offset %d", off)
				}
				if p >= from && fn != nil {
					if err := fn(p, data); err != nil {
						return walked{}, err
					}
				}
				p += Position(FrameHeaderSize + int(length))
				continue
			}
			// kindNext: on to the next segment, which must be there: the
			// writer only writes this frame once the next segment is
			// ready, synced and named.
			next := s.end()
			j := slices.IndexFunc(l.live, func(t segment) bool { return t.base == next })
			if j < 0 {
				return walked{}, &CorruptError{Segment: segName(next), Reason: fmt.Sprintf("missing, and %s continues into it (offset %d)", r.name, off)}
			}
			i = j
			break
		}
	}
}

// finish makes the log write at the end of a successful walk: the
// segments past it become spares, and the one holding it is opened for
// writing.
func (l *Log) finish(w walked) error {
	s := l.live[w.seg]
	f, err := os.OpenFile(filepath.Join(l.dir, segName(s.base)), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	// The walk read it through the cache, in folios as large as its
	// readahead; appends should find pages of their own size instead
	// (see dropCache). What it holds is synced, or torn and ignored.
	dropCache(f)
	// Segments past the end hold nothing replayed, at best records of an
	// Append a crash cut short, valid under their segment's nonce: they
	// are reused only through reuseSpare, which gives them a new one.
	var errs []error
	ahead := l.live[w.seg+1:]
	synced := true
	for _, t := range ahead {
		if t.base == s.end() && t.size == l.o.SegmentSize {
			// Most often the segment prepared before the log was closed,
			// already named for the base the next one gets: a new nonce
			// is all it needs to be the next one. (Not a spare under a
			// segment's name, which a later segment could be confused
			// with.)
			r, err := l.make(t.base, t.size, spare{name: segName(t.base), size: t.size}, true, nil)
			if err == nil {
				l.pmu.Lock()
				l.next = r
				l.pmu.Unlock()
			}
			errs = append(errs, err)
			continue
		}
		errs = append(errs, l.retire(segName(t.base), t.base, t.size))
		synced = false
	}
	l.live = l.live[:w.seg+1]
	if !synced {
		errs = append(errs, syncDir(l.dir))
	}
	errs = append(errs, l.removeTmps(), l.trimSpares())
	if err := errors.Join(errs...); err != nil {
		f.Close()
		return fmt.Errorf("wal: put aside the segments past the end: %w", err)
	}
	l.cur, l.pos, l.nonce, l.needEpoch, l.curDirty = f, w.tail.End, w.nonce, true, false
	l.pads, l.written = w.pads, writtenPrefix(f, s.size)
	l.replayed = true
	l.rd.set(l.live, l.pos)
	l.setWant(s.end())
	return nil
}

// removeTmps removes the files of preparations a crash interrupted. They
// were never named as segments, so nothing reads them.
func (l *Log) removeTmps() error {
	for len(l.tmps) > 0 {
		if err := os.Remove(filepath.Join(l.dir, l.tmps[0])); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		l.tmps = l.tmps[1:]
	}
	return nil
}

// trimSpares removes the spares the log would never reuse: those of
// another size than Options.SegmentSize (it was changed) and those past
// maxSpares.
func (l *Log) trimSpares() error {
	l.pmu.Lock()
	defer l.pmu.Unlock()
	var errs []error
	kept := l.spares[:0]
	for _, s := range l.spares {
		if s.size == l.o.SegmentSize && len(kept) < maxSpares {
			kept = append(kept, s)
			continue
		}
		if err := os.Remove(filepath.Join(l.dir, s.name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			kept = append(kept, s)
		}
	}
	l.spares = kept
	return errors.Join(errs...)
}

const readWindow = 256 << 10

// segReader reads one segment at a time through a window, so that small
// records cost no syscall each and a large one no more than its size.
type segReader struct {
	f      *os.File
	name   string
	size   int64
	win    []byte
	winOff int64
	winLen int
	big    []byte
}

// open opens and checks the segment s, and returns its header.
func (r *segReader) open(dir string, s segment) (header, error) {
	r.close()
	r.name = segName(s.base)
	f, err := os.Open(filepath.Join(dir, r.name))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return header{}, &CorruptError{Segment: r.name, Reason: "missing"}
		}
		return header{}, fmt.Errorf("wal: %w", err)
	}
	r.f = f
	h, err := readHeader(f, r.name, s.base)
	if err != nil {
		return header{}, err
	}
	r.size, r.winLen = h.size, 0
	return h, nil
}

// at returns n bytes at off, valid until the next call; off+n is within
// the segment.
func (r *segReader) at(off int64, n int) ([]byte, error) {
	if off >= r.winOff && off+int64(n) <= r.winOff+int64(r.winLen) {
		return r.win[off-r.winOff:][:n], nil
	}
	var b []byte
	if n <= len(r.win) {
		m := min(int64(len(r.win)), r.size-off)
		if err := readFull(r.f, r.win[:m], off); err != nil {
			return nil, fmt.Errorf("wal: read %s: %w", r.name, err)
		}
		r.winOff, r.winLen = off, int(m)
		return r.win[:n], nil
	}
	if cap(r.big) < n {
		r.big = make([]byte, n)
	}
	b = r.big[:n]
	if err := readFull(r.f, b, off); err != nil {
		return nil, fmt.Errorf("wal: read %s: %w", r.name, err)
	}
	return b, nil
}

func (r *segReader) close() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}
