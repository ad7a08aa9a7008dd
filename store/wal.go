package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lambdadispatch/dispatcher/internal/wal"
)

// The write-ahead log in front of the file: see the package doc's "Write-
// ahead log" for the design and why it is safe. This file holds the
// store's side: what a logged enqueue writes, how the writer admits
// enqueues into the log, and how a transaction applies what the log
// holds (the checkpoint).

var keyWALPos = []byte("walpos") // in meta: the log position applied

// logRecordVersion is the first byte of every log record the store
// writes; a record of another version stops Open rather than be guessed.
const logRecordVersion = 1

// Checkpoint triggers: the writer applies what the log holds once this
// many events wait there, or this long after the first of them; any write
// transaction (a lease, an ack) applies them before its own work in any
// case, so a running dispatcher sees new events at its next lease.
const (
	checkpointEvents = 16384
	checkpointBytes  = 16 << 20
	checkpointDelay  = time.Second
)

// logKey is a key an entry holds: by which event, until when (wall clock,
// as the key window reckons, so that an expired one is free again).
type logKey struct {
	seq     uint64
	expires int64
}

// keyExpiry is when a key held at wall for window expires, as the key
// window reckons it: saturating, never wrapping.
func keyExpiry(wall int64, window time.Duration) int64 {
	if window > 0 && wall > math.MaxInt64-int64(window) {
		return math.MaxInt64
	}
	return wall + int64(window)
}

// logEntry is an event in the log and not yet in the file: its sequence
// number is given, its counts are in Store.counts, and its key, if it
// holds one, is in logState.keys.
type logEntry struct {
	seq    uint64
	p      pending
	key    string        // the key it holds, "" for none
	window time.Duration // for how long, from wall
	wall   int64         // wall clock at enqueue, as Hold is given
	off    int           // where its payload lies in its log record
	at     wal.Position  // where its payload lies in the log, once known
}

// logState is the log and what it holds beyond the file. Only the writer
// goroutine touches it (and Open, before the writer starts), but for
// waiting, which readers read to decide whether to flush first.
type logState struct {
	l       *wal.Log
	mu      sync.Mutex // guards entries against readers; the writer alone changes them
	entries []logEntry
	bytes   int64             // payload and record bytes of entries
	keys    map[string]logKey // key → the entry holding it
	end     wal.Position      // after the last record appended
	applied wal.Position      // the position the file records
	pin     wal.Position      // the oldest payload the file reads from the log
	timer   *time.Timer
	// failed is set when an append or a sync failed: what the log holds
	// past applied is unknown, so the log takes nothing more and enqueues
	// go through bbolt transactions until the store is reopened.
	failed error
	// waiting mirrors len(entries) for readers outside the writer.
	waiting atomic.Int64
}

