package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lambdadispatch/dispatcher/internal/wal"
)

// Errors returned by the store. Each is wrapped with the detail of the
// call, so test them with errors.Is.
var (
	// ErrClosed is returned by every call made after Close.
	ErrClosed = errors.New("store: closed")
	// ErrLocked is returned by Open when another Store, in this process or
	// another, holds the file beyond Options.LockTimeout.
	ErrLocked = errors.New("store: file is in use by another process")
	// ErrFull is returned by Enqueue when the events would take the store
	// past Options.MaxEvents or Options.MaxBytes (under FullDropOldest:
	// even once every event waiting was evicted). Nothing is written.
	ErrFull = errors.New("store: full")
	// ErrNotFound is returned for a sequence number that names no event.
	ErrNotFound = errors.New("store: no such event")
	// ErrReadOnly is returned by every write (Enqueue, Lease, Ack, ...) to
	// a Store opened with Options.ReadOnly.
	ErrReadOnly = errors.New("store: opened read-only")
	// ErrNotLeased is returned by Ack, Reschedule and Release for an event
	// that exists but is not leased (it was acked, or its lease was
	// reclaimed after expiring).
	ErrNotLeased = errors.New("store: event is not leased")
)

// CorruptError reports data in the file that this library cannot read: a
// file that is not a queue, a record that does not decode, a payload whose
// checksum does not match.
type CorruptError struct {
	What string // what was being read: "file", "counters", "event 42", ...
	Err  error  // what is wrong with it
}

func (e *CorruptError) Error() string { return fmt.Sprintf("store: corrupt %s: %v", e.What, e.Err) }

// Unwrap returns the underlying cause.
func (e *CorruptError) Unwrap() error { return e.Err }

// formatVersion is the layout of buckets and keys; recordVersion, the
// encoding of one record; countersVersion, that of the counters. Each can
// move on its own. Format 2 replaced format 1's one ready index by one per
// function and added the function registry (see the package doc).
const (
	// formatVersion 3 has format 2's layout; its records may be version
	// 3 (priority, cancel mark), which a library of format 2 would set
	// aside as unreadable: the marker makes that library refuse the file
	// ("upgrade the library") instead of losing events.
	//
	// formatVersion 4 adds the write-ahead log beside the file (see the
	// package doc): a library of format 3 would open the file and never
	// read the events the log holds past it, so the marker makes it
	// refuse the file instead.
	//
	// formatVersion 5 leaves payloads in the log (bucket inlog): a
	// library of format 4 would find them missing.
	formatVersion = 5
	// fnLayoutVersion is the first format with a ready index per
	// function; files below it are migrated.
	fnLayoutVersion = 2
	countersVersion = 1
)

var (
	bucketMeta      = []byte("meta")
	bucketEvents    = []byte("events")
	bucketPayloads  = []byte("payloads")
	bucketFunctions = []byte("functions")
	bucketFnReady   = []byte("fnready")
	bucketLeases    = []byte("leases")
	bucketCorrupt   = []byte("corrupt")
	// bucketInLog maps the sequence number of an event whose payload
	// stayed in the write-ahead log to the payload's position there
	// (format 5). The file holds no copy of such a payload.
	bucketInLog = []byte("inlog")

	keyFormat   = []byte("format")
	keyCounters = []byte("counters")
)

// queueBuckets are the store's own buckets, which every file of the
// current format has.
var queueBuckets = [][]byte{bucketEvents, bucketPayloads, bucketFunctions, bucketFnReady, bucketLeases, bucketCorrupt}

// recordOverhead is the fixed share of an event's logical size, so that
// Bytes is a pure function of what was enqueued and never drifts as
// records are rewritten.
const recordOverhead = 64

