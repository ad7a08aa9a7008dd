package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	bolt "go.etcd.io/bbolt"

	"github.com/lambdadispatch/dispatcher/internal/wal"
)

// SalvageReport is what Salvage copied and what it could not read.
type SalvageReport struct {
	Events     int64 `json:"events"`     // events written to the new file
	Values     int64 `json:"values"`     // key/values of other buckets copied (dead letters, keys)
	LostEvents int64 `json:"lostEvents"` // records, or their payloads, that could not be read
	LostPages  int   `json:"lostPages"`  // pages (or whole subtrees) skipped as unreadable
	// OlderMeta reports that the tree of the older of bbolt's two meta
	// pages was read, as it yielded more than the newer one's; a Problem
	// names both. That tree is one transaction behind: events acked in
	// the last transaction can come back.
	OlderMeta bool `json:"olderMeta,omitempty"`
	// With SalvageOptions.ScanPages: OrphanPages is the number of leaf
	// pages read that no tree reached; FromOrphanPages, the events written
	// whose record came from one of them (a freed page can hold events
	// already delivered: they will be sent again); OrphanRecordsUnmatched,
	// records found there whose payload was not found, not written.
	OrphanPages            int   `json:"orphanPages,omitempty"`
	FromOrphanPages        int64 `json:"fromOrphanPages,omitempty"`
	OrphanRecordsUnmatched int64 `json:"orphanRecordsUnmatched,omitempty"`
	// Cancelled counts the events not copied because they were cancelled
	// while leased: Open would have removed them rather than return them.
	Cancelled int64     `json:"cancelled,omitempty"`
	Problems  []Problem `json:"problems"`
}

// SalvageOptions are the choices of SalvageWith.
type SalvageOptions struct {
	// ScanPages reads every page inside the file, not only those the tree
	// reaches, and takes from leaf pages no tree reaches the events that
	// prove themselves: an 8-byte key whose value is a version 2 or 3
	// record with a valid checksum, whose payload (same key, on any leaf
	// page) has the record's length and checksum. It recovers the events
	// of a file whose tree is cut off (a truncated file loses the pages
	// near its end, where the bucket roots tend to lie). A sequence number
	// found more than once is taken from the tree if it holds it; among
	// orphan copies, from the one with more attempts, then the later.
	//
	// The risk: bbolt reuses freed pages but does not clear them, so a
	// freed page can still hold events that were delivered and acked
	// long ago. The scan cannot tell them from live ones, and brings them
	// back: they will be sent again. At-least-once delivery allows it,
	// but it is the operator's choice; SalvageReport.FromOrphanPages
	// counts the events that came this way. Dead letters and keys are
	// not recovered from orphan pages: their values carry no checksum
	// that would tell them from stale bytes.
	ScanPages bool
	// Progress, when set, is called with the number of events and values
	// written to dst so far after each write transaction (every thousand
	// or so), so that a tool can show that a salvage of a large file is
	// moving. It runs on the salvaging goroutine: it should return
	// quickly.
	Progress func(copied int64)
}

// countedBuckets keep their number of keys in the bucket's sequence
// (package deadletter's letters, package idempotency's keys): in a copy
// that lost some keys, the sequence is recounted rather than copied.
var countedBuckets = map[string]bool{"deadletters": true, "keys": true, string(bucketEvicted): true}

// storeBuckets are rebuilt from the records rather than copied: the
// indexes and the registry of either format, which dst has in format 2.
// The eviction index is not copied at all: dst is opened without
// FullDropOldest, and the first Open with it builds it.
var storeBuckets = map[string]bool{
	string(bucketMeta): true, string(bucketEvents): true, string(bucketPayloads): true,
	string(bucketReadyV1): true, string(bucketFnReady): true, string(bucketFunctions): true,
	string(bucketLeases): true, string(bucketEvictable): true, string(bucketInLog): true,
}

// maxSeq is the bound the counters hold the next sequence number to: a
// key above it is damage (a record's checksum does not cover its key),
// and copied it would make the new file's counters unreadable.
const maxSeq = 1 << 63