// scheduled counts the events the log holds that are due after now.
func (w *logState) scheduled(now int64) int64 {
	if w == nil || w.waiting.Load() == 0 {
		return 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var n int64
	for _, e := range w.entries {
		if e.p.due > now {
			n++
		}
	}
	return n
}

// pendingApply reports whether a transaction has anything of the log to
// write: events, or a position to record.
func (w *logState) pendingApply() bool {
	return w != nil && (len(w.entries) > 0 || w.failed != nil && w.applied != w.end)
}

// applyAtOpen applies what the log replayed, before the writer starts.
func (s *Store) applyAtOpen() error {
	if !s.wal.pendingApply() {
		return nil
	}
	return s.commit(nil)
}

// logDir is where the log of the queue at path lives.
func logDir(path string) string { return path + "-wal" }

// encodeLogRecord is one enqueue's events, all or nothing:
//
//	version byte (1), queue time varint, count uvarint, then per event:
//	seq uvarint, record (uvarint length, bytes), payload (uvarint
//	length, bytes), key flag byte (1: holds its key), window varint
//	nanoseconds when the flag is set, wall time varint.
//
// The log checksums each record as a whole (package wal).
func encodeLogRecord(now int64, es []logEntry) []byte {
	n := 16
	for _, e := range es {
		n += 40 + len(e.p.rec) + len(e.p.payload)
	}
	b := make([]byte, 0, n)
	b = append(b, logRecordVersion)
	b = binary.AppendVarint(b, now)
	b = binary.AppendUvarint(b, uint64(len(es)))
	for i, e := range es {
		b = binary.AppendUvarint(b, e.seq)
		b = binary.AppendUvarint(b, uint64(len(e.p.rec)))
		b = append(b, e.p.rec...)
		b = binary.AppendUvarint(b, uint64(len(e.p.payload)))
		es[i].off = len(b)
		b = append(b, e.p.payload...)
		if e.key != "" {
			b = append(b, 1)
			b = binary.AppendVarint(b, int64(e.window))
		} else {
			b = append(b, 0)
		}
		b = binary.AppendVarint(b, e.wall)
	}
	return b
}

// errLogRecord is wrapped by every decoding error: a record whose checksum
// held but whose content does not parse was written by a broken or a
// newer library, and Open stops rather than guess.
var errLogRecord = errors.New("malformed log record")

// decodeLogRecord parses encodeLogRecord's output. It never panics and
// never allocates more than the record's own length.
func decodeLogRecord(b []byte) (now int64, es []logEntry, err error) {
	d := decoder{b: b}
	if v := d.byte("version"); d.err == nil && v != logRecordVersion {
		return 0, nil, fmt.Errorf("%w: version %d", errLogRecord, v)
	}
	now = d.varint("queue time")
	// Each event takes at least five bytes, so a count past that is
	// damage, found before anything is allocated for it.
	n := d.uvarint("count", uint64(len(b)/5))
	for i := uint64(0); d.err == nil && i < n; i++ {
		var e logEntry
		e.seq = d.uvarint("seq", math.MaxUint64)
		rec := d.logBytes("record")
		payload := d.logBytes("payload")
		e.off = len(b) - len(d.b) - len(payload)
		flag := d.byte("key flag")
		if flag > 1 {
			d.fail("key flag", fmt.Sprintf("%d", flag))
		}
		if flag == 1 {
			e.window = time.Duration(d.varint("window"))
		}
		e.wall = d.varint("wall time")
		if d.err != nil {
			break
		}
		r, err := decodeRecord(rec)
		if err != nil {
			return 0, nil, fmt.Errorf("%w: event %d: %v", errLogRecord, e.seq, err)
		}
		if _, err := checkPayload(payload, e.seq, &r); err != nil {
			return 0, nil, fmt.Errorf("%w: event %d: %v", errLogRecord, e.seq, err)
		}
		if flag == 1 {
			e.key = r.key
		}
		e.p = pending{
			rec: append([]byte(nil), rec...), payload: append([]byte(nil), payload...),
			function: r.function, due: r.due, size: r.size(), priority: r.priority,
		}
		es = append(es, e)
	}
	if d.err == nil && len(d.b) > 0 {
		d.fail("end", fmt.Sprintf("%d bytes after the last event", len(d.b)))
	}
	if d.err != nil {
		return 0, nil, fmt.Errorf("%w: %v", errLogRecord, d.err)
	}
	return now, es, nil
}

// logBytes reads a length-prefixed byte string of a log record, aliasing
// the record.
func (d *decoder) logBytes(field string) []byte {
	n := d.uvarint(field+" length", math.MaxUint32)
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(field, fmt.Sprintf("length %d but %d bytes left", n, len(d.b)))
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// openLog opens the log beside the file and replays what it holds past
// the position the file records into s.wal, adding it to the counts; the
// caller then applies it (checkpoint) before the writer starts.
func (s *Store) openLog() error {
	var applied uint64
	var pin wal.Position
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyWALPos); v != nil {
			if len(v) != 8 {
				return &CorruptError{What: "log position", Err: fmt.Errorf("%d bytes", len(v))}
			}
			applied = binary.BigEndian.Uint64(v)
		}
		var err error
		pin, err = logPinOf(tx.Bucket(bucketInLog))
		return err
	})
	if err != nil {
		return err
	}
	l, err := wal.Open(logDir(s.path), wal.Options{Logger: s.log})
	if err != nil {
		return fmt.Errorf("store: write-ahead log: %w", err)
	}
	w := &logState{l: l, keys: map[string]logKey{}, applied: wal.Position(applied), pin: pin}
	var clock int64
	tail, err := l.Replay(wal.Position(applied), func(p wal.Position, data []byte) error {
		now, es, err := decodeLogRecord(data)
		if err != nil {
			return &CorruptError{What: fmt.Sprintf("write-ahead log record at %d", p), Err: err}
		}
		clock = max(clock, now)
		for _, e := range es {
			e.at = p + wal.FrameHeaderSize + wal.Position(e.off)
			if e.seq <= s.counts.nextSeq {
				// The file has this sequence number already: the log
				// is not the file's, or the file was restored from an
				// older copy. Applying it would overwrite an event.
				return &CorruptError{What: "write-ahead log", Err: fmt.Errorf("event %d at %d is at or below the file's last sequence number %d", e.seq, p, s.counts.nextSeq)}
			}
			s.counts.nextSeq = e.seq
			s.counts.events++
			s.counts.bytes += e.p.size
			w.add(e)
		}
		return nil
	})
	if tail.New && applied > wal.HeaderSize {
		// The file was copied, restored or salvaged without its log: it
		// is whole up to the position it records, and what a log held
		// past that went with the log. The new log begins there. So
		// did the payloads the file read from it: their events are set
		// aside as damaged when leased.
		inLog := 0
		if pin != math.MaxUint64 {
			_ = s.db.View(func(tx *bolt.Tx) error {
				inLog = tx.Bucket(bucketInLog).Stats().KeyN
				return nil
			})
		}
		s.log.Warn("write-ahead log: the file records a log position but its log is gone; starting a new log",
			"path", s.path, "position", applied, "payloadsLost", inLog)
	}
	if err != nil {
		l.Close()
		var ce *CorruptError
		if errors.As(err, &ce) {
			return err
		}
		if errors.Is(err, wal.ErrGap) {
			return &CorruptError{What: "write-ahead log " + logDir(s.path), Err: fmt.Errorf("%w: it does not hold the position the file records (%d): the file and its log are from different times; move the log aside to open the file as it is", err, applied)}
		}
		return fmt.Errorf("store: write-ahead log: %w", err)
	}
	if tail.Torn {
		// Never acknowledged: a record is acknowledged only after the
		// sync that would have made it whole.
		s.log.Warn("write-ahead log: a torn record at the end was not applied; it was never acknowledged",
			"path", s.path, "position", uint64(tail.End), "reason", tail.Reason)
	}
	w.end = tail.End
	s.counts.clock = max(s.counts.clock, clock)
	s.clock.anchor(s.now().UnixNano(), s.counts.clock)
	if n := len(w.entries); n > 0 {
		s.log.Info("write-ahead log: replaying events not yet in the file", "events", n, "path", s.path)
	}
	if s.opts.NoLog {
		// Applied at Open like any replay, then no more logging: the
		// failed state sends every enqueue to a transaction.
		w.failed = errLogOff
	}
	s.wal = w
	return nil
}

