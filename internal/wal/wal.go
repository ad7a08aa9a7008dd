package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
)

// Position is a byte offset in the log's stream, counted from the log's
// creation. A segment holds the positions from its base to its base plus
// its size; the next segment's base is that sum. A record's position is
// that of its frame (its data follows the frame's header). An end, as
// Append, End and Tail return it, is where the next frame goes: after the
// last record, or at the page boundary a pad mark after it leads to (see
// the package doc). Positions of acknowledged records only grow; a
// position past the last synced record may be written again after a crash.
type Position uint64

// Errors returned by the log. They are wrapped with the detail of the
// call, so test them with errors.Is.
var (
	// ErrClosed is returned by every call made after Close, and by a
	// second Close.
	ErrClosed = errors.New("wal: closed")
	// ErrNotReplayed is returned by Append, Sync and Recycle until Replay
	// has succeeded once: until then the log does not know where it ends.
	ErrNotReplayed = errors.New("wal: not replayed yet")
	// ErrGap is returned by Replay when the log does not hold the position
	// asked for: it lies before the oldest segment (recycled, or the
	// directory is not the log the position came from) or after the end of
	// the valid records.
	ErrGap = errors.New("wal: log does not hold the position")
	// ErrLocked is returned by Open when another Log, in this process or
	// another, has the directory open.
	ErrLocked = errors.New("wal: log directory is in use")
	// ErrRecordSize is returned by Append for an empty record or one
	// larger than Options.MaxRecord. Nothing of the call is written.
	ErrRecordSize = errors.New("wal: record size out of range")
)

// CorruptError reports a segment Replay cannot read: a header damaged or
// of a newer format, a segment the log continues into that is missing, or
// a frame that fails its check before the position replayed from. A
// record that fails its checksum at or after that position is not one:
// it ends the log (see Tail).
type CorruptError struct {
	Segment string // file name, in the log directory
	Offset  int64  // byte offset in the file
	Reason  string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("wal: corrupt segment %s at offset %d: %s", e.Segment, e.Offset, e.Reason)
}

// Tail describes where Replay found the log to end.
type Tail struct {
	// End is the position after the last valid record (or frame; after
	// a pad mark, the page boundary it leads to): the next Append writes
	// there.
	End Position
	// Torn is set when what follows End is neither the zeroed tail of a
	// new segment nor the mark Close leaves: records a crash cut (never
	// synced, so never acknowledged), or, in a recycled segment, the
	// bytes of its previous life; or else damage to synced records, a
	// flipped bit, which reads the same, and then the records after it
	// are lost. Append writes over what follows End.
	Torn bool
	// New is set when Replay found no segment and began the log.
	New bool
	// Reason says why the log ends at End, for a log line.
	Reason string
	// Segment is the file holding End.
	Segment string
}

// Defaults and limits of Options.
const (
	DefaultSegmentSize = 4 << 20
	MinSegmentSize     = 64 << 10
	MaxSegmentSize     = 1 << 30
	DefaultMaxRecord   = 64 << 20
	// MaxMaxRecord bounds Options.MaxRecord: a record gets a segment of its
	// own when it is larger than a segment, and no segment is larger than
	// 2 GiB.
	MaxMaxRecord = 1 << 30
)

// maxSpares is how many segment files the log keeps for reuse, counting
// the one prepared for the next rollover. A reused segment's blocks are
// written, so appends end with pad marks there and no first write costs a
// journal commit, as it does in a new one: after bench/peers' warm-up, one
// producer's log wrote 4,773 bytes per event keeping two spares (part of
// its appends went to new segments) and 4,101 keeping four. Each spare
// costs a segment's size of idle disk: 16 MiB at the default size.
const maxSpares = 4

// Options configure a Log. They are fixed at Open; the zero value is
// usable.
type Options struct {
	// SegmentSize is the size of a segment file. Zero means
	// DefaultSegmentSize; it must lie between MinSegmentSize and
	// MaxSegmentSize. Segments written with another size stay readable.
	SegmentSize int64
	// MaxRecord is the largest record Append takes. Zero means
	// DefaultMaxRecord; at most MaxMaxRecord.
	MaxRecord int
	// Logger receives the log's debug lines and the background
	// preparer's failures. Nil discards them.
	Logger *slog.Logger

	// padAlways makes Append end with a pad mark wherever the format
	// allows, whether or not the page after it was written before: for
	// tests that need pad marks on any file system.
	padAlways bool
}