// Options configure a Store. The zero value is usable.
type Options struct {
	// LockTimeout bounds how long Open waits for another holder of the file
	// to let go. Zero means DefaultLockTimeout.
	LockTimeout time.Duration
	// MaxEvents and MaxBytes cap what the store holds; zero means no cap.
	MaxEvents int64
	MaxBytes  int64
	// Full says what an enqueue past a cap does: FullReject (the zero
	// value) refuses it with ErrFull, FullDropOldest evicts events
	// waiting to make room. The store keeps an index for eviction only
	// while it is opened with FullDropOldest: the first such Open builds
	// it (a walk of the events), and an Open without it deletes it.
	Full FullPolicy
	// Evicted, when not nil, runs in the enqueue's transaction for each
	// event evicted, with the event as it was (without its payload), so
	// that its caller's record of the event (its key) goes in the same
	// commit. An error from it fails the enqueue, and nothing is evicted.
	// It may run more than once for an event, in transactions that are
	// rolled back: it must keep no state of its own.
	Evicted func(tx *Tx, ev Event) error
	// EvictionsCommitted, when not nil, is told the function of each
	// event evicted once the eviction is durable, on the store's writer
	// goroutine: it must return promptly. Metrics count evictions here,
	// where Evicted could count a rolled-back one.
	EvictionsCommitted func(functions []string)
	// MaxEvictionRecords bounds the eviction ledger (see Evictions): past
	// it, the records of the events enqueued first go. Zero means
	// DefaultMaxEvictionRecords; less than zero, no ledger is kept.
	MaxEvictionRecords int
	// KeyWindow, when not nil, is called once at Open with the store to
	// return the key window whose keys EnqueueUnique's events hold. Only
	// enqueues with that window go through the write-ahead log: a replay
	// after a crash holds the keys of the events it applies there.
	KeyWindow func(*Store) KeyWindow
	// NoLog keeps the store without its write-ahead log: every enqueue
	// is a transaction of the file, as before format 4. What a log left
	// beside the file is still applied at Open.
	NoLog bool
	// MaxBatch caps the operations shared by one transaction. Zero means
	// DefaultMaxBatch.
	MaxBatch int
	// Now is the wall clock: it stamps enqueue times, gives key windows
	// their time, and starts the queue's own clock at Open (see Store.Now).
	// Nil means time.Now. Tests stub it.
	Now func() time.Time
	// Elapsed is the monotonic clock the queue's schedule runs on once
	// open: it returns the time passed since any fixed origin. Nil means
	// the process's monotonic clock. Tests stub it to move due times and
	// ages without waiting.
	Elapsed func() time.Duration
	// Logger receives recovery and corruption reports; nil discards them.
	Logger *slog.Logger
	// ReadOnly opens the file read-only (O_RDONLY, bbolt's shared lock):
	// not a byte is written, not even at Open, so it works on a read-only
	// mount. The file must already be a queue. Leases are left as found,
	// and every write returns ErrReadOnly. The lock is still exclusive of
	// a Store that has the file open for writing.
	ReadOnly bool
}

// Defaults for Options.
const (
	DefaultLockTimeout = 3 * time.Second
	DefaultMaxBatch    = 1024
)

// Event is one queued event as the store holds it.
type Event struct {
	Seq          uint64
	Function     string
	Qualifier    string
	Key          string
	Payload      []byte
	Enqueued     time.Time
	Due          time.Time // when it may next be leased
	Attempts     int       // leases taken so far, each an attempt
	FirstAttempt time.Time // zero until the first lease
	LastAttempt  time.Time
	// PrevAttempt is LastAttempt before the lease that returned the event:
	// the time of the last attempt actually made, for an event that is
	// given up on before its invoke. Zero if none, and on events not
	// returned by a lease.
	PrevAttempt time.Time
	Leased      bool
	LeaseUntil  time.Time // zero unless Leased
	LastError   ErrorInfo
	Priority    int8 // MinPriority to MaxPriority; higher is leased first
	// Cancelled is set on a leased event that Cancel marked: it is
	// removed, not kept, when its lease ends.
	Cancelled bool
}