// add appends e to the entries.
func (w *logState) add(e logEntry) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.entries = append(w.entries, e)
	w.bytes += e.p.size
	if e.key != "" {
		w.keys[e.key] = logKey{seq: e.seq, expires: keyExpiry(e.wall, e.window)}
	}
	w.waiting.Store(int64(len(w.entries)))
}

// applyLog writes the events the log holds into the file, in t: every
// write transaction runs it first, so that whatever it does next sees
// every event acknowledged so far. Counts are not touched: they took the
// events when they were logged.
func (t *txn) applyLog() error {
	w := t.s.wal
	if !w.pendingApply() {
		return nil
	}
	for i := range w.entries {
		e := &w.entries[i]
		if err := t.putLogged(e); err != nil {
			return err
		}
	}
	if logApplyHook != nil {
		logApplyHook()
	}
	if err := t.moveOldPayloads(); err != nil {
		return err
	}
	t.logApplied = len(w.entries)
	t.logPos = w.end
	return t.meta.Put(keyWALPos, binary.BigEndian.AppendUint64(nil, uint64(w.end)))
}

// logSyncHook, nil outside tests, runs before the log's sync; an error
// from it stands for a failed one.
var logSyncHook func() error

// logApplyHook, nil outside tests, runs in the transaction that applies
// the log, after its writes and before the commit: a crash test stops
// there.
var logApplyHook func()

