package store

import (
	"cmp"
	"encoding/binary"
	"math"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// leaser is one lease's walk of the ready index: it finds the functions
// with events due in rotation order, one seek each, and takes their keys
// in passes (see AckAndLease). It only reads: deleting under a live cursor
// makes bbolt skip keys, so the keys taken are copied and leased after.
type leaser struct {
	t     *txn
	cur   *bolt.Cursor
	limit uint64 // the queue's time, ordered: keys due after it wait

	// The rotation: ids from start to the end of the index, then from the
	// beginning up to start.
	start   uint32
	pos     uint64 // the next id to look for
	wrapped bool
	done    bool

	fns     []*fnTouch // the functions taken from, in rotation order
	keys    []taken
	backing []byte // holds the copies of the keys taken
	// odd are keys to lease that count for no function: keys of another
	// length (set aside) and keys under an id no record has (moved).
	odd   [][]byte
	steps int // cursor moves: the cost, for tests

	// Room for the usual few functions, and for the keys a seek looks
	// for, so that a lease of one event allocates little more than it
	// did with one index.
	fnsBuf  [4]*fnTouch
	onBuf   [4]active
	scratch [fnReadyKeyLen]byte
}

// taken is a key copied for leasing, whose function it is, and its place
// in that function's line.
type taken struct {
	k        []byte
	fn, rank int32
}

// active is a function taking part in a lease.
type active struct {
	fn   int32  // index in leaser.fns
	room int    // what its quota still allows in this lease
	got  int    // taken so far in this lease
	next []byte // its next key due; aliases the index, valid while it is only read
}

func (t *txn) newLeaser(n int) *leaser {
	l := &leaser{t: t, cur: t.fnready.Cursor(), limit: orderedTime(t.now)}
	l.start = t.s.leaseFrom + 1 // after the one the last lease started with
	if t.s.leaseFrom == math.MaxUint32 {
		l.start = 0
	}
	l.pos = uint64(l.start)
	l.fns = l.fnsBuf[:0]
	// One backing array for the copied keys, and the result sized once:
	// leasing runs for every event, and growing these by doubling was a
	// tenth of the store's garbage.
	l.keys = make([]taken, 0, min(n, 256))
	l.backing = make([]byte, 0, fnReadyKeyLen*cap(l.keys))
	return l
}

// lease takes up to n due events, in turns between the functions that are
// not paused, each capped by quota (nil: by n alone).
func (t *txn) lease(n int, d time.Duration, quota Quota) ([]Event, error) {
	l := t.newLeaser(n)
	l.collect(n, quota)
	return l.apply(d)
}

// collect finds the keys to lease.
func (l *leaser) collect(n int, quota Quota) {
	on := l.onBuf[:0]
	left := n
	for left > 0 {
		// A pass gives each function at least one event, so it needs no
		// more functions than events left to take: with many functions,
		// finding them all would cost a seek each for nothing.
		for len(on) < left {
			id, k, ok := l.nextFunction()
			if !ok {
				break
			}
			f := l.t.fnByID(id)
			if f == nil {
				l.stray(id, k, left)
				continue
			}
			if f.paused {
				continue
			}
			room := n
			if quota != nil {
				room = min(quota(f.name), n)
			}
			if room <= 0 {
				continue
			}
			if len(l.fns) == 0 {
				l.t.s.leaseFrom = id
			}
			l.fns = append(l.fns, f)
			on = append(on, active{fn: int32(len(l.fns) - 1), room: room, next: k})
		}
		if len(on) == 0 {
			break
		}
		share := max(1, left/len(on))
		kept := on[:0]
		for _, a := range on {
			if left > 0 {
				got := l.take(&a, min(share, a.room-a.got, left))
				left -= got
			}
			if a.next != nil && a.got < a.room {
				kept = append(kept, a)
			}
		}
		on = kept
	}
}

// take copies up to want keys of a's function from a.next on, and leaves
// a.next at the key after them that is due, or nil.
func (l *leaser) take(a *active, want int) int {
	id := l.fns[a.fn].id
	k := l.seek(a.next)
	got := 0
	for k != nil && got < want {
		l.keep(k, a.fn, int32(a.got+got))
		got++
		k = l.dueFrom(l.step(), id)
	}
	a.got += got
	a.next = k
	return got
}

// stray takes, to be moved, the keys due under an id no record has: damage,
// as a record decoded wrong at Open would leave. Up to max at a time.
func (l *leaser) stray(id uint32, k []byte, max int) {
	l.seek(k)
	for i := 0; k != nil && i < max; i++ {
		l.odd = append(l.odd, clone(k))
		k = l.dueFrom(l.step(), id)
	}
}

func (l *leaser) keep(k []byte, fn, rank int32) {
	if len(l.backing)+len(k) > cap(l.backing) {
		l.backing = make([]byte, 0, fnReadyKeyLen*cap(l.keys))
	}
	l.backing = append(l.backing, k...)
	c := l.backing[len(l.backing)-len(k) : len(l.backing) : len(l.backing)]
	l.keys = append(l.keys, taken{k: c, fn: fn, rank: rank})
}

func clone(k []byte) []byte { return append([]byte(nil), k...) }

func (l *leaser) seek(k []byte) []byte {
	l.steps++
	ck, _ := l.cur.Seek(k)
	return ck
}

// seekFunction seeks the first key of function id, or past it. bbolt keeps
// no seek key, so one buffer serves every seek.
func (l *leaser) seekFunction(id uint32) []byte {
	binary.BigEndian.PutUint32(l.scratch[:4], id)
	return l.seek(l.scratch[:4])
}

// seekPriority seeks the first key of function id at priority p, or past.
func (l *leaser) seekPriority(id uint32, p byte) []byte {
	binary.BigEndian.PutUint32(l.scratch[:4], id)
	l.scratch[4] = p
	return l.seek(l.scratch[:5])
}

func (l *leaser) step() []byte {
	l.steps++
	k, _ := l.cur.Next()
	return k
}

// nextFunction returns the next function in the rotation with an event
// due, and that event's key.
func (l *leaser) nextFunction() (uint32, []byte, bool) {
	for !l.done {
		if l.pos > math.MaxUint32 {
			l.wrap()
			continue
		}
		k := l.seekFunction(uint32(l.pos))
		for k != nil && len(k) < 4 {
			l.odd = append(l.odd, clone(k)) // no function's: set aside
			k = l.step()
		}
		if k == nil {
			l.wrap()
			continue
		}
		id := binary.BigEndian.Uint32(k)
		if l.wrapped && id >= l.start {
			l.done = true
			break
		}
		l.pos = uint64(id) + 1
		if k = l.dueFrom(k, id); k != nil {
			return id, k, true
		}
	}
	return 0, nil, false
}

func (l *leaser) wrap() {
	if l.wrapped || l.start == 0 {
		l.done = true
		return
	}
	l.wrapped, l.pos = true, 0
}

// dueFrom returns the first key from k on that is function id's and due,
// or nil. Once a key of a priority is not due, none after it in that
// priority is: it jumps to the next priority rather than walking them.
// Keys of another length are taken on the way, to be set aside.
func (l *leaser) dueFrom(k []byte, id uint32) []byte {
	for k != nil && ofFunction(k, id) {
		switch {
		case len(k) != fnReadyKeyLen:
			l.odd = append(l.odd, clone(k))
			k = l.step()
		case fnKeyDue(k) <= l.limit:
			return k
		case k[4] == 0xff:
			return nil
		default:
			k = l.seekPriority(id, k[4]+1)
		}
	}
	return nil
}

// apply leases what collect found, in turns between the functions (see
// AckAndLease).
func (l *leaser) apply(d time.Duration) ([]Event, error) {
	out := make([]Event, 0, len(l.keys))
	lease := func(i int) error {
		ev, ok, err := l.t.leaseOne(l.keys[i].k, l.fns[l.keys[i].fn], d)
		if ok {
			out = append(out, ev)
		}
		return err
	}
	if len(l.fns) <= 1 {
		for i := range l.keys {
			if err := lease(i); err != nil {
				return nil, err
			}
		}
	} else {
		order := make([]int32, len(l.keys))
		for i := range order {
			order[i] = int32(i)
		}
		slices.SortFunc(order, func(a, b int32) int {
			x, y := &l.keys[a], &l.keys[b]
			return cmp.Or(cmp.Compare(x.rank, y.rank), cmp.Compare(x.fn, y.fn))
		})
		for _, i := range order {
			if err := lease(int(i)); err != nil {
				return nil, err
			}
		}
	}
	for _, k := range l.odd {
		if l.t.cReady.get(k) == nil {
			continue // met twice
		}
		if _, _, err := l.t.leaseOne(k, nil, d); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// The index walks of the read calls.

// firstFunction returns the id of the first function with keys in the
// index.
func firstFunction(cur *bolt.Cursor) (uint32, bool) {
	k, _ := cur.First()
	return functionAt(cur, k)
}

// nextFunction returns the id of the function with keys after id's.
func nextFunction(cur *bolt.Cursor, id uint32) (uint32, bool) {
	if id == math.MaxUint32 {
		return 0, false
	}
	k, _ := cur.Seek(fnPrefix(id + 1))
	return functionAt(cur, k)
}

func functionAt(cur *bolt.Cursor, k []byte) (uint32, bool) {
	for k != nil && len(k) < 4 {
		k, _ = cur.Next()
	}
	if k == nil {
		return 0, false
	}
	return binary.BigEndian.Uint32(k), true
}

// countAfter counts function id's keys due after the ordered time after,
// a seek or two per priority in use and a step per key counted.
func countAfter(cur *bolt.Cursor, id uint32, after uint64) int64 {
	if after == math.MaxUint64 {
		return 0
	}
	var n int64
	for p := 0; p <= 0xff; p++ {
		k, _ := cur.Seek(fnDueKey(id, byte(p), after+1))
		if len(k) < 5 || !ofFunction(k, id) {
			return n
		}
		if k[4] != byte(p) {
			// No key of p is due after: the seek landed on the first key
			// of a later priority, due whenever.
			p = int(k[4]) - 1
			continue
		}
		for ; len(k) >= 5 && ofFunction(k, id) && k[4] == byte(p); k, _ = cur.Next() {
			if len(k) == fnReadyKeyLen {
				n++
			}
		}
	}
	return n
}

// firstDue returns the earliest due time (ordered) of function id's keys:
// the first key of each priority in use.
func firstDue(cur *bolt.Cursor, id uint32) (uint64, bool) {
	var due uint64
	var ok bool
	k, _ := cur.Seek(fnPrefix(id))
	for k != nil && ofFunction(k, id) {
		if len(k) != fnReadyKeyLen {
			k, _ = cur.Next()
			continue
		}
		if d := fnKeyDue(k); !ok || d < due {
			due, ok = d, true
		}
		if k[4] == 0xff {
			break
		}
		k, _ = cur.Seek(fnPrioPrefix(id, k[4]+1))
	}
	return due, ok
}