func (o Options) resolve() (Options, error) {
	switch {
	case o.SegmentSize == 0:
		o.SegmentSize = DefaultSegmentSize
	case o.SegmentSize < MinSegmentSize || o.SegmentSize > MaxSegmentSize:
		return o, fmt.Errorf("wal: SegmentSize %d outside [%d, %d]", o.SegmentSize, MinSegmentSize, MaxSegmentSize)
	}
	switch {
	case o.MaxRecord == 0:
		o.MaxRecord = DefaultMaxRecord
	case o.MaxRecord < 0 || o.MaxRecord > MaxMaxRecord:
		return o, fmt.Errorf("wal: MaxRecord %d outside [1, %d]", o.MaxRecord, MaxMaxRecord)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// segment is a segment file's place in the stream.
type segment struct {
	base Position
	size int64
}

func (s segment) end() Position { return s.base + Position(s.size) }

// ready is a segment file made ready for a base: allocated, headed,
// synced and named.
type ready struct {
	f       *os.File
	hdr     header
	written int64 // how far its blocks have all been written (writtenPrefix)
}

// spare is a file kept for reuse as a future segment.
type spare struct {
	name string
	size int64
}

// Log is a write-ahead log in a directory. One writer: the caller orders
// Append and Sync; every method may be called from any goroutine, and
// each waits for the one running. Replay's fn must not call the Log.
type Log struct {
	dir  string
	o    Options
	log  *slog.Logger
	dirf *os.File // held open for its lock

	mu        sync.Mutex
	closed    bool
	replayed  bool
	appended  bool
	err       error     // a failed write or sync: the log takes no more
	live      []segment // by base; once replayed, the last is written
	cur       *os.File  // the last live segment, read-write
	pos       Position  // where the next frame goes
	nonce     uint64    // the nonce frames at pos are written under
	pads      bool      // cur takes pad marks (format version 2 on)
	written   int64     // cur's blocks are all written up to this offset
	needEpoch bool      // the first frame after Replay starts a nonce
	curDirty  bool      // cur written since the last Sync
	dirtyOld  []*os.File
	buf       []byte
	tmps      []string // leftovers of interrupted preparations

	rd readView // for ReadAt; taken after mu, never before

	// The preparer's state, under pmu (taken after mu, never before).
	pmu       sync.Mutex
	pcond     *sync.Cond
	want      Position // the base the next segment must have
	wantSet   bool
	next      *ready
	busy      bool   // a segment is being prepared
	busySize  int64  // its size, for Size
	busySpare string // the spare it reuses, if any
	prepErr   error  // the preparer's last failure; it waits for a new want
	spares    []spare
	stop      atomic.Bool
	done      chan struct{}
}

// Open opens the log in dir, creating the directory (mode 0700) if it is
// missing. It reads no segment and writes nothing: Replay does. Another
// Log holding dir makes it fail with ErrLocked.
func Open(dir string, o Options) (*Log, error) {
	o, err := o.resolve()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	if err := lockDir(d); err != nil {
		d.Close()
		if errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("wal: lock %s: %w", dir, err)
	}
	l := &Log{dir: dir, o: o, log: o.Logger, dirf: d, done: make(chan struct{})}
	l.rd.state = ErrNotReplayed
	l.pcond = sync.NewCond(&l.pmu)
	if err := l.scan(); err != nil {
		unlockDir(d)
		d.Close()
		return nil, err
	}
	go l.prepare()
	return l, nil
}

// scan lists the directory's segments, spares and leftovers.
func (l *Log) scan() error {
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if filepath.Ext(name) == tmpSuffix {
			l.tmps = append(l.tmps, name)
			continue
		}
		base, isSpare, ok := parseName(name)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("wal: %w", err)
		}
		if isSpare {
			l.spares = append(l.spares, spare{name: name, size: info.Size()})
		} else {
			l.live = append(l.live, segment{base: base, size: info.Size()})
		}
	}
	slices.SortFunc(l.live, func(a, b segment) int { return cmpPos(a.base, b.base) })
	return nil
}

func cmpPos(a, b Position) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// writable says why the log takes no write, if it does not.
func (l *Log) writable() error {
	switch {
	case l.closed:
		return ErrClosed
	case !l.replayed:
		return ErrNotReplayed
	case l.err != nil:
		return fmt.Errorf("wal: an earlier write failed (close and open the log again): %w", l.err)
	}
	return nil
}

// Append writes the records, in order, after the last one, and returns
// the position of the first and the end: where the next record goes,
// past the pad mark that ends the write if there is one. They are not
// durable until Sync returns. The frames for one segment go in one write;
// a call that fills a segment continues in the next (see the package
// doc).
//
// An error other than ErrRecordSize (which writes nothing) leaves the log
// refusing every later Append and Sync: what reached the file is unknown.
func (l *Log) Append(data ...[]byte) (first, end Position, err error) {
	return l.append(nil, data)
}

