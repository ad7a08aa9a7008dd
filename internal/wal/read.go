package wal

import (
	"fmt"
	"os"
	"path/filepath"
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
