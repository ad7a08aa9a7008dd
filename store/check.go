package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/lambdadispatch/dispatcher/internal/wal"
)

// Report is what Check found in a queue file.
type Report struct {
	Path     string `json:"path"`
	PageSize int    `json:"pageSize"`
	Pages    int    `json:"pages"`   // pages reached from the root, overflow included
	Events   int64  `json:"events"`  // records that decode, with a payload that matches
	Leased   int64  `json:"leased"`  // of Events
	Corrupt  int64  `json:"corrupt"` // records set aside earlier, in the corrupt bucket
	Format   int    `json:"format"`  // the layout the file's marker names
	// Functions is the number of records in the function registry
	// (format 2).
	Functions int `json:"functions"`
	// Cancelled counts the leased events marked cancelled (of Leased).
	Cancelled int64 `json:"cancelled"`
	// Evictions is the number of records in the eviction ledger.
	Evictions int       `json:"evictions"`
	Problems  []Problem `json:"problems"` // empty for a sound file
}

// OK reports whether Check found nothing wrong.
func (r Report) OK() bool { return len(r.Problems) == 0 }

// Check reads the whole queue file at path, without bbolt and without
// writing to it, and reports what is wrong: the page tree (as Open's
// pre-check, but going on past damage), every record's and payload's
// checksum, the ready and lease indexes against the records (priorities
// included, and the cancelled mark only on leased events), the eviction
// index when there is one (exactly the events waiting, once marked
// complete), the eviction ledger's records, the function registry (ids
// unique, counts) and the counters Open trusts against what the file
// holds. It works on files that Open refuses, and on format 1 files,
// whole or with their migration cut short.
//
// The returned error is for a file that cannot be read at all (missing,
// or held by a running dispatcher: ErrLocked); damage is in the Report.
func Check(path string) (Report, error) {
	rep := Report{Path: path}
	f, pf, err := openPages(path)
	if err != nil {
		var ce *CorruptError
		if errors.As(err, &ce) {
			rep.Problems = append(rep.Problems, Problem{Where: "meta", What: ce.Err.Error()})
			return rep, nil
		}
		return rep, err
	}
	defer f.Close()
	rep.PageSize = pf.meta.pageSize
	w := newWalker(pf, false)
	if pf.metaErr != nil {
		w.fail("meta", "%v", pf.metaErr)
	}

	type head struct {
		state byte
		prio  int8
		fn    int32 // index in names: a backlog has few function names
		due   int64
		size  int64
		plen  uint32
		pcrc  uint32
	}
	// indexed is an event's key in the ready index.
	type indexed struct {
		id   uint32
		prio byte
		due  int64
	}
	var (
		heads    = map[uint64]head{}
		payloads = map[uint64][2]uint32{} // length, checksum
		inLog    = map[uint64]uint64{}    // seq → payload position in the log
		readyV1  = map[uint64]int64{}     // seq → due, from format 1's index
		fnready  = map[uint64][]indexed{} // seq → its keys in the index
		leases   = map[uint64]bool{}
		registry = map[string]fnRecord{}
		counters []byte
		format   []byte
		maxSeq   uint64
		isQueue  bool
		hasV1    bool // a format 1 ready index is there
		// Records that do not decode: still held, until a lease sets
		// them aside.
		unreadable = map[uint64]bool{}
		names      []string
		nameIdx    = map[string]int32{}

		// The eviction index, seq → the priorities of its keys, whether
		// it is there and marked complete; and the ledger's bucket
		// sequence (its count of records).
		evictable     = map[uint64][]int8{}
		hasEvictable  bool
		evictComplete bool
		ledgerSeq     uint64
		hasLedger     bool
	)
	intern := func(name string) int32 {
		i, ok := nameIdx[name]
		if !ok {
			i = int32(len(names))
			names = append(names, name)
			nameIdx[name] = i
		}
		return i
	}
	w.bucket = func(path [][]byte, seq uint64) {
		switch {
		case len(path) != 1:
		case bytes.Equal(path[0], bucketReadyV1):
			hasV1 = true
		case bytes.Equal(path[0], bucketEvictable):
			hasEvictable = true
		case bytes.Equal(path[0], bucketEvicted):
			hasLedger, ledgerSeq = true, seq
		}
	}
	w.kv = func(path [][]byte, k, v []byte) {
		if len(path) != 1 {
			return
		}
		switch string(path[0]) {
		case string(bucketMeta):
			isQueue = true
			switch {
			case bytes.Equal(k, keyCounters):
				counters = bytes.Clone(v)
			case bytes.Equal(k, keyFormat):
				format = bytes.Clone(v)
			case bytes.Equal(k, keyEvictable):
				evictComplete = true
			}
		case string(bucketEvents):
			if len(k) != 8 {
				w.fail("bucket events", "key of %d bytes", len(k))
				return
			}
			seq := binary.BigEndian.Uint64(k)
			maxSeq = max(maxSeq, seq)
			r, err := decodeRecord(v)
			if err != nil {
				w.fail(fmt.Sprintf("event %d", seq), "%v", err)
				unreadable[seq] = true
				return
			}
			heads[seq] = head{state: r.state, prio: r.priority, fn: intern(r.function), due: r.due, size: r.size(), plen: r.payloadLen, pcrc: r.payloadCRC}
			switch {
			case r.cancelled && r.state != stateLeased:
				w.fail(fmt.Sprintf("event %d", seq), "marked cancelled, but not leased")
			case r.cancelled:
				rep.Cancelled++
			}
		case string(bucketPayloads):
			if len(k) == 8 {
				payloads[binary.BigEndian.Uint64(k)] = [2]uint32{uint32(len(v)), checksum(v)}
			} else {
				w.fail("bucket payloads", "key of %d bytes", len(k))
			}
		case string(bucketInLog):
			switch {
			case len(k) != 8:
				w.fail("bucket inlog", "key of %d bytes", len(k))
			case len(v) != 8:
				w.fail(fmt.Sprintf("event %d", binary.BigEndian.Uint64(k)), "log reference of %d bytes", len(v))
			default:
				inLog[binary.BigEndian.Uint64(k)] = binary.BigEndian.Uint64(v)
			}
		case string(bucketReadyV1):
			if len(k) == 16 {
				readyV1[binary.BigEndian.Uint64(k[8:])] = int64(binary.BigEndian.Uint64(k) ^ (1 << 63))
			} else {
				w.fail("bucket ready", "key of %d bytes", len(k))
			}
		case string(bucketFnReady):
			if len(k) == fnReadyKeyLen {
				seq := fnKeySeq(k)
				fnready[seq] = append(fnready[seq], indexed{id: binary.BigEndian.Uint32(k), prio: k[4], due: int64(fnKeyDue(k) ^ (1 << 63))})
			} else {
				w.fail("bucket fnready", "key of %d bytes", len(k))
			}
		case string(bucketFunctions):
			r, err := decodeFnRecord(v)
			if err != nil {
				w.fail(fmt.Sprintf("function %q", k), "%v", err)
				return
			}
			registry[string(k)] = r
		case string(bucketLeases):
			if len(k) == 8 && len(v) == 8 {
				leases[binary.BigEndian.Uint64(k)] = true
			} else {
				w.fail("bucket leases", "entry of %d/%d bytes", len(k), len(v))
			}
		case string(bucketCorrupt):
			rep.Corrupt++
		case string(bucketEvictable):
			p, ok := evictKeyPriority(k)
			if !ok {
				w.fail("eviction index", "key %x: not a priority and a sequence number", k)
				return
			}
			seq := binary.BigEndian.Uint64(k[1:])
			evictable[seq] = append(evictable[seq], p)
		case string(bucketEvicted):
			rep.Evictions++
			if len(k) != 8 {
				w.fail("eviction ledger", "key of %d bytes", len(k))
				return
			}
			seq := binary.BigEndian.Uint64(k)
			if _, err := decodeEviction(seq, v); err != nil {
				w.fail(fmt.Sprintf("eviction record %d", seq), "%v", err)
			}
		}
	}
	w.walk()
	rep.Pages = w.pages
	if !isQueue && w.lostPages == 0 {
		w.fail("file", "a bbolt file, but not a dispatcher queue (no meta bucket)")
	}

	switch {
	case len(format) == 1:
		rep.Format = int(format[0])
	case isQueue:
		w.fail("format marker", "%d bytes, want 1", len(format))
	}
	// Format 1 (or 2 with a migration's leftovers): a ready event may be
	// in either index, as a migration cut short leaves it.
	legacy := rep.Format < fnLayoutVersion
	if hasV1 && !legacy {
		w.fail("bucket ready", "format 1's ready index, left in a format %d file", rep.Format)
	}
	rep.Functions = len(registry)
	ids := map[uint32]string{}
	for name, r := range registry {
		if other, ok := ids[r.id]; ok {
			a, b := min(name, other), max(name, other)
			w.fail(fmt.Sprintf("function %q", b), "id %d is %q's too", r.id, a)
			continue
		}
		ids[r.id] = name
	}
	// inIndex says whether ready event seq of function fn is where it
	// should be.
	inIndex := func(seq uint64, h head) string {
		keys := fnready[seq]
		r, registered := registry[names[h.fn]]
		if due, ok := readyV1[seq]; ok && legacy {
			if len(keys) > 0 {
				return "in both ready indexes"
			}
			if due != h.due {
				return "ready, but not in the ready index at its due time"
			}
			return "" // not moved yet: its function need not be registered
		}
		switch {
		case len(keys) == 0:
			return "ready, but not in the ready index"
		case len(keys) > 1:
			return fmt.Sprintf("in the ready index %d times", len(keys))
		case !registered:
			return fmt.Sprintf("ready, but its function %q has no registry record", names[h.fn])
		case keys[0].id != r.id:
			return fmt.Sprintf("indexed under function id %d, but %q has id %d", keys[0].id, names[h.fn], r.id)
		case keys[0].due != h.due:
			return "ready, but not in the ready index at its due time"
		case keys[0].prio != readyPriority(h.prio):
			return fmt.Sprintf("priority %d, but in the ready index under priority byte %#x", h.prio, keys[0].prio)
		}
		return ""
	}

	// Payloads in the log are read back and checked as those in the file.
	badPayload := map[uint64]bool{} // reported already
	if len(inLog) > 0 {
		checkInLog(path, inLog, payloads, badPayload, func(seq uint64) (uint32, bool) {
			h, ok := heads[seq]
			return h.plen, ok
		}, w.fail)
	}

	var bytesHeld int64
	held := map[string]*tally{}
	for seq, h := range heads {
		bytesHeld += h.size
		where := fmt.Sprintf("event %d", seq)
		p, ok := payloads[seq]
		switch {
		case badPayload[seq]:
			continue
		case !ok && h.plen != 0:
			w.fail(where, "payload missing")
			continue
		case ok && p[0] != h.plen:
			w.fail(where, "payload is %d bytes, record says %d", p[0], h.plen)
			continue
		case ok && p[1] != h.pcrc, !ok && h.pcrc != checksum(nil):
			w.fail(where, "payload checksum mismatch")
			continue
		}
		rep.Events++
		tallyOf(held, []byte(names[h.fn])).add(h.state, h.size)
		if h.state == stateLeased {
			rep.Leased++
			if !leases[seq] {
				w.fail(where, "leased, but not in the lease index")
			}
		} else if what := inIndex(seq, h); what != "" {
			w.fail(where, "%s", what)
		}
	}
	for seq := range payloads {
		if _, ok := heads[seq]; !ok && !unreadable[seq] {
			w.fail(fmt.Sprintf("payload %d", seq), "no record")
		}
	}
	for seq := range readyV1 {
		if h, ok := heads[seq]; ok && h.state == stateLeased {
			w.fail(fmt.Sprintf("event %d", seq), "leased, and in the ready index too")
		}
	}
	for seq := range fnready {
		h, ok := heads[seq]
		switch {
		case !ok && !unreadable[seq]:
			w.fail("ready index", "key of event %d, which the file does not hold", seq)
		case ok && h.state == stateLeased:
			w.fail(fmt.Sprintf("event %d", seq), "leased, and in the ready index too")
		}
	}
	checkEvictable := func() {
		for seq, ps := range evictable {
			h, ok := heads[seq]
			where := fmt.Sprintf("event %d", seq)
			switch {
			case !ok && !unreadable[seq]:
				w.fail("eviction index", "key of event %d, which the file does not hold", seq)
			case !ok:
			case h.state == stateLeased:
				w.fail(where, "leased, and in the eviction index too")
			case len(ps) > 1:
				w.fail(where, "in the eviction index %d times", len(ps))
			case ps[0] != h.prio:
				w.fail(where, "priority %d, but in the eviction index under priority %d", h.prio, ps[0])
			}
		}
		if !evictComplete {
			return // a build cut short: the next Open builds it again
		}
		for seq, h := range heads {
			if h.state == stateReady && evictable[seq] == nil {
				w.fail(fmt.Sprintf("event %d", seq), "waiting, but not in the eviction index")
			}
		}
	}
	switch {
	case hasEvictable:
		checkEvictable()
	case evictComplete:
		w.fail("meta", "marks the eviction index complete, but there is none")
	}
	if hasLedger && w.lostPages == 0 && w.lostValues == 0 && ledgerSeq != uint64(rep.Evictions) {
		w.fail("eviction ledger", "counts %d records, but holds %d", ledgerSeq, rep.Evictions)
	}
	if !legacy && w.lostPages == 0 && w.lostValues == 0 {
		// The registry against the events, when every page was read and
		// every record decoded: otherwise the difference is the damage
		// already reported, or a record whose function is unknown.
		for name, c := range held {
			r, ok := registry[name]
			switch {
			case !ok:
				w.fail(fmt.Sprintf("function %q", name), "holds %d events, but has no registry record", c.events)
			case len(unreadable) == 0 && (r.events != c.events || r.leased != c.leased || r.bytes != c.bytes):
				w.fail(fmt.Sprintf("function %q", name), "registry counts %d events, %d leased, %d bytes, but the file holds %d, %d, %d",
					r.events, r.leased, r.bytes, c.events, c.leased, c.bytes)
			}
		}
		for name, r := range registry {
			switch {
			case held[name] != nil || len(unreadable) > 0:
			case r.events != 0:
				w.fail(fmt.Sprintf("function %q", name), "registry counts %d events, but the file holds none", r.events)
			case !r.paused:
				w.fail(fmt.Sprintf("function %q", name), "a record with no events that is not paused: it should have been deleted")
			}
		}
	}

	if counters == nil {
		if isQueue {
			w.fail("counters", "missing")
		}
	} else if c, err := decodeCounts(counters); err != nil {
		w.fail("counters", "%v", err)
	} else if w.lostPages == 0 && w.lostValues == 0 {
		// Counters against contents, only when every page was read:
		// otherwise the difference is the damage already reported.
		for _, m := range []struct {
			what       string
			got, count int64
		}{
			{"events", c.events, int64(len(heads) + len(unreadable))},
			{"leased", c.leased, int64(len(leases))},
			{"corrupt", c.corrupt, rep.Corrupt},
		} {
			if m.got != m.count {
				w.fail("counters", "%s %d, but the file holds %d", m.what, m.got, m.count)
			}
		}
		if len(unreadable) == 0 && c.bytes != bytesHeld {
			w.fail("counters", "bytes %d, but the events hold %d", c.bytes, bytesHeld)
		}
		if c.nextSeq < maxSeq {
			w.fail("counters", "next sequence %d, but event %d exists", c.nextSeq, maxSeq)
		}
	}
	rep.Problems = w.problems
	return rep, nil
}