// NewEvent is what Enqueue takes.
type NewEvent struct {
	Function  string
	Qualifier string
	Key       string
	Payload   []byte
	// Due is when the event may first be leased, on the queue's clock
	// (Store.Now). Zero, or a time already past, means now; a later one
	// makes the event scheduled until then, as a retry is.
	Due time.Time
	// Priority orders a function's events due: higher first, and among
	// equals first in first out. MinPriority to MaxPriority; 0 is normal.
	// It does not change the turns taken between functions.
	Priority int8
	Window   time.Duration // how long EnqueueUnique holds Key; unused by Enqueue
}

// Stats is a snapshot of the store.
type Stats struct {
	Events    int64 // held: ready + scheduled + leased
	Ready     int64 // due now
	Scheduled int64 // due later (retries waiting for their backoff)
	Leased    int64
	Bytes     int64 // payloads plus per-event metadata; not the file size
	Corrupt   int64 // records set aside because they could not be read

	// Totals since Open.
	Enqueued    uint64
	LeasesTaken uint64
	Acked       uint64
	Rescheduled uint64 // leased events rescheduled (not those cancelled)
	Released    uint64 // leased events released (not those cancelled)
	Removed     uint64 // events removed by Remove (not those cancelled)
	Recovered   uint64 // leases returned to ready at Open or on expiry
	Commits     uint64 // write transactions committed

	// Totals kept in the file, across restarts (and copied by Compact and
	// Salvage): events cancelled by Cancel, and evicted under
	// FullDropOldest.
	Cancelled uint64
	Evicted   uint64
}

// counts are persisted with every commit, so Open reads them instead of
// walking a million events.
type counts struct {
	nextSeq uint64
	events  int64
	bytes   int64
	leased  int64
	corrupt int64
	clock   int64 // the latest queue time committed: Store.Now never starts before it
	// Totals that outlive a restart.
	cancelled uint64
	evicted   uint64
}

func (c counts) encode() []byte {
	b := []byte{countersVersion}
	b = binary.AppendUvarint(b, c.nextSeq)
	b = binary.AppendVarint(b, c.events)
	b = binary.AppendVarint(b, c.bytes)
	b = binary.AppendVarint(b, c.leased)
	b = binary.AppendVarint(b, c.corrupt)
	b = binary.AppendVarint(b, c.clock)
	b = binary.AppendUvarint(b, c.cancelled)
	return binary.AppendUvarint(b, c.evicted)
}

func decodeCounts(b []byte) (counts, error) {
	var c counts
	if len(b) == 0 || b[0] != countersVersion {
		return c, fmt.Errorf("unknown counters version")
	}
	d := decoder{b: b[1:]}
	c.nextSeq = d.uvarint("next sequence", 1<<63)
	c.events = d.varint("events")
	c.bytes = d.varint("bytes")
	c.leased = d.varint("leased")
	c.corrupt = d.varint("corrupt")
	// Files written before the queue clock, or before cancel and
	// eviction, end earlier. Bytes after the fields known are a later
	// version's, which this one drops at its next commit: a file stays
	// readable both ways.
	if d.err == nil && len(d.b) > 0 {
		c.clock = d.varint("queue clock")
	}
	if d.err == nil && len(d.b) > 0 {
		c.cancelled = d.uvarint("cancelled", math.MaxUint64)
		c.evicted = d.uvarint("evicted", math.MaxUint64)
	}
	if d.err == nil && (c.events < 0 || c.bytes < 0 || c.leased < 0 || c.leased > c.events) {
		d.fail("counts", "negative or inconsistent")
	}
	return c, d.err
}

type totals struct {
	enqueued, leases, acked, rescheduled, released, removed, recovered, commits uint64
}

func (t *totals) add(o totals) {
	t.enqueued += o.enqueued
	t.leases += o.leases
	t.acked += o.acked
	t.rescheduled += o.rescheduled
	t.released += o.released
	t.removed += o.removed
	t.recovered += o.recovered
	t.commits += o.commits
}