// putLogged writes one logged event and its key hold.
func (t *txn) putLogged(e *logEntry) error {
	k := seqKey(e.seq)
	if len(e.p.payload) > inlineMax && e.at != 0 && t.inlog != nil {
		// The payload stays where the log has it: see "Payloads stay in
		// the log" in the package doc.
		if err := t.inlog.Put(k, binary.BigEndian.AppendUint64(nil, uint64(e.at))); err != nil {
			return err
		}
	} else if err := t.payloads.Put(k, e.p.payload); err != nil {
		return err
	}
	if err := t.events.Put(k, e.p.rec); err != nil {
		return err
	}
	f, err := t.fnFor(e.p.function)
	if err != nil {
		return err
	}
	if err := t.fnready.Put(fnReadyKey(f.id, e.p.priority, e.p.due, e.seq), []byte{}); err != nil {
		return err
	}
	if err := t.indexWaiting(e.p.priority, e.seq); err != nil {
		return err
	}
	f.events++
	f.bytes += e.p.size
	t.readied = true
	if e.key == "" {
		return nil
	}
	if t.s.window == nil {
		// Only a store opened with a key window logs keyed events; one
		// opened on the same file without it (a tool's) applies them
		// without their keys rather than fail every transaction.
		t.s.log.Warn("write-ahead log: an event's key is not held: the store has no key window", "path", t.s.path, "event", e.seq)
		return nil
	}
	return t.s.window.Hold(t.pub(), e.key, e.seq, time.Unix(0, e.wall), e.window)
}

// logCommitted forgets the entries t applied, once t committed, and
// recycles the log's segments below both the position the file now
// records and the oldest payload the file still reads from the log.
func (s *Store) logCommitted(t *txn) {
	w := s.wal
	if w == nil {
		return
	}
	if t.logPos == 0 && t.logApplied == 0 {
		if t.logPin != w.pin {
			w.pin = t.logPin
			s.recycleLog()
		}
		return
	}
	w.pin = t.logPin
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range w.entries[:t.logApplied] {
		w.bytes -= e.p.size
		if e.key != "" && w.keys[e.key].seq == e.seq {
			delete(w.keys, e.key)
		}
	}
	w.entries = append(w.entries[:0], w.entries[t.logApplied:]...)
	w.waiting.Store(int64(len(w.entries)))
	w.applied = t.logPos
	if len(w.entries) == 0 && w.timer != nil {
		w.timer.Stop()
	}
	s.recycleLog()
}

// recycleLog retires the log's segments that hold nothing the file still
// needs: below the position it records and below its oldest payload there.
func (s *Store) recycleLog() {
	w := s.wal
	if err := w.l.Recycle(min(w.applied, w.pin)); err != nil {
		s.log.Warn("write-ahead log: recycling segments failed; they stay on disk", "path", s.path, "error", err)
	}
}

// inlineMax is the largest payload the checkpoint copies into the file
// rather than leave in the log: below it the reference (8 bytes) saves
// nothing worth pinning a segment for.
const inlineMax = 64

// Bounds on the log that payloads keep: once the oldest payload the file
// reads from the log lies more than logKeep behind the log's end, each
// checkpoint copies up to logMoveMax bytes of the oldest ones into the
// file, until they lie within logKeep/2, so that one event scheduled far
// ahead, or a backlog left for days, cannot keep every segment after it.
var (
	logKeep    = wal.Position(64 << 20)
	logMoveMax = 8 << 20
)

