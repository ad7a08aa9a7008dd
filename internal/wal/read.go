package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
)

// readView is what ReadAt needs of a Log, under a lock of its own so that
// a read never waits for the writer, whose lock an fdatasync holds: the
// segments the log holds, the end of what was written, and read-only
// handles of the segments read so far, opened on demand and kept until
// the segment is recycled or the log closes. The writer updates it under
// its own lock (mu, then this one).
type readView struct {
	mu    sync.RWMutex
	state error     // ErrNotReplayed until Replay has succeeded, ErrClosed after Close
	live  []segment // as Log.live, less the segments being recycled
	end   Position  // the end of the last successful write
	files map[Position]*os.File
}

// set makes the view that of a log just replayed.
func (v *readView) set(live []segment, end Position) {
	v.mu.Lock()
	v.state, v.live, v.end = nil, append([]segment(nil), live...), end
	v.mu.Unlock()
}

// reset closes every handle and makes the log unreadable for the reason
// state.
func (v *readView) reset(state error) {
	v.mu.Lock()
	v.state, v.live, v.end = state, nil, 0
	for base, f := range v.files {
		f.Close()
		delete(v.files, base)
	}
	v.mu.Unlock()
}

func (v *readView) setEnd(end Position) {
	v.mu.Lock()
	v.end = end
	v.mu.Unlock()
}

func (v *readView) addSegment(s segment) {
	v.mu.Lock()
	v.live = append(v.live, s)
	v.mu.Unlock()
}

// dropBelow removes the segments that end at or below upTo, closing
// their handles: the writer is about to recycle them.
func (v *readView) dropBelow(upTo Position) {
	v.mu.Lock()
	n := 0
	for n < len(v.live) && v.live[n].end() <= upTo {
		if f := v.files[v.live[n].base]; f != nil {
			f.Close()
			delete(v.files, v.live[n].base)
		}
		n++
	}
	v.live = append(v.live[:0:0], v.live[n:]...)
	v.mu.Unlock()
}

// find returns the segment holding the n bytes at p. v.mu is held.
func (v *readView) find(p Position, n int) (segment, error) {
	if v.state != nil {
		return segment{}, v.state
	}
	s, err := locate(v.live, p, n)
	if err != nil {
		return segment{}, err
	}
	if int64(n) > int64(v.end)-int64(p) {
		return segment{}, fmt.Errorf("%w: %d bytes at %#x run past the end of the log, %#x", ErrGap, n, uint64(p), uint64(v.end))
	}
	return s, nil
}

// ReadAt reads len(b) bytes of the stream at position p into b: the data
// of a record appended at position q lies at q+FrameHeaderSize (see
// AppendAt). The range must lie within one segment the log holds, any
// from the oldest not recycled to the one being written (those below the
// position Replay started from included), and end at or before End;
// otherwise it returns ErrGap. It checks no checksum: the caller verifies
// what it reads. A segment whose header is damaged gives a *CorruptError.
//
// It may be called from any goroutine, concurrently with Append, Sync and
// Recycle, and never waits for them to write or sync. It returns
// ErrNotReplayed until Replay has succeeded, and ErrClosed after Close.
func (l *Log) ReadAt(b []byte, p Position) error {
	v := &l.rd
	v.mu.RLock()
	s, err := v.find(p, len(b))
	if f := v.files[s.base]; err == nil && f != nil {
		err = readSegment(f, s, b, p)
		v.mu.RUnlock()
		return err
	}
	v.mu.RUnlock()
	if err != nil {
		return err
	}
	// First read of the segment: open it, under the write lock.
	v.mu.Lock()
	defer v.mu.Unlock()
	if s, err = v.find(p, len(b)); err != nil {
		return err
	}
	f := v.files[s.base]
	if f == nil {
		f, _, err = openSegment(l.dir, s.base)
		if err != nil {
			return err
		}
		if v.files == nil {
			v.files = map[Position]*os.File{}
		}
		v.files[s.base] = f
	}
	return readSegment(f, s, b, p)
}

// locate returns the segment of live (sorted by base) holding the n bytes
// at p, or ErrGap.
func locate(live []segment, p Position, n int) (segment, error) {
	i := sort.Search(len(live), func(i int) bool { return live[i].base > p }) - 1
	if i < 0 || p >= live[i].end() {
		return segment{}, fmt.Errorf("%w: no segment holds %#x", ErrGap, uint64(p))
	}
	if s := live[i]; n < 0 || int64(n) > int64(s.end()-p) {
		return segment{}, fmt.Errorf("%w: %d bytes at %#x run past the end of segment %s", ErrGap, n, uint64(p), segName(s.base))
	}
	return live[i], nil
}

// openSegment opens the segment file of base in dir for reading and
// checks its header. A missing file's error wraps os.ErrNotExist; a
// header that is not valid, or names another base, is a *CorruptError.
func openSegment(dir string, base Position) (*os.File, header, error) {
	name := segName(base)
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return nil, header{}, fmt.Errorf("wal: %w", err)
	}
	readRandom(f)
	h, err := readHeader(f, name, base)
	if err != nil {
		f.Close()
		return nil, header{}, err
	}
	return f, h, nil
}