// Store is a durable queue of events in one bbolt file. All writes go
// through one goroutine that folds concurrent calls into one transaction
// and one fsync (group commit); reads run in their own short transactions.
type Store struct {
	db      *bolt.DB
	path    string
	opts    Options
	now     func() time.Time // wall clock
	clock   *queueClock
	log     *slog.Logger
	ops     chan *op
	ready   chan struct{}
	writerW sync.WaitGroup

	mu     sync.RWMutex // guards closed against sends on ops
	closed bool

	statMu sync.Mutex
	counts counts
	totals totals
	// The registry's mirror, by name and by id, published with counts.
	fns     map[string]fnInfo
	fnNames map[uint32]string

	// leaseFrom is the id of the function the last lease started with:
	// the next starts after it, so that no function is always first.
	// Only the writer goroutine touches it.
	leaseFrom uint32
	// legacy is set on a format 1 file opened read-only: it cannot be
	// migrated, so the calls that need the per-function index walk the
	// events instead.
	legacy bool
	// evictOn says the writer keeps the eviction index: set at Open
	// before the writer starts, under FullDropOldest.
	evictOn bool
	// changed is the channel Changed handed out, closed by the next
	// commit; nil when nobody asked since. Guarded by statMu.
	changed chan struct{}
	// wal is the write-ahead log, nil when read-only; window, the key
	// window whose keys logged events hold (Options.KeyWindow).
	wal *logState
	// logReader reads the payloads the file keeps in the log, for a
	// store opened read-only (which opens no log).
	logReader *wal.Reader
	window    KeyWindow
}

// Open opens or creates the queue file at path (mode 0600), returns leases
// left by a process that died to the ready index, and starts the writer.
// With Options.ReadOnly it only opens an existing queue, and a file that is
// not one gives a *CorruptError.
func Open(path string, o Options) (*Store, error) {
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	s := &Store{path: path, opts: o, now: o.Now, log: o.Logger}
	if s.now == nil {
		s.now = time.Now
	}
	s.clock = newQueueClock(o.Elapsed)
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	abs, err := claimPath(path)
	if err != nil {
		return nil, err
	}
	s.path = abs

	if err := verifyFile(path, o.LockTimeout); err != nil {
		s.forget()
		return nil, err
	}
	db, err := s.openFile(path)
	if err != nil {
		s.forget()
		return nil, err
	}
	s.db = db
	if err := guard(path, s.init); err != nil {
		db.Close()
		s.forget()
		return nil, err
	}
	s.ready = make(chan struct{}, 1)
	if o.ReadOnly {
		r, err := wal.OpenReader(logDir(path))
		if err != nil {
			db.Close()
			s.forget()
			return nil, fmt.Errorf("store: write-ahead log: %w", err)
		}
		s.logReader = r
		return s, nil
	}
	if o.KeyWindow != nil {
		s.window = o.KeyWindow(s)
	}
	if err := s.openLog(); err != nil {
		db.Close()
		s.forget()
		return nil, err
	}
	// What the log held past the file is applied before anything else
	// runs, so the file alone answers every read from here on.
	if err := s.applyAtOpen(); err != nil {
		s.wal.l.Close()
		db.Close()
		s.forget()
		return nil, fmt.Errorf("store: applying the write-ahead log: %w", err)
	}
	s.ops = make(chan *op, o.MaxBatch)
	s.writerW.Add(1)
	go s.writer()
	return s, nil
}

func (s *Store) forget() { releasePath(s.path) }