// salvageBatch bounds the events or values of one write transaction of
// Salvage.
const salvageBatch = 1000

// Salvage copies what can be read of the queue file src into a new queue
// file dst, as SQLite's .recover does: it reads src read-only, through its
// own page reader and never through bbolt, so it works on files Open
// refuses. It skips unreadable pages and records and reports them.
//
// bbolt keeps two meta pages, each naming a whole tree: the newer one's
// and, one transaction older, the other's. When the newer tree has lost
// pages, Salvage reads the older one too and copies from whichever yields
// more events (then values), and says so in SalvageReport.OlderMeta.
//
// Events keep their sequence number, function, qualifier, key, payload,
// attempts, priority, enqueue and due time; events leased in src are ready
// in dst, at their old place in line, as Open would return them, but those
// cancelled while leased are not copied, as Open would remove them. The
// eviction ledger is copied, each record checked; the totals of cancelled
// and evicted events carry over. The buckets of other packages (dead
// letters, keys) are copied key by key, raw. The counters of dst, and its
// function registry, are those of what was written, so Open and Stats on
// dst agree with the report; functions paused in src (whose registry
// record reads) stay paused. src may be of either format; dst is of the
// current one. dst must not exist.
//
// Salvage reads only what a tree reaches. SalvageWith with ScanPages also
// takes checked events from the pages no tree reaches, which recovers the
// events of a truncated file whose pages lie below the cut; but a freed page can hold events already delivered
// and acked, and those come back to be sent again.
func Salvage(src, dst string) (SalvageReport, error) {
	return SalvageWith(src, dst, SalvageOptions{})
}