// AppendAt is Append that also stores in at[i] the position of data[i]'s
// frame: data[i] lies at at[i]+FrameHeaderSize in the stream, where
// ReadAt reads it back. len(at) must equal len(data); otherwise it
// returns an error and writes nothing. at is filled only when err is nil.
func (l *Log) AppendAt(at []Position, data ...[]byte) (end Position, err error) {
	if len(at) != len(data) {
		return 0, fmt.Errorf("wal: AppendAt: %d positions for %d records", len(at), len(data))
	}
	_, end, err = l.append(at, data)
	return end, err
}

// append is Append, storing the records' positions in at unless it is
// nil.
func (l *Log) append(at []Position, data [][]byte) (first, end Position, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writable(); err != nil {
		return 0, 0, err
	}
	for i, d := range data {
		if len(d) == 0 || len(d) > l.o.MaxRecord {
			return 0, 0, fmt.Errorf("%w: record %d has %d bytes (1 to %d)", ErrRecordSize, i, len(d), l.o.MaxRecord)
		}
	}
	if len(data) == 0 {
		return l.pos, l.pos, nil
	}
	w := appender{l: l, start: l.pos, buf: l.buf[:0], at: at}
	pos, nonce, needEpoch := l.pos, l.nonce, l.needEpoch
	first, err = w.append(data)
	if cap(w.buf) <= 2*int(l.o.SegmentSize) {
		l.buf = w.buf[:0]
	}
	if err != nil {
		if !w.wrote {
			// Nothing reached a file: the log is as it was.
			l.pos, l.nonce, l.needEpoch = pos, nonce, needEpoch
			return 0, 0, err
		}
		l.err = err
		return 0, 0, fmt.Errorf("wal: append: %w", err)
	}
	return first, l.pos, nil
}

// appender is one Append's frames: buf holds those for the current
// segment from position start.
type appender struct {
	l     *Log
	start Position
	buf   []byte
	wrote bool
	at    []Position // the records' positions, if asked for
}

func (w *appender) append(data [][]byte) (first Position, err error) {
	l := w.l
	l.appended = true
	if l.needEpoch {
		// Frames past the end Replay found may be valid under the nonce
		// in force there (records of a crashed Append, cut before their
		// predecessor): a new nonce makes them unreadable before anything
		// can be written after them.
		if w.room() < epochFrame+FrameHeaderSize {
			if err := w.roll(0); err != nil {
				return 0, err
			}
		} else {
			n := newNonce()
			w.buf = putFrame(w.buf, l.nonce, l.pos, kindEpoch, binary.LittleEndian.AppendUint64(nil, n))
			l.pos += epochFrame
			l.nonce = n
		}
		l.needEpoch = false
	}
	for i, d := range data {
		frame := int64(FrameHeaderSize + len(d))
		if w.room() < frame+FrameHeaderSize {
			if err := w.roll(HeaderSize + frame + FrameHeaderSize); err != nil {
				return 0, err
			}
		}
		if i == 0 {
			first = l.pos
		}
		if w.at != nil {
			w.at[i] = l.pos
		}
		w.buf = putFrame(w.buf, l.nonce, l.pos, uint32(len(d)), d)
		l.pos += Position(frame)
	}
	w.pad()
	return first, w.flush()
}

// pad ends the write with a pad mark when the stream's end is not at a
// page boundary of the segment file, and moves the end to that boundary:
// the next Append then starts on a page of its own, and never writes
// again the page this one ended in, which the Sync after it made clean.
// There is none when the mark would not fit before the boundary, nor when
// a next mark would not fit after it (every frame leaves room for one),
// nor in a segment of format version 1; nor when the page after the
// boundary was never written in this file: a block fallocate left
// unwritten costs a journal commit when first written, and the next
// Append would then pay one every time rather than once a page.
func (w *appender) pad() {
	l := w.l
	s := l.live[len(l.live)-1]
	next, ok := padTo(int64(l.pos - s.base))
	if !l.pads || !ok || next+FrameHeaderSize > s.size || next >= l.written && !l.o.padAlways {
		return
	}
	w.buf = putFrame(w.buf, l.nonce, l.pos, kindPad, nil)
	l.pos = s.base + Position(next)
}

// room is what the current segment has left after pos.
func (w *appender) room() int64 {
	s := w.l.live[len(w.l.live)-1]
	return int64(s.end() - w.l.pos)
}