// boltOptions are the store's settings, which Compact uses too: opening
// with another freelist setting would write to the file.
func boltOptions() bolt.Options {
	return bolt.Options{
		// The freelist is rebuilt at Open instead of being written with
		// every commit: with a large backlog, syncing it made each commit
		// rewrite megabytes and throughput fell many times over.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	}
}

// openFile opens and locks the file (see openLocked), mapping bbolt's
// errors onto the store's, and removes the copy a killed compaction left.
func (s *Store) openFile(path string) (*bolt.DB, error) {
	bo := boltOptions()
	if s.opts.ReadOnly {
		// bbolt would write the meta pages of a new file into an empty
		// one (and fail on the read-only descriptor): not a queue either.
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("store: open %s: %w", path, err)
		}
		if fi.Size() == 0 {
			return nil, &CorruptError{What: "file " + path, Err: errors.New("empty: not a queue")}
		}
		bo.ReadOnly = true
	}
	db, err := openBolt(path, bo, s.opts.LockTimeout)
	if err != nil {
		return nil, err
	}
	if s.opts.ReadOnly {
		return db, nil
	}
	removed, err := removeStaleCopy(path)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: remove the copy of a compaction that did not finish: %w", path, err)
	}
	if removed {
		s.log.Info("removed the copy of a compaction that did not finish", "path", path+compactSuffix)
	}
	return db, nil
}

// init creates the buckets of a new file, checks the format of an old one,
// loads the counters and the registry and recovers leases, all in one
// transaction. A format 1 file is migrated first, in transactions of its
// own (see migrate).
func (s *Store) init() error {
	if s.opts.ReadOnly {
		return s.initReadOnly()
	}
	var recovered int
	var old bool
	open := func(tx *bolt.Tx) error {
		if err := initMarker(tx, queueFile, s.path); err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		for _, name := range append(queueBuckets[:len(queueBuckets):len(queueBuckets)], bucketInLog) {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		if raw := meta.Get(keyCounters); raw != nil {
			c, err := decodeCounts(raw)
			if err != nil {
				return &CorruptError{What: "counters", Err: err}
			}
			s.counts = c
		}
		s.clock.anchor(s.now().UnixNano(), s.counts.clock)
		if old = meta.Get(keyFormat)[0] < fnLayoutVersion; old {
			// Leases are recovered once the index they return to exists.
			return nil
		}
		if meta.Get(keyFormat)[0] < formatVersion {
			// Format 2: the same layout; the marker moves so that the
			// records written from now on are never read by a library
			// that would set them aside.
			if err := meta.Put(keyFormat, []byte{formatVersion}); err != nil {
				return err
			}
		}
		if err := s.loadFunctions(tx); err != nil {
			return err
		}
		// The eviction index is trusted only when its build finished and
		// every write since kept it: a store opened without
		// FullDropOldest does not, so it deletes it, and one with it
		// builds it afresh below if it is not whole.
		s.evictOn = s.opts.Full == FullDropOldest && meta.Get(keyEvictable) != nil && tx.Bucket(bucketEvictable) != nil
		if !s.evictOn {
			if err := dropEvictable(tx); err != nil {
				return err
			}
		}
		t := s.newTxn(tx)
		n, err := t.returnLeases(func(int64) bool { return true })
		if err != nil {
			return err
		}
		if err := t.putFunctions(); err != nil {
			return err
		}
		recovered = n
		s.statMu.Lock()
		s.counts = t.c
		s.publishFunctions(t)
		s.statMu.Unlock()
		s.totals.recovered += uint64(n)
		return t.putCounts()
	}
	err := s.db.Update(open)
	if err == nil && old {
		if err = s.migrate(); err == nil {
			err = s.db.Update(open)
		}
	}
	if err == nil && s.opts.Full == FullDropOldest && !s.evictOn {
		began := time.Now()
		if err = s.buildEvictable(); err == nil {
			s.evictOn = true
			s.log.Info("built the eviction index", "path", s.path, "took", time.Since(began))
		}
	}
	if err != nil {
		var ce *CorruptError
		if errors.As(err, &ce) || errors.Is(err, ErrLocked) {
			return err
		}
		return fmt.Errorf("store: open %s: %w", s.path, err)
	}
	if recovered > 0 {
		s.log.Info("returned leases of an earlier process to the queue", "leases", recovered, "path", s.path)
	}
	return nil
}

// initReadOnly checks the format and loads the counters, writing nothing.
func (s *Store) initReadOnly() error {
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := checkQueue(tx, s.path); err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		if err := checkMarker(meta, queueFile, s.path); err != nil {
			return err
		}
		buckets := queueBuckets
		if s.legacy = meta.Get(keyFormat)[0] < fnLayoutVersion; s.legacy {
			// Format 1, or one whose migration was cut short: the calls
			// that need the ready index read the events instead.
			buckets = [][]byte{bucketEvents, bucketPayloads, bucketLeases, bucketCorrupt}
		}
		for _, name := range buckets {
			if tx.Bucket(name) == nil {
				return &CorruptError{What: "file " + s.path, Err: fmt.Errorf("no %s bucket", name)}
			}
		}
		if raw := tx.Bucket(bucketMeta).Get(keyCounters); raw != nil {
			c, err := decodeCounts(raw)
			if err != nil {
				return &CorruptError{What: "counters", Err: err}
			}
			s.counts = c
		}
		s.clock.anchor(s.now().UnixNano(), s.counts.clock)
		if s.legacy {
			s.fns, s.fnNames = map[string]fnInfo{}, map[uint32]string{}
			return nil
		}
		return s.loadFunctions(tx)
	})
	var ce *CorruptError
	if err != nil && !errors.As(err, &ce) {
		return fmt.Errorf("store: open %s: %w", s.path, err)
	}
	return err
}