// SalvageWith is Salvage with options: see SalvageOptions.ScanPages.
func SalvageWith(src, dst string, o SalvageOptions) (SalvageReport, error) {
	var rep SalvageReport
	if _, err := os.Lstat(dst); err == nil {
		return rep, fmt.Errorf("store: salvage: %s exists; name a new file", dst)
	} else if !errors.Is(err, os.ErrNotExist) {
		return rep, fmt.Errorf("store: salvage: %w", err)
	}
	f, pf, err := openPages(src)
	if err != nil {
		return rep, err
	}
	defer f.Close()

	// Payloads the file kept in its log are read from there.
	logr, err := wal.OpenReader(logDir(src))
	if err != nil {
		return rep, fmt.Errorf("store: salvage: %w", err)
	}
	defer logr.Close()

	// First pass: the records, small enough to hold, and the counters,
	// for the next sequence number.
	sv := surveyTree(pf, logr)
	if sv.damaged() && pf.other != nil {
		alt := surveyTree(pf.withMeta(*pf.other), logr)
		if alt.events > sv.events || alt.events == sv.events && alt.values > sv.values {
			note := Problem{Where: "meta", What: fmt.Sprintf(
				"the tree of meta page %d (txid %d) yields %d events and %d values, that of the older meta page %d (txid %d) %d and %d: salvaged from the older",
				pf.meta.page, pf.meta.txid, sv.events, sv.values, alt.pf.meta.page, alt.pf.meta.txid, alt.events, alt.values)}
			// Sequence numbers the newer tree handed out are not to be
			// handed out again.
			alt.nextSeq = max(alt.nextSeq, sv.nextSeq)
			sv = alt
			sv.w.problems = append([]Problem{note}, sv.w.problems...)
			rep.OlderMeta = true
		}
	}
	recs := sv.recs
	rep.LostPages = sv.w.lostPages
	rep.Problems = sv.w.problems
	rep.LostEvents = sv.lost

	var sc *orphanScan
	// fromTree marks the orphan records that stand in for a record the
	// tree holds but could not decode: the event is live, and losing it
	// is a loss.
	fromTree := map[uint64]bool{}
	if o.ScanPages {
		sc = scanOrphans(sv.pf, sv.w.seen)
		rep.OrphanPages = sc.pages
		for seq, r := range sc.recs {
			// A sequence number found anywhere was handed out once.
			sv.nextSeq = max(sv.nextSeq, seq)
			if _, ok := recs[seq]; ok {
				delete(sc.recs, seq) // the tree's copy is the live one
				continue
			}
			if sv.failed[seq] {
				fromTree[seq] = true
				rep.LostEvents--
			}
			recs[seq] = r
			sv.clock = max(sv.clock, r.lastAttempt, r.enqueued)
		}
	}

	st, err := Open(dst, Options{})
	if err != nil {
		return rep, err
	}
	// The copied due times are on the source's queue clock: start the new
	// file's there, or a source whose clock ran ahead of this machine's
	// would have its ready events wait for this clock to catch up.
	st.clock.anchor(st.now().UnixNano(), sv.clock)
	c := &copier{st: st, seqs: map[string]uint64{}, counted: map[string]int64{}, paused: sv.paused, cancelled: sv.cancelled, evicted: sv.evicted, progress: o.Progress}

	var lost func(seq uint64, format string, a ...any)
	write := func(seq uint64, r record, p []byte) {
		if err := checkFunction(r.function); err != nil {
			// No registry key can name it: the store refuses such events.
			lost(seq, "%v", err)
			return
		}
		if r.cancelled && r.state == stateLeased {
			rep.Cancelled++
			return
		}
		if _, ok := sc.orphan(seq); ok {
			rep.FromOrphanPages++
		}
		c.event(seq, r, p)
	}
	lost = func(seq uint64, format string, a ...any) {
		if _, ok := sc.orphan(seq); ok && !fromTree[seq] {
			// Not a loss: a record on a freed page may be of an event
			// long delivered, its payload page reused since.
			rep.OrphanRecordsUnmatched++
			return
		}
		rep.Problems = append(rep.Problems, Problem{Where: fmt.Sprintf("event %d", seq), What: fmt.Sprintf(format, a...)})
		rep.LostEvents++
	}
	// Second pass: payloads, matched to their records, and the other
	// buckets, written as they come. Its walker finds the page problems
	// of the first again, so they are not reported twice.
	w := newWalker(sv.pf, false)
	w.bucket = func(path [][]byte, seq uint64) {
		if !storeBuckets[string(path[0])] {
			c.bucket(path, seq)
		}
	}
	w.kv = func(path [][]byte, k, v []byte) {
		switch {
		case len(path) == 0:
			// bbolt keeps only buckets at the root: a value here is an
			// element whose bucket flag was lost, and no one's data.
		case len(path) == 1 && bytes.Equal(path[0], bucketPayloads):
			if len(k) != 8 {
				return
			}
			seq := binary.BigEndian.Uint64(k)
			r, ok := recs[seq]
			if !ok {
				return
			}
			p, err := checkPayload(v, seq, &r)
			if err != nil {
				if sc.hasPayload(seq, r) {
					return // an older copy of it, on an orphan page, checks
				}
				delete(recs, seq)
				lost(seq, "%v", errors.Unwrap(err))
				return
			}
			delete(recs, seq)
			write(seq, r, p)
		case len(path) == 1 && bytes.Equal(path[0], bucketInLog):
			// A payload the file kept in the log beside it: read back
			// from there, checked against its record as any other.
			if len(k) != 8 {
				return
			}
			seq := binary.BigEndian.Uint64(k)
			r, ok := recs[seq]
			if !ok {
				return
			}
			p, err := readLogPayload(logr.ReadAt, v, seq, &r)
			if err != nil {
				return // missing, below, unless the file holds it too
			}
			delete(recs, seq)
			write(seq, r, p)
		case len(path) == 1 && bytes.Equal(path[0], bucketEvicted):
			if len(k) != 8 {
				return
			}
			seq := binary.BigEndian.Uint64(k)
			if _, err := decodeEviction(seq, v); err != nil {
				rep.Problems = append(rep.Problems, Problem{Where: fmt.Sprintf("eviction record %d", seq), What: err.Error() + ": not copied"})
				return
			}
			c.value(path, k, v)
		case !storeBuckets[string(path[0])]:
			c.value(path, k, v)
		}
	}
	w.walk()
	// Records whose payload was on a page that could not be read: found
	// on an orphan page, or none to lose, or lost.
	for seq, r := range recs {
		if p, ok := sc.payload(seq, r); ok {
			write(seq, r, p)
			continue
		}
		if r.payloadLen == 0 && r.payloadCRC == checksum(nil) {
			write(seq, r, nil)
			continue
		}
		lost(seq, "payload missing")
	}
	c.nextSeq = sv.nextSeq
	err = c.flush(true)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	rep.Events, rep.Values = c.events, c.values
	if err != nil {
		// A half-written copy would pass for a salvage: remove it, so
		// that the next attempt can use the name.
		os.Remove(dst)
		return rep, fmt.Errorf("store: salvage into %s: %w", dst, err)
	}
	return rep, nil
}