// flush writes buf to the current segment.
func (w *appender) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	l := w.l
	s := l.live[len(l.live)-1]
	w.wrote = true
	l.curDirty = true
	if _, err := l.cur.WriteAt(w.buf, int64(w.start-s.base)); err != nil {
		return err
	}
	l.written = max(l.written, (int64(w.start-s.base)+int64(len(w.buf))+pageSize-1)&^(pageSize-1))
	l.rd.setEnd(l.pos)
	w.buf = w.buf[:0]
	w.start = l.pos
	return nil
}

// roll ends the current segment with a kindNext frame and moves to the
// next, which must hold at least need bytes. The next segment is obtained
// before anything is written, so that a failure to get one (a full disk)
// leaves the segment as it was.
func (w *appender) roll(need int64) error {
	l := w.l
	s := l.live[len(l.live)-1]
	w.buf = putFrame(w.buf, l.nonce, l.pos, kindNext, nil)
	r, err := l.obtain(s.end(), need)
	if err != nil {
		return fmt.Errorf("segment at %#x: %w", uint64(s.end()), err)
	}
	if err := w.flush(); err != nil {
		l.pmu.Lock()
		l.next = r // for Close to release
		l.pmu.Unlock()
		return err
	}
	l.dirtyOld = append(l.dirtyOld, l.cur)
	l.cur, l.curDirty = r.f, false
	l.live = append(l.live, segment{base: r.hdr.base, size: r.hdr.size})
	l.rd.addSegment(l.live[len(l.live)-1])
	l.pos = r.hdr.base + HeaderSize
	l.nonce = r.hdr.nonce
	l.pads, l.written = r.hdr.pads(), r.written
	w.start = l.pos
	l.log.Debug("wal: segment started", "segment", segName(r.hdr.base), "size", r.hdr.size)
	l.setWant(r.hdr.base + Position(r.hdr.size))
	return nil
}

// Sync makes every record appended so far durable: one fdatasync of each
// segment written since the last Sync (one, unless a segment filled). A
// failure leaves the log refusing every later Append and Sync: after a
// failed fdatasync the kernel may have dropped the pages it could not
// write, so no later Sync could vouch for them.
func (l *Log) Sync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writable(); err != nil {
		return err
	}
	for len(l.dirtyOld) > 0 {
		f := l.dirtyOld[0]
		if err := fdatasync(f); err != nil {
			l.err = err
			return fmt.Errorf("wal: sync %s: %w", filepath.Base(f.Name()), err)
		}
		f.Close()
		l.dirtyOld = l.dirtyOld[1:]
	}
	if l.curDirty {
		if err := fdatasync(l.cur); err != nil {
			l.err = err
			return fmt.Errorf("wal: sync %s: %w", filepath.Base(l.cur.Name()), err)
		}
		l.curDirty = false
	}
	return nil
}

// End returns the write position: where the next record goes, if it fits
// in the current segment. It is zero until Replay.
func (l *Log) End() Position {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pos
}

// Size returns the bytes of the log's files on disk: its segments and the
// spares kept for reuse.
func (l *Log) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n int64
	for _, s := range l.live {
		n += s.size
	}
	l.pmu.Lock()
	defer l.pmu.Unlock()
	for _, s := range l.spares {
		n += s.size
	}
	if l.next != nil {
		n += l.next.hdr.size
	}
	return n + l.busySize
}

// Close syncs what was appended, marks the end so that the next Replay
// finds a clean one, stops the background preparer and releases the
// directory. A second Close returns ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closed = true
	l.rd.reset(ErrClosed)
	var errs []error
	if l.replayed && l.err == nil {
		s := l.live[len(l.live)-1]
		mark := putFrame(nil, l.nonce, l.pos, kindClose, nil)
		if _, err := l.cur.WriteAt(mark, int64(l.pos-s.base)); err != nil {
			errs = append(errs, err)
		} else {
			l.curDirty = true
		}
		for _, f := range l.dirtyOld {
			errs = append(errs, fdatasync(f))
		}
		if l.curDirty {
			errs = append(errs, fdatasync(l.cur))
		}
	}
	for _, f := range l.dirtyOld {
		f.Close()
	}
	l.dirtyOld = nil
	if l.cur != nil {
		l.cur.Close()
		l.cur = nil
	}
	l.mu.Unlock()

	l.stop.Store(true)
	l.pmu.Lock()
	l.pcond.Broadcast()
	l.pmu.Unlock()
	<-l.done
	l.pmu.Lock()
	if l.next != nil {
		l.next.f.Close()
		l.next = nil
	}
	l.pmu.Unlock()
	errs = append(errs, unlockDir(l.dirf), l.dirf.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("wal: close: %w", err)
	}
	return nil
}