// Close waits for writes already submitted, stops the writer and releases
// the file. It is idempotent: every call after the first returns ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	// No sender can be mid-send: each holds the read lock while sending.
	if s.ops != nil {
		close(s.ops)
	}
	s.mu.Unlock()
	s.writerW.Wait()
	logErr := s.closeLog()
	// No commit is to come: whoever waits on Changed is told now, and
	// every call after gets a closed channel.
	s.statMu.Lock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	close(s.changed)
	s.statMu.Unlock()
	err := s.db.Close()
	if s.logReader != nil {
		s.logReader.Close()
	}
	s.forget()
	if err == nil {
		err = logErr
	}
	return err
}

// Changed returns a channel that is closed when the next write
// transaction commits (any write: enqueue, lease, ack, cancel, ...), or
// when the store closes. It fires once: a caller waiting for the store to
// drain calls it again after each wake, before it looks, so that no
// commit between the look and the wait is missed. The channel is made
// only when asked for, so a store nobody watches pays nothing.
func (s *Store) Changed() <-chan struct{} {
	s.statMu.Lock()
	defer s.statMu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return s.changed
}

// Ready returns a channel that receives when events become ready: after an
// enqueue, a reschedule, a release or a reclaim. It holds one signal at most;
// a consumer that wakes must look, not count.
func (s *Store) Ready() <-chan struct{} { return s.ready }

// Path returns the absolute path of the file.
func (s *Store) Path() string { return s.path }

// Stats returns counts by state and totals since Open. It reads the ready
// index only from now on: its cost is a few seeks per function with events
// in the index, plus the number of scheduled events.
func (s *Store) Stats() (Stats, error) {
	s.statMu.Lock()
	c, t := s.counts, s.totals
	s.statMu.Unlock()
	st := Stats{
		Events: c.events, Leased: c.leased, Bytes: c.bytes, Corrupt: c.corrupt,
		Enqueued: t.enqueued, LeasesTaken: t.leases, Acked: t.acked, Rescheduled: t.rescheduled,
		Released: t.released, Removed: t.removed, Recovered: t.recovered, Commits: t.commits,
		Cancelled: c.cancelled, Evicted: c.evicted,
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return st, ErrClosed
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		after := orderedTime(s.clock.now())
		if s.legacy {
			var err error
			st.Scheduled, err = legacyScheduled(tx, after)
			return err
		}
		cur := tx.Bucket(bucketFnReady).Cursor()
		for id, ok := firstFunction(cur); ok; id, ok = nextFunction(cur, id) {
			st.Scheduled += countAfter(cur, id, after)
		}
		return nil
	})
	// Events the log holds are counted already, but are in no index
	// yet: they tell their own due times.
	st.Scheduled += s.wal.scheduled(s.clock.now())
	// The counts and the scan are two moments; clamp so they never
	// disagree in a way a reader would notice.
	st.Scheduled = min(st.Scheduled, st.Events-st.Leased)
	st.Ready = max(st.Events-st.Leased-st.Scheduled, 0)
	return st, err
}