// survey is Salvage's first pass over the tree of one meta page.
type survey struct {
	pf   *pageFile
	w    *walker
	recs map[uint64]record
	// pays holds the length and checksum of each payload, so that the
	// trees of the two metas can be weighed before either is copied.
	pays    map[uint64][2]uint32
	refs    map[uint64]bool // payloads the file keeps in the log: counted as there
	lost    int64           // records that did not decode
	failed  map[uint64]bool // their sequence numbers
	nextSeq uint64
	clock   int64    // the source's queue time: its due times are on it
	paused  []string // functions paused in the source's registry
	// The source's totals of events cancelled and evicted.
	cancelled, evicted uint64
	// events and values are what the tree would yield: records whose
	// payload is in it and checks, and the other buckets' values.
	events, values int64
}

func surveyTree(pf *pageFile, logr *wal.Reader) *survey {
	s := &survey{pf: pf, recs: map[uint64]record{}, pays: map[uint64][2]uint32{}, refs: map[uint64]bool{}, failed: map[uint64]bool{}}
	w := newWalker(pf, false)
	if pf.metaErr != nil {
		w.fail("meta", "%v", pf.metaErr)
	}
	w.kv = func(path [][]byte, k, v []byte) {
		switch {
		case len(path) == 0:
		case len(path) == 1 && bytes.Equal(path[0], bucketEvents):
			if len(k) != 8 {
				return
			}
			seq := binary.BigEndian.Uint64(k)
			if seq > maxSeq {
				w.fail(fmt.Sprintf("event %d", seq), "sequence number beyond any the store hands out: a damaged key")
				s.lost++
				return
			}
			s.nextSeq = max(s.nextSeq, seq)
			r, err := decodeRecord(v)
			if err != nil {
				w.fail(fmt.Sprintf("event %d", seq), "%v", err)
				s.lost++
				s.failed[seq] = true
				return
			}
			s.recs[seq] = r
			s.clock = max(s.clock, r.lastAttempt, r.enqueued)
		case len(path) == 1 && bytes.Equal(path[0], bucketPayloads):
			if len(k) == 8 {
				s.pays[binary.BigEndian.Uint64(k)] = [2]uint32{uint32(len(v)), checksum(v)}
			}
		case len(path) == 1 && bytes.Equal(path[0], bucketInLog):
			// Counted only if it reads back whole: a tree one commit
			// older may refer to payloads the log no longer holds.
			if len(k) != 8 {
				return
			}
			seq := binary.BigEndian.Uint64(k)
			if r, ok := s.recs[seq]; ok {
				if _, err := readLogPayload(logr.ReadAt, v, seq, &r); err == nil {
					s.refs[seq] = true
				}
			}
		case len(path) == 1 && bytes.Equal(path[0], bucketFunctions):
			if r, err := decodeFnRecord(v); err == nil && r.paused {
				s.paused = append(s.paused, string(k))
			}
		case len(path) == 1 && bytes.Equal(path[0], bucketMeta) && bytes.Equal(k, keyCounters):
			if c, err := decodeCounts(v); err == nil {
				s.nextSeq = max(s.nextSeq, c.nextSeq)
				s.clock = max(s.clock, c.clock)
				s.cancelled, s.evicted = c.cancelled, c.evicted
			}
		case !storeBuckets[string(path[0])]:
			s.values++
		}
	}
	w.walk()
	s.w = w
	for seq, r := range s.recs {
		p, ok := s.pays[seq]
		if ok && p == [2]uint32{r.payloadLen, r.payloadCRC} || !ok && r.payloadLen == 0 && r.payloadCRC == checksum(nil) || !ok && s.refs[seq] {
			s.events++
		}
	}
	return s
}

