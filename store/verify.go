package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// This file reads the bbolt on-disk format with our own bounds-checked
// code, through ReadAt. bbolt trusts its file: it maps it into memory and
// follows page ids without checks, so a truncated file faults (SIGBUS) and
// a flipped header byte panics, some of it in a goroutine of its own that
// no caller can recover, since Open with NoFreelistSync walks every page to
// rebuild the freelist. Walking the file first, the same way but checking
// every step, turns all of that into a *CorruptError. Check and Salvage
// read damaged files through the same walker, never through bbolt.
//
// The layout (go.etcd.io/bbolt/internal/common), in the machine's byte
// order as bbolt writes it:
//
//	page header, 16 bytes: id u64, flags u16, count u16, overflow u32
//	meta, after the header: magic u32, version u32, page size u32,
//	  flags u32, root bucket (root page u64, sequence u64), freelist u64,
//	  high-water page id u64, txid u64, FNV-64a of the 56 bytes before it
//	branch element, 16 bytes: pos u32, key size u32, child page u64
//	leaf element, 16 bytes: flags u32, pos u32, key size u32, value size u32
//
// An element's pos counts from the element itself. A leaf value flagged as
// a bucket starts with the bucket header (root page u64, sequence u64);
// with root 0 the bucket is inline and a leaf page follows in the value.
const (
	pageHeaderSize   = 16
	elementSize      = 16
	metaSize         = 64
	metaSummed       = 56
	bucketHeaderSize = 16

	boltMagic   = 0xED0CDAED
	boltVersion = 2

	pageBranch   = 0x01
	pageLeaf     = 0x02
	pageMeta     = 0x04
	pageFreelist = 0x10

	leafBucket = 0x01
	noFreelist = ^uint64(0)

	// maxPageSize is bbolt's own limit when it looks for the second meta
	// page (1 KiB << 14).
	maxPageSize = 1 << 24
)

var native = binary.NativeEndian

// boltMeta is the part of a meta page the walk needs.
type boltMeta struct {
	page     int // 0 or 1
	pageSize int
	root     uint64
	rootSeq  uint64
	freelist uint64
	hwm      uint64 // first page id never allocated
	txid     uint64
}

// parseMeta reads the meta in b, a page read at its start, and checks it
// as bbolt does: magic, version, checksum.
func parseMeta(b []byte) (boltMeta, error) {
	if len(b) < pageHeaderSize+metaSize {
		return boltMeta{}, errors.New("shorter than a meta page")
	}
	m := b[pageHeaderSize : pageHeaderSize+metaSize]
	switch {
	case native.Uint32(m[0:]) != boltMagic:
		return boltMeta{}, errors.New("bad magic number")
	case native.Uint32(m[4:]) != boltVersion:
		return boltMeta{}, fmt.Errorf("bbolt format version %d, want %d", native.Uint32(m[4:]), boltVersion)
	}
	h := fnv.New64a()
	h.Write(m[:metaSummed])
	if h.Sum64() != native.Uint64(m[metaSummed:]) {
		return boltMeta{}, errors.New("checksum mismatch")
	}
	return boltMeta{
		pageSize: int(native.Uint32(m[8:])),
		root:     native.Uint64(m[16:]),
		rootSeq:  native.Uint64(m[24:]),
		freelist: native.Uint64(m[32:]),
		hwm:      native.Uint64(m[40:]),
		txid:     native.Uint64(m[48:]),
	}, nil
}

// pageFile is a bbolt file read through ReadAt, so that no damage can make
// a read fault: a read past the end is an error, never a SIGBUS.
type pageFile struct {
	r    io.ReaderAt
	size int64
	meta boltMeta
	// other is the older meta when it is valid too.
	other *boltMeta
	// metaErr is what checkMeta found wrong with meta, for Check and
	// Salvage, which read what they can regardless.
	metaErr error
}