// Now returns the queue's time: the time due times, leases and attempt
// times are on. It is the wall clock at Open (or the latest time the file
// recorded, if the wall clock is behind it) moved on by a monotonic clock,
// so stepping the wall clock while the store is open moves nothing that is
// scheduled.
func (s *Store) Now() time.Time { return time.Unix(0, s.clock.now()) }

// NextDue returns the earliest due time of an event waiting in the ready
// index of a function that is not paused, and false when there is none.
// It costs a seek or two per function with events in the index.
func (s *Store) NextDue() (time.Time, bool, error) {
	var due uint64
	var ok bool
	err := s.view(func(tx *bolt.Tx) error {
		if s.legacy {
			due, ok = legacyNextDue(tx)
			return nil
		}
		cur := tx.Bucket(bucketFnReady).Cursor()
		for id, more := firstFunction(cur); more; id, more = nextFunction(cur, id) {
			if s.pausedID(id) {
				continue
			}
			if d, found := firstDue(cur, id); found && (!ok || d < due) {
				due, ok = d, true
			}
		}
		return nil
	})
	if !ok {
		return time.Time{}, false, err
	}
	return time.Unix(0, int64(due^(1<<63))), true, err
}

// pausedID reports whether the function with id is paused, from memory.
func (s *Store) pausedID(id uint32) bool {
	s.statMu.Lock()
	defer s.statMu.Unlock()
	name, ok := s.fnNames[id]
	return ok && s.fns[name].paused
}

func (s *Store) view(fn func(*bolt.Tx) error) error {
	if err := s.flush(); err != nil && !errors.Is(err, ErrClosed) {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return s.db.View(fn)
}

// Get returns the event with sequence number seq, payload included.
func (s *Store) Get(seq uint64) (Event, error) {
	var ev Event
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		ev, err = s.loadEvent(tx, seq)
		return err
	})
	return ev, err
}

// scanChunk bounds each read transaction of Scan: a long read transaction
// would stop bbolt from reusing pages and make the file grow.
const scanChunk = 1000

// Scan calls fn for every event in sequence order, payloads included, in a
// series of short read transactions: events enqueued or removed meanwhile
// may or may not be seen. It stops at the first error fn returns.
func (s *Store) Scan(fn func(Event) error) error {
	return s.scan(0, true, fn)
}

// ScanAfter is Scan starting after the event with sequence number after.
func (s *Store) ScanAfter(after uint64, fn func(Event) error) error {
	return s.scan(after, false, fn)
}