// damaged reports that the tree lost something the other meta's tree may
// still hold.
func (s *survey) damaged() bool {
	return len(s.w.problems) > 0 || s.events < int64(len(s.recs))
}

// withMeta is f read through meta m, the other of its two: its pages are
// checked against m's high-water mark, clamped as openPages clamps it.
func (f *pageFile) withMeta(m boltMeta) *pageFile {
	g := &pageFile{r: f.r, size: f.size, meta: m, other: &f.meta}
	if err := g.checkMeta(m); err != nil {
		g.metaErr = err
		g.meta.hwm = min(m.hwm, uint64(f.size)/uint64(m.pageSize))
	}
	return g
}

// copier batches Salvage's writes into the new store's transactions.
type copier struct {
	st      *Store
	err     error
	evs     []salvaged
	vals    []rawValue
	seqs    map[string]uint64 // bucket path → sequence in the source
	counted map[string]int64  // bucket path → keys copied
	nextSeq uint64
	paused  []string

	cancelled, evicted uint64
	events, values     int64
	progress           func(copied int64)
}

type salvaged struct {
	seq     uint64
	rec     record
	payload []byte
}

type rawValue struct {
	path [][]byte
	k, v []byte // nil v: the bucket itself
}

func pathKey(path [][]byte) string { return string(bytes.Join(path, []byte{0})) }

func (c *copier) bucket(path [][]byte, seq uint64) {
	c.seqs[pathKey(path)] = seq
	c.vals = append(c.vals, rawValue{path: clonePath(path)})
	c.flushIfFull()
}

func (c *copier) value(path [][]byte, k, v []byte) {
	c.vals = append(c.vals, rawValue{path: clonePath(path), k: bytes.Clone(k), v: bytes.Clone(v)})
	c.counted[pathKey(path)]++
	c.flushIfFull()
}

func (c *copier) event(seq uint64, r record, payload []byte) {
	c.evs = append(c.evs, salvaged{seq: seq, rec: r, payload: payload})
	c.flushIfFull()
}

func clonePath(path [][]byte) [][]byte {
	out := make([][]byte, len(path))
	for i, p := range path {
		out[i] = bytes.Clone(p)
	}
	return out
}

func (c *copier) flushIfFull() {
	if len(c.evs)+len(c.vals) >= salvageBatch {
		c.err = errors.Join(c.err, c.flush(false))
	}
}

// flush writes what is batched in one transaction; the last one also sets
// the buckets' sequences and the next sequence number.
func (c *copier) flush(last bool) error {
	if c.err != nil {
		return c.err
	}
	evs, vals := c.evs, c.vals
	c.evs, c.vals = nil, nil
	err := c.st.do(context.Background(), func(t *txn) error {
		for _, e := range evs {
			if err := t.putSalvaged(e.seq, e.rec, e.payload); err != nil {
				return err
			}
		}
		for _, v := range vals {
			b, err := bucketAt(t.tx, v.path)
			if err != nil || v.v == nil {
				continue
			}
			if err := b.Put(v.k, v.v); err != nil {
				return err
			}
		}
		if !last {
			return nil
		}
		for p, seq := range c.seqs {
			b, err := bucketAt(t.tx, bytes.Split([]byte(p), []byte{0}))
			if err != nil {
				return err
			}
			if countedBuckets[p] {
				seq = uint64(c.counted[p])
			}
			if err := b.SetSequence(seq); err != nil {
				return err
			}
		}
		t.c.nextSeq = max(t.c.nextSeq, c.nextSeq)
		// Records set aside in the source stay set aside, and counted.
		t.c.corrupt = c.counted[string(bucketCorrupt)]
		t.c.cancelled, t.c.evicted = c.cancelled, c.evicted
		for _, name := range c.paused {
			if checkFunction(name) != nil {
				continue
			}
			f, err := t.fnFor(name)
			if err != nil {
				return err
			}
			f.paused = true
		}
		return nil
	})
	if err == nil {
		c.events += int64(len(evs))
		for _, v := range vals {
			if v.v != nil {
				c.values++
			}
		}
		if c.progress != nil {
			c.progress(c.events + c.values)
		}
	}
	return err
}