// readMetas finds the page size and the meta bbolt would use: the valid
// one with the higher transaction id.
func readMetas(r io.ReaderAt, size int64) (*pageFile, error) {
	f := &pageFile{r: r, size: size}
	first := make([]byte, pageHeaderSize+metaSize)
	m0, err0 := f.metaAt(first, 0)
	pageSize := m0.pageSize
	if err0 != nil {
		// As bbolt: page 0 is unreadable, so look for page 1 at each
		// page size it may have been written with.
		for ps := int64(1024); ps <= maxPageSize && ps < size-1024; ps <<= 1 {
			if m, err := f.metaAt(first, ps); err == nil {
				pageSize = m.pageSize
				break
			}
		}
		if pageSize == 0 {
			return nil, fmt.Errorf("meta page 0: %v, and no valid meta page 1 found", err0)
		}
	}
	if pageSize < 1024 || pageSize > maxPageSize || pageSize&(pageSize-1) != 0 {
		return nil, fmt.Errorf("meta: page size %d is not a power of two between 1 KiB and 16 MiB", pageSize)
	}
	if size < 2*int64(pageSize) {
		return nil, fmt.Errorf("file of %d bytes is shorter than its two meta pages of %d bytes", size, pageSize)
	}
	m1, err1 := f.metaAt(first, int64(pageSize))
	m0.page, m1.page = 0, 1
	if err0 == nil && m0.pageSize != pageSize {
		err0 = fmt.Errorf("page size %d, but %d in the other meta", m0.pageSize, pageSize)
	}
	if err1 == nil && m1.pageSize != pageSize {
		err1 = fmt.Errorf("page size %d, but %d in the other meta", m1.pageSize, pageSize)
	}
	switch {
	case err0 != nil && err1 != nil:
		return nil, fmt.Errorf("both meta pages invalid: page 0: %v; page 1: %v", err0, err1)
	case err0 != nil:
		f.meta = m1
	case err1 != nil:
		f.meta = m0
	case m1.txid > m0.txid:
		f.meta, f.other = m1, &m0
	default:
		f.meta, f.other = m0, &m1
	}
	return f, f.checkMeta(f.meta)
}

func (f *pageFile) metaAt(buf []byte, off int64) (boltMeta, error) {
	if off+int64(len(buf)) > f.size {
		return boltMeta{}, errors.New("beyond the end of the file")
	}
	if _, err := f.r.ReadAt(buf, off); err != nil {
		return boltMeta{}, err
	}
	return parseMeta(buf)
}

// checkMeta checks the page ids of m against the file: every page below
// the high-water mark must be in it, or bbolt would map past its end.
func (f *pageFile) checkMeta(m boltMeta) error {
	ps := uint64(m.pageSize)
	switch {
	case m.hwm < 3 || m.hwm > uint64(f.size)/ps:
		return fmt.Errorf("meta page %d: high-water mark %d pages, but the file holds %d", m.page, m.hwm, uint64(f.size)/ps)
	case m.root < 2 || m.root >= m.hwm:
		return fmt.Errorf("meta page %d: root page %d outside 2..%d", m.page, m.root, m.hwm-1)
	case m.freelist != noFreelist && (m.freelist < 2 || m.freelist >= m.hwm):
		return fmt.Errorf("meta page %d: freelist page %d outside 2..%d", m.page, m.freelist, m.hwm-1)
	}
	return nil
}