func (s *Store) scan(after uint64, first bool, fn func(Event) error) error {
	for {
		var batch []Event
		err := s.view(func(tx *bolt.Tx) error {
			cur := tx.Bucket(bucketEvents).Cursor()
			k, _ := cur.Seek(seqKey(after))
			if !first && k != nil && binary.BigEndian.Uint64(k) == after {
				k, _ = cur.Next()
			}
			for ; k != nil && len(batch) < scanChunk; k, _ = cur.Next() {
				ev, err := s.loadEvent(tx, binary.BigEndian.Uint64(k))
				if err != nil {
					return err
				}
				batch = append(batch, ev)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, ev := range batch {
			if err := fn(ev); err != nil {
				return err
			}
		}
		if len(batch) < scanChunk {
			return nil
		}
		after, first = batch[len(batch)-1].Seq, false
	}
}

// loadEvent reads and checks one event inside tx.
func (s *Store) loadEvent(tx *bolt.Tx, seq uint64) (Event, error) {
	k := seqKey(seq)
	raw := tx.Bucket(bucketEvents).Get(k)
	if raw == nil {
		return Event{}, fmt.Errorf("%w: %d", ErrNotFound, seq)
	}
	r, err := decodeRecord(raw)
	if err != nil {
		return Event{}, &CorruptError{What: fmt.Sprintf("event %d", seq), Err: err}
	}
	payload, err := s.payloadFrom(tx.Bucket(bucketPayloads).Get(k), func() []byte {
		if inlog := tx.Bucket(bucketInLog); inlog != nil {
			return inlog.Get(k)
		}
		return nil
	}, seq, &r)
	if err != nil {
		return Event{}, err
	}
	return r.event(seq, payload), nil
}

// payloadOf reads the payload of event seq (key k, record r), from the
// file or from the log, and checks it.
func (t *txn) payloadOf(k []byte, seq uint64, r *record) ([]byte, error) {
	return t.s.payloadFrom(t.cPayloads.get(k), func() []byte {
		if t.inlog != nil {
			return t.cInLog.get(k)
		}
		return nil
	}, seq, r)
}

// payloadFrom checks the payload of event seq: p, the file's copy, or,
// when the file has none, the one in the log that ref (looked up only
// then) points to.
func (s *Store) payloadFrom(p []byte, ref func() []byte, seq uint64, r *record) ([]byte, error) {
	if p == nil && r.payloadLen > 0 {
		if ref := ref(); ref != nil {
			return s.logPayload(ref, seq, r)
		}
	}
	return checkPayload(p, seq, r)
}

// checkPayload checks the stored payload p of event seq against its
// record and returns a copy that outlives the transaction.
func checkPayload(p []byte, seq uint64, r *record) ([]byte, error) {
	switch {
	case p == nil && r.payloadLen != 0:
		return nil, &CorruptError{What: fmt.Sprintf("event %d", seq), Err: errors.New("payload missing")}
	case uint32(len(p)) != r.payloadLen:
		return nil, &CorruptError{What: fmt.Sprintf("event %d", seq), Err: fmt.Errorf("payload is %d bytes, record says %d", len(p), r.payloadLen)}
	case checksum(p) != r.payloadCRC:
		return nil, &CorruptError{What: fmt.Sprintf("event %d", seq), Err: errors.New("payload checksum mismatch")}
	}
	if len(p) == 0 {
		return nil, nil
	}
	return append([]byte(nil), p...), nil
}

func (r *record) event(seq uint64, payload []byte) Event {
	return Event{
		Seq: seq, Function: r.function, Qualifier: r.qualifier, Key: r.key, Payload: payload,
		Enqueued: fromUnixNano(r.enqueued), Due: time.Unix(0, r.due), Attempts: int(r.attempts),
		FirstAttempt: fromUnixNano(r.firstAttempt), LastAttempt: fromUnixNano(r.lastAttempt),
		Leased: r.state == stateLeased, LeaseUntil: fromUnixNano(r.leaseUntil), LastError: r.lastErr,
		Priority: r.priority, Cancelled: r.cancelled && r.state == stateLeased,
	}
}

func (r *record) size() int64 {
	return int64(r.payloadLen) + int64(len(r.function)+len(r.qualifier)+len(r.key)) + recordOverhead
}

// LogicalSize is the share of Stats.Bytes an event with these fields takes.
func LogicalSize(e NewEvent) int64 {
	return int64(len(e.Payload)+len(e.Function)+len(e.Qualifier)+len(e.Key)) + recordOverhead
}