// bucketAt returns the bucket at path in tx, creating it and its parents.
func bucketAt(tx *bolt.Tx, path [][]byte) (*bolt.Bucket, error) {
	b, err := tx.CreateBucketIfNotExists(path[0])
	for _, name := range path[1:] {
		if err != nil {
			return nil, err
		}
		b, err = b.CreateBucketIfNotExists(name)
	}
	return b, err
}

// putSalvaged writes a salvaged event under its old sequence number, ready
// at its old due time, its attempts and history kept.
func (t *txn) putSalvaged(seq uint64, r record, payload []byte) error {
	r.state, r.leaseUntil, r.cancelled = stateReady, 0, false
	k := seqKey(seq)
	if t.events.Get(k) != nil {
		return nil
	}
	if err := t.payloads.Put(k, payload); err != nil {
		return err
	}
	if err := t.events.Put(k, r.encode(nil)); err != nil {
		return err
	}
	f, err := t.fnFor(r.function)
	if err != nil {
		return err
	}
	if err := t.fnready.Put(fnReadyKey(f.id, r.priority, r.due, seq), []byte{}); err != nil {
		return err
	}
	if err := t.indexWaiting(r.priority, seq); err != nil {
		return err
	}
	f.events++
	f.bytes += r.size()
	t.c.nextSeq = max(t.c.nextSeq, seq)
	t.c.events++
	t.c.bytes += r.size()
	t.readied = true
	return nil
}

// orphanScan is what ScanPages found on the leaf pages no tree reached.
type orphanScan struct {
	f     *pageFile
	pages int
	recs  map[uint64]record      // the best copy of each sequence number
	pays  map[uint64][]payloadAt // every value under an 8-byte key
	buf   []byte
}

// payloadAt locates a value on an orphan page, to be read again only when
// a record claims it: holding every orphan value would hold the file.
type payloadAt struct {
	page        uint64
	elem, inner int // inner: element of the inline bucket in elem, or -1
	n, sum      uint32
}

// scanOrphans reads every page inside the file that the walk did not mark
// in seen, past the high-water mark too: the pages a truncated tree lost
// lie anywhere below the cut.
func scanOrphans(f *pageFile, seen []uint64) *orphanScan {
	s := &orphanScan{f: f, recs: map[uint64]record{}, pays: map[uint64][]payloadAt{}}
	end := uint64(f.size) / uint64(f.meta.pageSize)
	for id := uint64(2); id < end; id++ {
		if id/64 < uint64(len(seen)) && seen[id/64]&(1<<(id%64)) != 0 {
			continue
		}
		p, err := s.page(id)
		if err != nil || native.Uint16(p[8:]) != pageLeaf {
			continue
		}
		s.pages++
		s.leaf(id, p, -1)
	}
	return s
}

// page reads page id as it lies in the file, with its overflow: no meta
// vouches for an orphan page, so only the file's end bounds it.
func (s *orphanScan) page(id uint64) ([]byte, error) {
	ps := uint64(s.f.meta.pageSize)
	end := uint64(s.f.size) / ps
	if id < 2 || id >= end {
		return nil, fmt.Errorf("page %d outside the file", id)
	}
	if s.buf == nil {
		s.buf = make([]byte, ps)
	}
	head := s.buf
	if _, err := s.f.r.ReadAt(head, int64(id*ps)); err != nil {
		return nil, err
	}
	if native.Uint64(head) != id {
		return nil, fmt.Errorf("page %d: header names page %d", id, native.Uint64(head))
	}
	over := uint64(native.Uint32(head[12:]))
	if over == 0 {
		return head, nil
	}
	if over >= end-id {
		return nil, fmt.Errorf("page %d: %d overflow pages run past the end", id, over)
	}
	full := make([]byte, (1+over)*ps)
	copy(full, head)
	if _, err := s.f.r.ReadAt(full[ps:], int64((id+1)*ps)); err != nil {
		return nil, err
	}
	return full, nil
}

