package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	bolt "go.etcd.io/bbolt"
)

// SalvageReport is what Salvage copied and what it could not read.
type SalvageReport struct {
	Events     int64 `json:"events"`      // events written to the new file
	Values     int64 `json:"values"`      // key/values of other buckets copied (dead letters, keys)
	LostEvents int64 `json:"lost_events"` // records, or their payloads, that could not be read
	LostPages  int   `json:"lost_pages"`  // pages (or whole subtrees) skipped as unreadable
	// OlderMeta reports that the tree of the older of bbolt's two meta
	// pages was read, as it yielded more than the newer one's; a Problem
	// names both. That tree is one transaction behind: events acked in
	// the last transaction can come back.
	OlderMeta bool      `json:"older_meta,omitempty"`
	Problems  []Problem `json:"problems"`
}

// countedBuckets keep their number of keys in the bucket's sequence
// (package deadletter's letters, package idempotency's keys): in a copy
// that lost some keys, the sequence is recounted rather than copied.
var countedBuckets = map[string]bool{"deadletters": true, "keys": true}

// storeBuckets are rebuilt from the records rather than copied.
var storeBuckets = map[string]bool{
	string(bucketMeta): true, string(bucketEvents): true, string(bucketPayloads): true,
	string(bucketReady): true, string(bucketLeases): true,
}

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
// attempts, enqueue and due time; events leased in src are ready in dst,
// at their old place in line, as Open would return them. The buckets of
// other packages (dead letters, keys) are copied key by key, raw. The
// counters of dst are those of what was written, so Open and Stats on dst
// agree with the report. dst must not exist.
func Salvage(src, dst string) (SalvageReport, error) {
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

	// First pass: the records, small enough to hold, and the counters,
	// for the next sequence number.
	sv := surveyTree(pf)
	if sv.damaged() && pf.other != nil {
		alt := surveyTree(pf.withMeta(*pf.other))
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

	st, err := Open(dst, Options{})
	if err != nil {
		return rep, err
	}
	// The copied due times are on the source's queue clock: start the new
	// file's there, or a source whose clock ran ahead of this machine's
	// would have its ready events wait for this clock to catch up.
	st.clock.anchor(st.now().UnixNano(), sv.clock)
	c := &copier{st: st, seqs: map[string]uint64{}, counted: map[string]int64{}}

	lost := func(seq uint64, format string, a ...any) {
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
			delete(recs, seq)
			p, err := checkPayload(v, seq, &r)
			if err != nil {
				lost(seq, "%v", errors.Unwrap(err))
				return
			}
			c.event(seq, r, p)
		case !storeBuckets[string(path[0])]:
			c.value(path, k, v)
		}
	}
	w.walk()
	// Records whose payload was on a page that could not be read, unless
	// they had none to lose.
	for seq, r := range recs {
		if r.payloadLen == 0 && r.payloadCRC == checksum(nil) {
			c.event(seq, r, nil)
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
	lost    int64 // records that did not decode
	nextSeq uint64
	clock   int64 // the source's queue time: its due times are on it
	// events and values are what the tree would yield: records whose
	// payload is in it and checks, and the other buckets' values.
	events, values int64
}

func surveyTree(pf *pageFile) *survey {
	s := &survey{pf: pf, recs: map[uint64]record{}, pays: map[uint64][2]uint32{}}
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
			s.nextSeq = max(s.nextSeq, seq)
			r, err := decodeRecord(v)
			if err != nil {
				w.fail(fmt.Sprintf("event %d", seq), "%v", err)
				s.lost++
				return
			}
			s.recs[seq] = r
			s.clock = max(s.clock, r.lastAttempt, r.enqueued)
		case len(path) == 1 && bytes.Equal(path[0], bucketPayloads):
			if len(k) == 8 {
				s.pays[binary.BigEndian.Uint64(k)] = [2]uint32{uint32(len(v)), checksum(v)}
			}
		case len(path) == 1 && bytes.Equal(path[0], bucketMeta) && bytes.Equal(k, keyCounters):
			if c, err := decodeCounts(v); err == nil {
				s.nextSeq = max(s.nextSeq, c.nextSeq)
				s.clock = max(s.clock, c.clock)
			}
		case !storeBuckets[string(path[0])]:
			s.values++
		}
	}
	w.walk()
	s.w = w
	for seq, r := range s.recs {
		p, ok := s.pays[seq]
		if ok && p == [2]uint32{r.payloadLen, r.payloadCRC} || !ok && r.payloadLen == 0 && r.payloadCRC == checksum(nil) {
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

	events, values int64
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
		return nil
	})
	if err == nil {
		c.events += int64(len(evs))
		for _, v := range vals {
			if v.v != nil {
				c.values++
			}
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
	r.state, r.leaseUntil = stateReady, 0
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
	if err := t.ready.Put(readyKey(r.due, seq), []byte{}); err != nil {
		return err
	}
	t.c.nextSeq = max(t.c.nextSeq, seq)
	t.c.events++
	t.c.bytes += r.size()
	t.readied = true
	return nil
}