// logPinOf is the position of the oldest payload the file reads from the
// log, or the largest position when there is none.
func logPinOf(inlog *bolt.Bucket) (wal.Position, error) {
	if inlog == nil {
		return math.MaxUint64, nil
	}
	k, v := inlog.Cursor().First()
	if k == nil {
		return math.MaxUint64, nil
	}
	if len(v) != 8 {
		return 0, &CorruptError{What: fmt.Sprintf("event %d", binary.BigEndian.Uint64(k)), Err: fmt.Errorf("log reference of %d bytes", len(v))}
	}
	return wal.Position(binary.BigEndian.Uint64(v)), nil
}

// moveOldPayloads copies payloads that lie too far behind the log's end
// into the file (see logKeep).
func (t *txn) moveOldPayloads() error {
	w := t.s.wal
	keep := logKeepFor(t.s.opts.MaxBytes)
	if t.inlog == nil || w.end < keep {
		return nil
	}
	pin, err := logPinOf(t.inlog)
	if err != nil || pin == math.MaxUint64 || w.end-pin <= keep {
		return err
	}
	return t.movePayloads(w.end-keep/2, logMoveMax)
}

// minLogKeep is the least logKeepFor gives: two segments of the default
// size, so that the log can still recycle one while it writes the next.
const minLogKeep = 2 * wal.DefaultSegmentSize

// logKeepFor is logKeep for a store capped at maxBytes (0: no cap): at
// most half the cap, but at least minLogKeep. A queue capped small is
// one whose disk is small, and the log's span, acknowledged payloads
// included, should not dwarf what the queue may hold.
func logKeepFor(maxBytes int64) wal.Position {
	if maxBytes <= 0 {
		return logKeep
	}
	return min(logKeep, max(wal.Position(maxBytes/2), minLogKeep))
}