// leaf takes the values of leaf page p (the inline page in element inner
// of page id, when inner >= 0) that may be records or payloads.
func (s *orphanScan) leaf(id uint64, p []byte, inner int) {
	n, err := elementCount(p)
	if err != nil {
		return
	}
	for i := range n {
		e, err := elementAt(p, i, true)
		if err != nil {
			continue
		}
		if e.flags == leafBucket && inner < 0 && len(e.value) >= bucketHeaderSize+pageHeaderSize &&
			native.Uint64(e.value) == 0 && native.Uint16(e.value[bucketHeaderSize+8:]) == pageLeaf {
			s.leaf(id, e.value[bucketHeaderSize:], i)
			continue
		}
		if e.flags != 0 || len(e.key) != 8 {
			continue
		}
		seq := binary.BigEndian.Uint64(e.key)
		if seq > maxSeq {
			continue
		}
		at := payloadAt{page: id, elem: i, inner: -1, n: uint32(len(e.value)), sum: checksum(e.value)}
		if inner >= 0 {
			at.elem, at.inner = inner, i
		}
		s.pays[seq] = append(s.pays[seq], at)
		// Version 1 records carry no checksum: on a page no tree vouches
		// for, stale or torn bytes could pass for one.
		if len(e.value) == 0 || e.value[0] != recordV2 && e.value[0] != recordVersion {
			continue
		}
		r, err := decodeRecord(e.value)
		if err != nil {
			continue
		}
		if old, ok := s.recs[seq]; !ok || newer(r, old) {
			s.recs[seq] = r
		}
	}
}

// newer reports whether record a is a later state of an event than b: an
// attempt is only ever added.
func newer(a, b record) bool {
	if a.attempts != b.attempts {
		return a.attempts > b.attempts
	}
	return a.lastAttempt > b.lastAttempt
}

// orphan returns the record of seq taken from an orphan page. A nil scan
// has none.
func (s *orphanScan) orphan(seq uint64) (record, bool) {
	if s == nil {
		return record{}, false
	}
	r, ok := s.recs[seq]
	return r, ok
}

// hasPayload reports whether an orphan page holds a value that would do as
// the payload of r.
func (s *orphanScan) hasPayload(seq uint64, r record) bool {
	if s == nil {
		return false
	}
	for _, at := range s.pays[seq] {
		if at.n == r.payloadLen && at.sum == r.payloadCRC {
			return true
		}
	}
	return false
}

// payload reads again, and checks again, the value an orphan page holds
// for the payload of r.
func (s *orphanScan) payload(seq uint64, r record) ([]byte, bool) {
	if s == nil {
		return nil, false
	}
	for _, at := range s.pays[seq] {
		if at.n != r.payloadLen || at.sum != r.payloadCRC {
			continue
		}
		p, err := s.page(at.page)
		if err != nil {
			continue
		}
		e, err := s.element(p, at.elem)
		if err == nil && at.inner >= 0 {
			if len(e.value) < bucketHeaderSize+pageHeaderSize {
				continue
			}
			e, err = s.element(e.value[bucketHeaderSize:], at.inner)
		}
		if err != nil {
			continue
		}
		if v, err := checkPayload(e.value, seq, &r); err == nil {
			return v, true
		}
	}
	return nil, false
}

func (s *orphanScan) element(p []byte, i int) (element, error) {
	n, err := elementCount(p)
	if err != nil {
		return element{}, err
	}
	if i >= n {
		return element{}, fmt.Errorf("element %d of %d", i, n)
	}
	return elementAt(p, i, true)
}