// page reads page id with its overflow pages and checks its header: inside
// the file, below the high-water mark, and naming itself.
//
// The page is read into buf when it has no overflow and buf is big enough.
func (f *pageFile) page(id uint64, buf []byte) ([]byte, error) {
	ps := uint64(f.meta.pageSize)
	if id < 2 || id >= f.meta.hwm {
		return nil, fmt.Errorf("page id %d outside 2..%d", id, f.meta.hwm-1)
	}
	head := buf
	if uint64(cap(head)) < ps {
		head = make([]byte, ps)
	}
	head = head[:ps]
	if _, err := f.r.ReadAt(head, int64(id*ps)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	if got := native.Uint64(head); got != id {
		return nil, fmt.Errorf("page %d: header names page %d", id, got)
	}
	over := uint64(native.Uint32(head[12:]))
	if id+over >= f.meta.hwm {
		return nil, fmt.Errorf("page %d: %d overflow pages run past the high-water mark %d", id, over, f.meta.hwm)
	}
	if over == 0 {
		return head, nil
	}
	full := make([]byte, (1+over)*ps)
	copy(full, head)
	if _, err := f.r.ReadAt(full[ps:], int64((id+1)*ps)); err != nil {
		return nil, fmt.Errorf("page %d: overflow: %w", id, err)
	}
	return full, nil
}

// element is one checked element of a branch or leaf page.
type element struct {
	flags uint32 // leaf only
	key   []byte
	value []byte // leaf only
	child uint64 // branch only
}

// elementCount checks that the count of p, a page with its overflow or an
// inline page, fits in it.
func elementCount(p []byte) (int, error) {
	count := int(native.Uint16(p[10:]))
	if pageHeaderSize+count*elementSize > len(p) {
		return 0, fmt.Errorf("count %d does not fit in %d bytes", count, len(p))
	}
	return count, nil
}

// elementAt reads element i of p, below its checked count, and checks that
// its key and value lie within p.
func elementAt(p []byte, i int, leaf bool) (element, error) {
	var el element
	at := pageHeaderSize + i*elementSize
	e := p[at : at+elementSize]
	var pos, klen, vlen uint64
	if leaf {
		el.flags = native.Uint32(e)
		pos, klen, vlen = uint64(native.Uint32(e[4:])), uint64(native.Uint32(e[8:])), uint64(native.Uint32(e[12:]))
	} else {
		pos, klen = uint64(native.Uint32(e)), uint64(native.Uint32(e[4:]))
		el.child = native.Uint64(e[8:])
	}
	start := uint64(at) + pos
	if start+klen+vlen > uint64(len(p)) {
		return el, fmt.Errorf("element %d: %d+%d bytes at offset %d run past the page's %d", i, klen, vlen, start, len(p))
	}
	el.key = p[start : start+klen : start+klen]
	if leaf {
		el.value = p[start+klen : start+klen+vlen : start+klen+vlen]
	}
	return el, nil
}

// Problem is one thing found wrong in a queue file by Check or Salvage.
type Problem struct {
	Where string `json:"where"` // "meta", "page 12", "bucket events", "event 42", ...
	What  string `json:"what"`
}

func (p Problem) String() string { return p.Where + ": " + p.What }

// walker visits every page of a bbolt tree, checking each. Strict, it stops
// at the first problem (Open's pre-check); otherwise it skips what it
// cannot read and goes on (Check, Salvage).
type walker struct {
	f        *pageFile
	strict   bool
	seen     []uint64 // bit set of page ids reached
	pages    int      // pages read, overflow included
	problems []Problem
	// lostPages counts pages (or subtrees) whose contents were skipped;
	// lostValues, elements of a readable page that could not be read.
	lostPages, lostValues int
	free                  [][]byte // page buffers for reuse

	// Optional visitors: bucket is called for every bucket reached, before
	// its contents; kv for every key/value that is not a bucket. path is
	// the names of the buckets leading to it, outermost first.
	bucket func(path [][]byte, seq uint64)
	kv     func(path [][]byte, k, v []byte)
	// page is called for every branch or leaf page read, with its count:
	// tests find pages to damage with it.
	page func(id uint64, path [][]byte, flags uint16, count int)
}

func newWalker(f *pageFile, strict bool) *walker {
	return &walker{f: f, strict: strict, seen: make([]uint64, (f.meta.hwm+63)/64)}
}

func (w *walker) fail(where, format string, a ...any) {
	w.problems = append(w.problems, Problem{Where: where, What: fmt.Sprintf(format, a...)})
}

func (w *walker) stopped() bool { return w.strict && len(w.problems) > 0 }

// walk visits the tree of the file's meta, and its freelist page if bbolt
// wrote one.
func (w *walker) walk() {
	m := w.f.meta
	if m.freelist != noFreelist {
		w.freelist(m.freelist)
	}
	w.walkBucket(nil, m.root, m.rootSeq, nil)
}

// freelist checks the freelist page that older files (and files written
// without NoFreelistSync) carry: bbolt reads it at Open.
func (w *walker) freelist(id uint64) {
	where := fmt.Sprintf("freelist page %d", id)
	p, err := w.f.page(id, nil)
	if err != nil {
		w.fail(where, "%v", err)
		return
	}
	if !w.mark(loc{id: id}, id, p) {
		return
	}
	if fl := native.Uint16(p[8:]); fl != pageFreelist {
		w.fail(where, "flags %#x, want freelist", fl)
		return
	}
	start, n := uint64(pageHeaderSize), uint64(native.Uint16(p[10:]))
	if n == 0xFFFF {
		// The count overflowed into the first element.
		if len(p) < pageHeaderSize+8 {
			w.fail(where, "truncated")
			return
		}
		n, start = native.Uint64(p[pageHeaderSize:]), start+8
	}
	if n > uint64(len(p)) || start+n*8 > uint64(len(p)) {
		w.fail(where, "count %d does not fit in the page", n)
		return
	}
	for i := range n {
		if fid := native.Uint64(p[start+i*8:]); fid < 2 || fid >= w.f.meta.hwm {
			w.fail(where, "free page id %d outside 2..%d", fid, w.f.meta.hwm-1)
			return
		}
	}
}

// mark records that the page and its overflow were reached, and says
// false if any of them was reached before: a page in two places, or a
// cycle.
func (w *walker) mark(l loc, id uint64, p []byte) bool {
	n := uint64(len(p) / w.f.meta.pageSize)
	for i := id; i < id+n; i++ {
		if w.seen[i/64]&(1<<(i%64)) != 0 {
			w.failAt(l, "page %d reached twice", i)
			return false
		}
	}
	for i := id; i < id+n; i++ {
		w.seen[i/64] |= 1 << (i % 64)
	}
	w.pages += int(n)
	return true
}

func bucketName(path [][]byte) string {
	if len(path) == 0 {
		return "root bucket"
	}
	parts := make([]string, len(path))
	for i, p := range path {
		parts[i] = fmt.Sprintf("%q", p)
	}
	return "bucket " + strings.Join(parts, "/")
}

// loc names a page for a problem, built only when there is one: the walk
// of a clean file must not pay for formatting.
type loc struct {
	path [][]byte
	id   uint64 // 0: the inline page of the bucket
}

func (l loc) String() string {
	if l.id == 0 {
		return "inline page of " + bucketName(l.path)
	}
	return fmt.Sprintf("page %d (%s)", l.id, bucketName(l.path))
}

func (w *walker) failAt(l loc, format string, a ...any) {
	w.fail(l.String(), format, a...)
}

// buffer returns a page-sized buffer, reused once the page read into it
// is done with: a walk reads every page of the file.
func (w *walker) buffer() []byte {
	if n := len(w.free); n > 0 {
		b := w.free[n-1]
		w.free = w.free[:n-1]
		return b
	}
	return make([]byte, w.f.meta.pageSize)
}

// walkBucket visits a bucket: its page tree, or its inline page.
func (w *walker) walkBucket(path [][]byte, root, seq uint64, inline []byte) {
	if w.bucket != nil && len(path) > 0 {
		w.bucket(path, seq)
	}
	if root != 0 {
		w.walkPage(path, root, nil, nil)
		return
	}
	l := loc{path: path}
	if len(inline) < pageHeaderSize {
		w.failAt(l, "%d bytes, shorter than a page header", len(inline))
		w.lostPages++
		return
	}
	if fl := native.Uint16(inline[8:]); fl != pageLeaf {
		w.failAt(l, "flags %#x, want leaf", fl)
		w.lostPages++
		return
	}
	w.leaf(l, inline, nil, nil)
}

// walkPage visits the subtree at page id, whose keys must lie in [lo, hi)
// (nil: unbounded), and returns the greatest key in it, in a copy.
func (w *walker) walkPage(path [][]byte, id uint64, lo, hi []byte) []byte {
	l := loc{path: path, id: id}
	buf := w.buffer()
	defer func() { w.free = append(w.free, buf) }()
	p, err := w.f.page(id, buf)
	if err != nil {
		w.failAt(l, "%v", err)
		w.lostPages++
		return nil
	}
	if !w.mark(l, id, p) {
		w.lostPages++
		return nil
	}
	flags := native.Uint16(p[8:])
	if flags != pageBranch && flags != pageLeaf {
		w.failAt(l, "flags %#x, want branch or leaf", flags)
		w.lostPages++
		return nil
	}
	if w.page != nil {
		w.page(id, path, flags, int(native.Uint16(p[10:])))
	}
	if flags == pageLeaf {
		return bytes.Clone(w.leaf(l, p, lo, hi))
	}
	n, err := elementCount(p)
	if err == nil && n == 0 {
		// bbolt's cursor reads a first element of every branch page.
		err = errors.New("branch page without elements")
	}
	if err != nil {
		w.failAt(l, "%v", err)
		w.lostPages++
		return nil
	}
	prev := lo
	for i := range n {
		e, err := elementAt(p, i, false)
		if err != nil {
			w.failAt(l, "%v", err)
			w.lostPages++ // at least one: the child it names
			if w.stopped() {
				return nil
			}
			continue
		}
		w.order(l, i, e.key, prev, hi)
		next := hi
		if i+1 < n {
			if ne, err := elementAt(p, i+1, false); err == nil {
				next = ne.key
			}
		}
		if w.stopped() {
			return nil
		}
		if top := w.walkPage(path, e.child, e.key, next); top != nil {
			prev = top
		} else {
			prev = e.key
		}
		if w.stopped() {
			return nil
		}
	}
	return bytes.Clone(prev)
}

// leaf visits the elements of a leaf page p: values, and the buckets
// nested in it. It returns the greatest key, aliasing p.
func (w *walker) leaf(l loc, p []byte, lo, hi []byte) []byte {
	n, err := elementCount(p)
	if err != nil {
		w.failAt(l, "%v", err)
		w.lostPages++
		return nil
	}
	prev := lo
	for i := range n {
		e, err := elementAt(p, i, true)
		if err != nil {
			w.failAt(l, "%v", err)
			w.lostValues++
			if w.stopped() {
				return nil
			}
			continue
		}
		w.order(l, i, e.key, prev, hi)
		prev = e.key
		if w.stopped() {
			return nil
		}
		if e.flags&^leafBucket != 0 {
			w.failAt(l, "element %d: unknown flags %#x", i, e.flags)
			if w.stopped() {
				return nil
			}
		}
		if e.flags&leafBucket == 0 {
			if w.kv != nil {
				w.kv(l.path, e.key, e.value)
			}
			continue
		}
		if len(e.value) < bucketHeaderSize {
			w.failAt(l, "element %d: bucket header of %d bytes", i, len(e.value))
			w.lostValues++
			if w.stopped() {
				return nil
			}
			continue
		}
		sub := append(l.path[:len(l.path):len(l.path)], e.key)
		root, seq := native.Uint64(e.value), native.Uint64(e.value[8:])
		w.walkBucket(sub, root, seq, e.value[bucketHeaderSize:])
		if w.stopped() {
			return nil
		}
	}
	return prev
}

// order checks key i of a page as bbolt's Check does: above the one before
// it (at least the parent's bound for the first), below the parent's next.
func (w *walker) order(l loc, i int, key, prev, hi []byte) {
	switch c := bytes.Compare(prev, key); {
	case i == 0 && prev != nil && c > 0, i > 0 && c >= 0:
		w.failAt(l, "element %d: key %x out of order after %x", i, key, prev)
	case hi != nil && bytes.Compare(key, hi) >= 0:
		w.failAt(l, "element %d: key %x not below its parent's next key %x", i, key, hi)
	}
}

// verifyFile is Open's pre-check: it walks every page of the file at path
// as bbolt is about to, and returns a *CorruptError for anything bbolt
// would fault or panic on. A file that does not exist yet, or is empty, is
// bbolt's to create. A file another process holds is waited for, up to
// wait, as bbolt would: reading it under a live writer could see a torn
// state and call a sound file damaged, and skipping the check would hand a
// damaged file to bbolt once the holder is gone. Past wait it returns
// ErrLocked.
//
// It runs once per Open and reads the whole tree: BenchmarkVerifyFile
// measured 34 ms for a file of 100,000 events with 100-byte payloads
// (41 MB, 10,000 pages, in the page cache), 1.2 GB/s.
func verifyFile(path string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		again, err := verifyOnce(path, deadline, wait)
		if !again {
			return err
		}
	}
}