// movePayloads copies into the file the payloads it reads from the log
// below position below, oldest first, until about limit bytes moved. One
// that cannot be read back is set aside as damaged: left, it would stop
// every move after it.
func (t *txn) movePayloads(below wal.Position, limit int) error {
	var err error
	moved := 0
	c := t.inlog.Cursor()
	for k, v := c.First(); k != nil && moved < limit; k, v = c.First() {
		if len(v) == 8 && wal.Position(binary.BigEndian.Uint64(v)) >= below {
			break
		}
		seq := binary.BigEndian.Uint64(k)
		raw := t.events.Get(k)
		var r record
		if raw != nil {
			r, err = decodeRecord(raw)
		}
		var p []byte
		if raw != nil && err == nil {
			p, err = t.s.logPayload(v, seq, &r)
		}
		switch {
		case raw == nil:
			// A reference without its event: nothing reads it.
			err = c.Delete()
		case err != nil:
			err = t.setAside(seq, err.Error(), raw, nil)
		default:
			if err = t.payloads.Put(k, p); err == nil {
				err = c.Delete()
			}
			moved += len(p)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// logPayload reads the payload of event seq, whose record is r, from the
// log position ref holds, and checks it against the record.
func (s *Store) logPayload(ref []byte, seq uint64, r *record) ([]byte, error) {
	return readLogPayload(s.readLog, ref, seq, r)
}

// readLogPayload is logPayload through read: a store's log, or the
// Reader of Salvage.
func readLogPayload(read func([]byte, wal.Position) error, ref []byte, seq uint64, r *record) ([]byte, error) {
	if len(ref) != 8 {
		return nil, &CorruptError{What: fmt.Sprintf("event %d", seq), Err: fmt.Errorf("log reference of %d bytes", len(ref))}
	}
	pos := wal.Position(binary.BigEndian.Uint64(ref))
	p := make([]byte, r.payloadLen)
	if err := read(p, pos); err != nil {
		if errors.Is(err, wal.ErrClosed) {
			return nil, ErrClosed
		}
		return nil, &CorruptError{What: fmt.Sprintf("event %d", seq), Err: fmt.Errorf("payload in the write-ahead log at %d: %w", uint64(pos), err)}
	}
	if checksum(p) != r.payloadCRC {
		return nil, &CorruptError{What: fmt.Sprintf("event %d", seq), Err: fmt.Errorf("payload in the write-ahead log at %d: checksum mismatch", uint64(pos))}
	}
	return p, nil
}

// errNoLogReader is the reason a payload in the log cannot be read by a
// store that opened no log (see Options.ReadOnly).
var errNoLogReader = errors.New("the log is not open")

// readLog reads b from the log at pos: through the log this store writes,
// or, opened read-only, through a reader of the directory.
func (s *Store) readLog(b []byte, pos wal.Position) error {
	switch {
	case s.wal != nil:
		return s.wal.l.ReadAt(b, pos)
	case s.logReader != nil:
		return s.logReader.ReadAt(b, pos)
	}
	return errNoLogReader
}

// logTxn is one round of logged enqueues: the admissions of the ops the
// writer took, checked against the counts and keys as they will be once
// the round's record is durable.
type logTxn struct {
	s     *Store
	c     counts
	tot   totals
	now   int64
	wall  int64
	rtx   *bolt.Tx // for key lookups, opened at the first
	recs  [][]byte
	added []logEntry
	recOf []int             // the index in recs of each entry added
	keys  map[string]logKey // held by this round's events
}

// errLogOff is the log's state under Options.NoLog.
var errLogOff = errors.New("store: write-ahead log off (Options.NoLog)")

// errUseTx sends an op back to a bbolt transaction: it needs what only one
// can do (evict to make room).
var errUseTx = errors.New("store: needs a transaction")

func (l *logTxn) held(w KeyWindow, key string) (uint64, bool, error) {
	// The newest holder first: this round's, then the log's, then the
	// file's. One that expired lets the key go, as the window would.
	if k, ok := l.keys[key]; ok {
		return k.seq, k.expires > l.wall, nil
	}
	if k, ok := l.s.wal.keys[key]; ok {
		return k.seq, k.expires > l.wall, nil
	}
	if l.rtx == nil {
		tx, err := l.s.db.Begin(false)
		if err != nil {
			return 0, false, err
		}
		l.rtx = tx
	}
	return w.Held(&Tx{tx: l.rtx}, key, time.Unix(0, l.wall))
}

// room is checkRoom on the round's counts.
func (l *logTxn) room(n int, size int64) error {
	t := txn{s: l.s, c: l.c}
	return t.checkRoom(n, size)
}

// log adds the events ps (with their keys and windows, "" for none) as one
// record, all or nothing, and returns their sequence numbers.
func (l *logTxn) log(ps []pending, keys []string, windows []time.Duration, size int64) []uint64 {
	seqs := make([]uint64, len(ps))
	es := make([]logEntry, len(ps))
	for i := range ps {
		l.c.nextSeq++
		seqs[i] = l.c.nextSeq
		es[i] = logEntry{seq: l.c.nextSeq, p: ps[i], wall: l.wall}
		if keys != nil && keys[i] != "" {
			es[i].key, es[i].window = keys[i], windows[i]
			l.keys[keys[i]] = logKey{seq: l.c.nextSeq, expires: keyExpiry(l.wall, windows[i])}
		}
	}
	l.c.events += int64(len(ps))
	l.c.bytes += size
	l.tot.enqueued += uint64(len(ps))
	l.recs = append(l.recs, encodeLogRecord(l.now, es))
	for range es {
		l.recOf = append(l.recOf, len(l.recs)-1)
	}
	l.added = append(l.added, es...)
	return seqs
}

// logRound admits the ops that can go to the log, appends their records
// and syncs the log once for all of them, and returns the ops left for a
// bbolt transaction. The ops it completes have their outcome set.
func (s *Store) logRound(ops []*op) (rest []*op, done []*op) {
	w := s.wal
	if w == nil || w.failed != nil {
		return ops, nil
	}
	s.statMu.Lock()
	c := s.counts
	s.statMu.Unlock()
	l := &logTxn{s: s, c: c, now: s.clock.now(), wall: s.now().UnixNano(), keys: map[string]logKey{}}
	var took []*op
	for _, o := range ops {
		if o.logApply == nil {
			rest = append(rest, o)
			continue
		}
		saved := *l
		o.err = nil
		err := o.logApply(l)
		if err != nil {
			// Admission failed before the op logged anything; the read
			// transaction it may have opened stays, to be closed below:
			// an open one would block bbolt's remap for ever.
			rtx := l.rtx
			*l = saved
			l.rtx = rtx
		}
		switch {
		case errors.Is(err, errUseTx):
			rest = append(rest, o)
		case err != nil:
			o.err = err
			done = append(done, o)
		default:
			took = append(took, o)
		}
	}
	if l.rtx != nil {
		_ = l.rtx.Rollback()
	}
	if len(l.recs) == 0 {
		// Duplicates or refusals only: settled without a write.
		return rest, append(done, took...)
	}
	at := make([]wal.Position, len(l.recs))
	end, err := w.l.AppendAt(at, l.recs...)
	if err == nil && logSyncHook != nil {
		err = logSyncHook()
	}
	if err == nil {
		err = w.l.Sync()
	}
	if err != nil {
		// What reached the disk is unknown: the next checkpoint records
		// the log's end as applied, so that nothing of this round is
		// replayed later, and the log takes nothing more.
		w.failed = fmt.Errorf("store: write-ahead log: %w", err)
		w.end = w.l.End()
		s.log.Error("write-ahead log failed; enqueues go to the file directly until the store is reopened", "path", s.path, "error", err)
		for _, o := range took {
			o.err = w.failed
		}
		return rest, append(done, took...)
	}
	w.end = end
	for i, e := range l.added {
		e.at = at[l.recOf[i]] + wal.FrameHeaderSize + wal.Position(e.off)
		w.add(e)
	}
	if w.timer == nil {
		w.timer = time.NewTimer(checkpointDelay)
	} else if len(w.entries) == len(l.added) {
		w.timer.Reset(checkpointDelay)
	}
	l.tot.commits++
	s.statMu.Lock()
	s.counts = l.c
	s.totals.add(l.tot)
	changed := s.changed
	s.changed = nil
	s.statMu.Unlock()
	if changed != nil {
		close(changed)
	}
	select {
	case s.ready <- struct{}{}:
	default:
	}
	return rest, append(done, took...)
}

// checkpointDue reports whether the log holds enough to apply now rather
// than wait for the timer.
func (w *logState) checkpointDue() bool {
	return len(w.entries) >= checkpointEvents || w.bytes >= checkpointBytes
}

// timerC is the checkpoint timer's channel, nil when nothing waits.
func (w *logState) timerC() <-chan time.Time {
	if w == nil || w.timer == nil || len(w.entries) == 0 {
		return nil
	}
	return w.timer.C
}

// flush applies what the log holds before a read, so that readers see
// every acknowledged event: a write transaction of nothing but that.
func (s *Store) flush() error {
	if s.wal == nil || s.wal.waiting.Load() == 0 {
		return nil
	}
	return s.doBackground(func(*txn) error { return nil })
}

// closeLog applies what the log holds and closes it; the writer has
// stopped.
func (s *Store) closeLog() error {
	w := s.wal
	if w == nil {
		return nil
	}
	var err error
	if w.pendingApply() {
		err = s.commit(nil)
	}
	// The payloads still read from the log move into the file, so that a
	// file closed cleanly holds every event itself, as it did before
	// payloads stayed in the log: it can be copied, checked and opened
	// read-only alone.
	move := &op{apply: func(t *txn) error { return t.movePayloads(math.MaxUint64, logMoveMax) }}
	for err == nil && w.pin != math.MaxUint64 {
		err = s.commit([]*op{move})
	}
	if w.timer != nil {
		w.timer.Stop()
	}
	if cerr := w.l.Close(); err == nil {
		err = cerr
	}
	return err
}
