package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// prepare is the background preparer: whenever the writer has entered a
// segment, it makes the next one ready (a spare reused, or a new file
// filled with zeros), so that a rollover finds it synced and named and
// costs the writer nothing. It runs until Close.
func (l *Log) prepare() {
	defer close(l.done)
	l.pmu.Lock()
	defer l.pmu.Unlock()
	for {
		for !l.stop.Load() && !(l.wantSet && l.next == nil && !l.busy && l.prepErr == nil) {
			l.pcond.Wait()
		}
		if l.stop.Load() {
			return
		}
		base := l.want
		sp, ok := l.takeSpare()
		l.busy, l.busySize, l.busySpare = true, l.o.SegmentSize, sp.name
		l.pmu.Unlock()
		r, err := l.make(base, l.o.SegmentSize, sp, ok, l.stop.Load)
		l.pmu.Lock()
		l.busy, l.busySize, l.busySpare = false, 0, ""
		switch {
		case errors.Is(err, errStopped):
		case err != nil:
			l.prepErr = err
			l.log.Warn("wal: preparing the next segment failed; the writer will try again when it needs it", "segment", segName(base), "err", err)
		default:
			l.next = r
		}
		l.pcond.Broadcast()
	}
}

// takeSpare removes a spare of the configured size from the list, if
// there is one. pmu is held.
func (l *Log) takeSpare() (spare, bool) {
	i := slices.IndexFunc(l.spares, func(s spare) bool { return s.size == l.o.SegmentSize })
	if i < 0 {
		return spare{}, false
	}
	s := l.spares[i]
	l.spares = slices.Delete(l.spares, i, i+1)
	return s, true
}

// make readies the segment at base, from the spare if ok, else as a new
// file of size bytes.
func (l *Log) make(base Position, size int64, sp spare, ok bool, stop func() bool) (*ready, error) {
	var (
		f   *os.File
		err error
	)
	if ok {
		f, err = reuseSpare(l.dir, sp.name, base, sp.size)
	} else {
		f, err = createSegment(l.dir, base, size, stop)
	}
	if err != nil {
		return nil, err
	}
	// Read the header back rather than trust the one written: it is what
	// the frames' nonce must match.
	b := make([]byte, HeaderSize)
	if err := readFull(f, b, 0); err != nil {
		f.Close()
		return nil, err
	}
	h, why := decodeHeader(b, base, size)
	if why != "" {
		f.Close()
		return nil, fmt.Errorf("segment just written reads back wrong: %s", why)
	}
	written := writtenPrefix(f, size)
	l.log.Debug("wal: segment ready", "segment", segName(base), "reused", ok, "written", written)
	return &ready{f: f, hdr: h, written: written}, nil
}

// setWant asks the preparer for the segment at base.
func (l *Log) setWant(base Position) {
	l.pmu.Lock()
	l.want, l.wantSet, l.prepErr = base, true, nil
	l.pcond.Broadcast()
	l.pmu.Unlock()
}

// obtain returns the segment at base, ready, of at least need bytes: the
// one the preparer made if it fits, else one made here (a record larger
// than a segment, or a preparer that failed). The preparer asks for no
// other until setWant.
func (l *Log) obtain(base Position, need int64) (*ready, error) {
	l.pmu.Lock()
	for l.busy {
		l.pcond.Wait()
	}
	l.wantSet = false
	r := l.next
	l.next = nil
	if r != nil && r.hdr.base == base && r.hdr.size >= need {
		l.pmu.Unlock()
		return r, nil
	}
	size := l.o.SegmentSize
	if need > size {
		size = (need + 4095) &^ 4095
	}
	var sp spare
	ok := false
	if size == l.o.SegmentSize {
		sp, ok = l.takeSpare()
	}
	l.busy, l.busySize, l.busySpare = true, size, sp.name
	l.pmu.Unlock()

	var errs []error
	if r != nil {
		// Prepared, but too small for the record: it becomes a spare, out
		// of the way of the segment made in its place.
		errs = append(errs, r.f.Close(), l.retire(segName(r.hdr.base), r.hdr.base, r.hdr.size))
	}
	made, err := l.make(base, size, sp, ok, nil)
	errs = append(errs, err)

	l.pmu.Lock()
	l.busy, l.busySize, l.busySpare = false, 0, ""
	l.pcond.Broadcast()
	l.pmu.Unlock()
	if err := errors.Join(errs...); err != nil {
		if made != nil {
			made.f.Close()
		}
		return nil, err
	}
	return made, nil
}

// retire makes the file `name`, a segment of size bytes at base that the
// log no longer reads, a spare, or removes it when enough spares are held
// or it is not of the configured size. The directory is not synced: the
// caller does it once for all it retires. A retirement lost in a crash
// only leaves the file under its old name, which is retired again later
// (a segment below the replay position is only ever recycled; one past
// the end is made a spare by Replay).
func (l *Log) retire(name string, base Position, size int64) error {
	l.pmu.Lock()
	held := len(l.spares)
	if l.next != nil {
		held++
	}
	if l.busy {
		held++
	}
	to := spareName(base)
	// Spare names are made from bases, and a base is written again after
	// a torn tail: the name may be held, even by the spare in preparation.
	taken := to == l.busySpare
	for _, s := range l.spares {
		taken = taken || s.name == to
	}
	keep := size == l.o.SegmentSize && held < maxSpares && !taken
	l.pmu.Unlock()

	path := filepath.Join(l.dir, name)
	if !keep {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		l.log.Debug("wal: segment removed", "segment", name)
		return nil
	}
	if err := os.Rename(path, filepath.Join(l.dir, to)); errors.Is(err, os.ErrNotExist) {
		return nil // gone already: nothing to keep
	} else if err != nil {
		return err
	}
	l.pmu.Lock()
	l.spares = append(l.spares, spare{name: to, size: size})
	l.pcond.Broadcast()
	l.pmu.Unlock()
	l.log.Debug("wal: segment kept as a spare", "segment", name, "spare", to)
	return nil
}

// Recycle retires every segment whose positions all lie below upTo: it
// keeps it as a spare, to be reused as a future segment, or removes it
// when enough spares are held. It never touches the segment being
// written, nor one written since the last Sync, so upTo may be any
// position the caller no longer needs replayed: typically the position a
// checkpoint recorded, once that record is durable (a later Replay from
// an older position would find its segments gone: ErrGap). The removals
// are durable when it returns.
func (l *Log) Recycle(upTo Position) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return ErrClosed
	case !l.replayed:
		return ErrNotReplayed
	}
	// The segments written since the last Sync are the last 1+len(dirtyOld).
	n := 0
	for n < len(l.live)-1-len(l.dirtyOld) && l.live[n].end() <= upTo {
		n++
	}
	if n == 0 {
		return nil
	}
	// Readers first: a segment renamed a spare may be reused, and read
	// through an old handle it would hold another segment's bytes.
	l.rd.dropBelow(l.live[n-1].end())
	var err error
	done := 0
	for _, s := range l.live[:n] {
		if err = l.retire(segName(s.base), s.base, s.size); err != nil {
			break
		}
		done++
	}
	l.live = slices.Delete(l.live, 0, done)
	if serr := syncDir(l.dir); err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("wal: recycle: %w", err)
	}
	return nil
}