// readHeader reads and checks the header of the segment file f, named
// name, whose name says base.
func readHeader(f *os.File, name string, base Position) (header, error) {
	info, err := f.Stat()
	if err != nil {
		return header{}, fmt.Errorf("wal: %w", err)
	}
	b := make([]byte, min(HeaderSize, info.Size()))
	if err := readFull(f, b, 0); err != nil {
		return header{}, fmt.Errorf("wal: read %s: %w", name, err)
	}
	h, why := decodeHeader(b, base, info.Size())
	if why != "" {
		return header{}, &CorruptError{Segment: name, Reason: why}
	}
	return h, nil
}

// readSegment reads b at p from f, the file of segment s, which holds it.
func readSegment(f *os.File, s segment, b []byte, p Position) error {
	if err := readFull(f, b, int64(p-s.base)); err != nil {
		return fmt.Errorf("wal: read %s at offset %d: %w", segName(s.base), int64(p-s.base), err)
	}
	return nil
}

// Reader reads the stream of a log in a directory without opening the
// log: for tools, and for a process that reads a store another process
// writes. It takes no lock, replays nothing and writes nothing. It is
// safe for concurrent use.
type Reader struct {
	dir string

	mu     sync.RWMutex
	closed bool
	live   []segment // as last listed
	files  map[Position]readerFile
}

// readerFile is a segment file a Reader opened, with what it was when
// opened, to tell whether its name still leads to it.
type readerFile struct {
	f  *os.File
	id os.FileInfo
}

// OpenReader opens the log in dir for reading only: no lock, no replay,
// nothing written, the directory not created. A missing directory gives a
// Reader that holds nothing until the directory appears (ReadAt: ErrGap).
func OpenReader(dir string) (*Reader, error) {
	r := &Reader{dir: dir, files: map[Position]readerFile{}}
	if err := r.list(); err != nil {
		return nil, err
	}
	return r, nil
}

// list lists the directory's segments again, and closes the handles of
// files no longer under their segment's name. r.mu is held for writing.
func (r *Reader) list() error {
	entries, err := os.ReadDir(r.dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("wal: %w", err)
	}
	var live []segment
	for _, e := range entries {
		base, isSpare, ok := parseName(e.Name())
		if !ok || isSpare || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, os.ErrNotExist) {
			continue // recycled since the listing
		} else if err != nil {
			return fmt.Errorf("wal: %w", err)
		}
		live = append(live, segment{base: base, size: info.Size()})
	}
	slices.SortFunc(live, func(a, b segment) int { return cmpPos(a.base, b.base) })
	r.live = live
	for base, h := range r.files {
		_, listed := slices.BinarySearchFunc(live, base, func(s segment, p Position) int { return cmpPos(s.base, p) })
		if listed {
			if info, err := os.Stat(filepath.Join(r.dir, segName(base))); err == nil && os.SameFile(info, h.id) {
				continue
			}
		}
		h.f.Close()
		delete(r.files, base)
	}
	return nil
}

// ReadAt reads len(b) bytes of the stream at position p into b, as
// Log.ReadAt does. The range must lie within one segment in the directory;
// when it is not in the segments the Reader knows, it lists the directory
// again once (the writer adds segments), then returns ErrGap. A segment's
// header must be valid and name the base the file name says, else it
// returns a *CorruptError. A segment recycled and reused by the writer
// meanwhile is read as it is now: the caller verifies what it reads. After
// Close, ReadAt returns ErrClosed.
func (r *Reader) ReadAt(b []byte, p Position) error {
	r.mu.RLock()
	if r.closed {
		r.mu.RUnlock()
		return ErrClosed
	}
	s, err := locate(r.live, p, len(b))
	if h, ok := r.files[s.base]; err == nil && ok {
		err = readSegment(h.f, s, b, p)
		r.mu.RUnlock()
		return err
	}
	r.mu.RUnlock()

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	for listed := false; ; listed = true {
		s, err := locate(r.live, p, len(b))
		if err == nil {
			h, ok := r.files[s.base]
			if !ok {
				h, err = r.open(s)
			}
			if err == nil {
				return readSegment(h.f, s, b, p)
			}
			if !errors.Is(err, errChanged) {
				return err
			}
			err = fmt.Errorf("%w: %s: %w", ErrGap, segName(s.base), err)
		}
		if listed {
			return err
		}
		if err := r.list(); err != nil {
			return err
		}
	}
}

// errChanged is a segment the directory no longer holds as listed.
var errChanged = errors.New("recycled since the directory was listed")

// open opens the listed segment s. r.mu is held for writing.
func (r *Reader) open(s segment) (readerFile, error) {
	name := segName(s.base)
	path := filepath.Join(r.dir, name)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return readerFile{}, errChanged
	} else if err != nil {
		return readerFile{}, fmt.Errorf("wal: %w", err)
	}
	readRandom(f)
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return readerFile{}, fmt.Errorf("wal: %w", err)
	}
	h, err := readHeader(f, name, s.base)
	if err == nil && h.size == s.size {
		rf := readerFile{f: f, id: info}
		r.files[s.base] = rf
		return rf, nil
	}
	f.Close()
	// The writer may have recycled the file between the listing and the
	// open, or between the open and the read of its header, and given it
	// another base: that is no damage.
	if now, serr := os.Stat(path); serr != nil || !os.SameFile(now, info) || err == nil {
		return readerFile{}, errChanged
	}
	return readerFile{}, err
}

// Close closes the segment files the Reader opened. A second Close
// returns ErrClosed.
func (r *Reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	r.closed = true
	var errs []error
	for base, h := range r.files {
		errs = append(errs, h.f.Close())
		delete(r.files, base)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("wal: close reader: %w", err)
	}
	return nil
}