// openPages opens path read-only for Check and Salvage and reads its meta
// pages. A file a running dispatcher holds is refused with ErrLocked: its
// pages change under the reader.
func openPages(path string) (*os.File, *pageFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("store: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("store: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("store: %s is not a regular file", path)
	}
	if !lockShared(f) {
		f.Close()
		return nil, nil, fmt.Errorf("%w: %s", ErrLocked, path)
	}
	pf, err := readMetas(f, fi.Size())
	if pf == nil {
		f.Close()
		return nil, nil, &CorruptError{What: "file " + path, Err: err}
	}
	if err != nil {
		// A meta whose pages run past the end (a truncated file): read
		// what is there, the pages beyond are reported as they come.
		pf.metaErr = err
		pf.meta.hwm = min(pf.meta.hwm, uint64(fi.Size())/uint64(pf.meta.pageSize))
	}
	return f, pf, nil
}

// checkInLog reads back the payloads the file keeps in the log beside
// path (seq → position) and adds their length and checksum to payloads,
// for Check to compare with the records as it does the file's own. One
// that cannot be read is reported with the reason and marked in failed;
// one that is in the file too, or whose record is gone, is a problem of
// its own.
func checkInLog(path string, inLog map[uint64]uint64, payloads map[uint64][2]uint32, failed map[uint64]bool, plen func(uint64) (uint32, bool), fail func(where, format string, a ...any)) {
	r, err := wal.OpenReader(logDir(path))
	if err != nil {
		fail("write-ahead log", "%v", err)
		for seq := range inLog {
			failed[seq] = true
		}
		return
	}
	defer r.Close()
	for seq, pos := range inLog {
		where := fmt.Sprintf("event %d", seq)
		n, ok := plen(seq)
		switch {
		case !ok:
			fail(fmt.Sprintf("payload %d", seq), "in the log, but no record")
			continue
		}
		if _, ok := payloads[seq]; ok {
			fail(where, "payload both in the file and in the log")
			continue
		}
		p := make([]byte, n)
		if err := r.ReadAt(p, wal.Position(pos)); err != nil {
			fail(where, "payload in the write-ahead log at %d: %v", pos, err)
			failed[seq] = true
			continue
		}
		payloads[seq] = [2]uint32{n, checksum(p)}
	}
}