// verifyOnce checks the file now at path. again reports that the file was
// replaced while it waited for the lock (a compaction renamed its copy
// over path), so the new one is still to be checked.
func verifyOnce(path string, deadline time.Time, wait time.Duration) (again bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return false, nil // bbolt creates it, or reports why it cannot
	}
	defer f.Close()
	if openedHook != nil {
		openedHook(path)
	}
	// bbolt polls its flock the same way, every 50ms.
	for !lockShared(f) {
		if time.Now().After(deadline) {
			return false, fmt.Errorf("%w: %s (lock not acquired within %v)", ErrLocked, path, wait)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 || !fi.Mode().IsRegular() {
		return false, nil
	}
	if now, err := os.Stat(path); err == nil && !os.SameFile(fi, now) {
		return true, nil
	}
	pf, err := readMetas(f, fi.Size())
	if err != nil {
		return false, &CorruptError{What: "file " + path, Err: err}
	}
	w := newWalker(pf, true)
	w.walk()
	if len(w.problems) > 0 {
		return false, &CorruptError{What: "file " + path, Err: errors.New(w.problems[0].String())}
	}
	return false, nil
}

// boltOpen is bolt.Open for a file verifyFile passed. bbolt panics on what
// it finds wrong, and some checks (its file size) come back as plain
// errors: both become a *CorruptError, so that a file damaged between the
// check and the open still never takes the process down.
func boltOpen(path string, o *bolt.Options) (db *bolt.DB, err error) {
	err = guard(path, func() error {
		db, err = bolt.Open(path, 0o600, o)
		return err
	})
	if err != nil && strings.Contains(err.Error(), "file size too small") {
		return nil, &CorruptError{What: "file " + path, Err: err}
	}
	return db, err
}

// guard runs fn, a call into bbolt on our goroutine, turning a panic into
// a *CorruptError.
func guard(path string, fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &CorruptError{What: "file " + path, Err: fmt.Errorf("bbolt: %v", r)}
		}
	}()
	return fn()
}
