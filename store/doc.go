// Package store is the durable queue under the dispatcher: one bbolt file
// holding events, their payloads, a registry of the functions they are
// for, a ready index per function and leases. It owns the
// file: no other package opens it or sees its *bolt.DB. The packages that
// keep records of their own beside the queue's (dead letters, keys) write
// them through a *Tx that Update, View and the store's transactional calls
// hand them, reaching only the buckets named by a BucketName below, so
// that a letter or a key commits in the transaction that moves its event.
//
// # Layout
//
// Every bucket of the queue file, by owner:
//
//	meta          store      format marker, persisted counts, totals and
//	                         clock, the eviction index's complete mark
//	events        store      event records, by sequence number
//	payloads      store      payloads, by sequence number
//	functions     store      function name → id, paused flag, counts
//	fnready       store      (function id, priority, due time, sequence)
//	                         of events waiting
//	leases        store      sequence → lease expiry of leased events
//	corrupt       store      records set aside as unreadable
//	evictable     store      (priority, sequence) of events waiting, the
//	                         least urgent first; only under FullDropOldest
//	evicted       store      eviction ledger: sequence → what was evicted
//	deadletters   Letters        package deadletter's Bolt sink
//	keys          Keys           package idempotency's Index: key → entry
//	keyexp        KeyExpiry      its expiry index, (expiry, key)
//	shared        SharedOwner    the file's identity towards a shared window
//	sharedpending PendingClaims  shared claims committed, not yet confirmed
//
// A key window file (KeyFile, for idempotency.FileWindow) is another kind
// of file, with a marker of its own so neither opens as the other:
//
//	filewindow    store          format marker
//	sharedkeys    WindowKeys     key → holder, state, expiry
//	sharedkeyexp  WindowExpiry   its expiry index
//
// Both kinds are opened by one routine: the same registry of paths open in
// this process, the same lock timeout, the same pre-check of a damaged
// file and the same format check.
//
// Bucket "events" maps a sequence number (8 bytes, big-endian) to the
// event's metadata in a compact binary record whose first byte is its
// format version. Bucket "payloads" holds the payload under the same key,
// apart, so that leasing and rescheduling rewrite a hundred bytes rather
// than a kilobyte. Bucket "leases" maps the sequence numbers of leased
// events to their lease expiry. Bucket "meta" holds the format version and
// counts persisted with every commit, so that Open never walks the
// backlog. Bucket "corrupt" keeps records that could not be read, out of
// the way of the queue.
//
// Bucket "functions" is the registry: for each function name (the event's
// Function exactly as enqueued, qualifier apart) a small record with a
// checksum: its id (a uint32 from the bucket's sequence, not handed out
// again before the sequence wraps at 2^32), a paused flag, and the events
// it holds, leased and bytes, written once per transaction that changes
// them, as the global counts are, and mirrored in memory from Open on. A
// record is deleted when its function holds no event and is not paused,
// so that producers sending many names cannot grow it without bound.
//
// Bucket "fnready" is the index of events waiting, 21-byte keys: the
// function's id (4 bytes, big-endian), a priority byte, the due time
// (8 bytes, ordered), the sequence number (8). Each function's events are
// thus a range of their own, and a lease reaches the next function with
// one seek instead of walking a backlog. The priority byte is 0x80 minus
// the event's priority (-3 to 3), so the most urgent sort first; priority
// 0 is 0x80, the byte every key had before priorities, so files written
// then keep their order. Within a function a lease takes the events due
// now by priority, then due time, then sequence: it seeks each priority
// in use in turn, and at the first key of one that is not due yet jumps
// to the next, so a function whose urgent events are all scheduled later
// still yields its due ones, at a seek per priority in use (seven at
// most).
//
// # Cancel
//
// Cancel removes an event waiting at once. A leased event it cannot take
// back from its delivery: it sets the cancelled flag in its record, in
// the same transaction, and whatever ends the lease (Reschedule, Release,
// Remove, an expired lease's Reclaim, ReleaseAll, the recovery at Open)
// removes the event instead of returning it; an Ack removes it as always.
// The flag is in the record, so it holds across a crash.
//
// # Eviction
//
// Under Options.Full = FullDropOldest, an enqueue that would pass
// MaxEvents or MaxBytes evicts events waiting (never leased ones), the
// lowest priority first and among equals the lowest sequence number,
// until the batch fits. Bucket "evictable" finds them without walking
// every function's index: 9-byte keys, a priority byte (0x80 plus the
// priority, so the least urgent sort first) and the sequence number,
// exactly the events waiting. Every write that moves an event in or out
// of the ready index moves it there too, but only while the store is
// opened with FullDropOldest: an Open without it deletes the bucket, and
// an Open with it, finding none (or one whose build did not finish),
// builds it in batches from the events before it returns, the last batch
// writing the mark "evictable" in meta. A stale index is thus never
// trusted: the mark is only ever written over a complete build, and every
// Open that will not keep the index up to date removes the mark with it.
// (A library from before eviction would leave both; eviction reads each
// victim's record, so a key such a library left stale is skipped, never
// obeyed.)
//
// Each eviction writes a record to bucket "evicted", the ledger, under
// the event's sequence number: version byte (1), reason (1: full),
// priority, enqueue and eviction times, payload size, function and key,
// and a CRC-32C. The bucket's sequence is its number of records; past
// Options.MaxEvictionRecords the lowest sequence numbers go first.
//
// Eviction is crash-safe because it is part of the enqueue: the events
// chosen, their payloads, index keys and counts, their ledger records,
// the callback's release of their keys (Options.Evicted) and the batch
// itself commit in one transaction, or none of it does. A crash leaves
// either the queue before the enqueue or after it, never an event gone
// without its ledger record, nor a batch written over events still held.
//
// # Format 2 and migration
//
// Format 1 had one ready index, bucket "ready", keyed by due time then
// sequence: a backlog of one function was leased whole before a newer
// event of another. Format 2 has the registry and the per-function index
// instead. Open migrates a format 1 file it opens for writing: it walks
// the events in batches of a few thousand, one transaction each, giving
// each function a registry record and moving each ready event's key from
// "ready" to "fnready" (leased events keep their lease, which Open then
// returns to the new index as it returns any lease). Each batch also
// records the last sequence number it moved. The batch that reaches the
// end writes every function's counts, deletes what is left of "ready" and
// sets the format marker to 2, in one transaction.
//
// A migration killed at any point therefore leaves a format 1 file whose
// events are each in exactly one of the two indexes, and whose registry
// holds ids but no counts to trust: the next Open resumes after the last
// batch that committed, counts the events moved before it again from the
// file, and finishes. No count is ever persisted half done, so none is
// counted twice. A read-only Open of a format 1 file (or of one whose
// migration was cut short) writes nothing: Stats, NextDue and Functions
// then read the events instead of the index.
//
// # Writes
//
// One goroutine owns every write transaction (and every append to the
// write-ahead log, below). Concurrent calls (Enqueue,
// Lease, Ack, Reschedule, Release, Remove, Reclaim, Cancel, SetPaused)
// wait in a channel; the writer takes all that are waiting, applies them
// in one transaction and one fsync, and answers each. A call whose context
// ends before the writer takes it is dropped unwritten. When a shared
// transaction fails, each call in it is run again alone, so one failing
// call cannot fail its neighbours. Each commit closes the channel Changed
// last handed out, if any: a caller draining the queue waits on it
// rather than polling.
//
// # Write-ahead log
//
// A bbolt commit costs two fdatasyncs and a rewrite of every page it
// touches: about 1 ms per commit on a fast disk, and some fifty times the
// payload in bytes written for one event alone. Enqueue is the call that
// waits on it most, so enqueues go to a write-ahead log beside the file
// (directory path+"-wal", package internal/wal: preallocated segments of
// checksummed records) and return after one fdatasync of it; the file
// takes the events later, many at a time.
//
// The writer goroutine still serialises everything. In each round it
// first admits the enqueues it took (Enqueue, and EnqueueUnique with the
// key window given as Options.KeyWindow) against the counts, caps and
// keys as they will be once the round is durable: the file's counts,
// which include every event already logged, and for keys the round's own,
// then those of events only in the log, then the file's (read in one read
// transaction). Admitted enqueues become one log record each, so that a
// batch is all or nothing; the round appends them all and syncs once, and
// only then are the events counted, their keys held in memory, Ready
// signalled and the callers answered. Sequence numbers are given at
// admission, from the same counter the file's transactions use.
//
// Every write transaction of the file (a lease, an ack, a cancel, a
// redrive, any Update) first applies what the log holds: each event's
// record, payload, ready and eviction index entries and registry counts,
// its key held in the key window at its enqueue time, and the log's end
// as the position applied, in bucket meta, all in the same transaction.
// A running dispatcher's leaser therefore sees an event at its next lease,
// which Ready wakes at once. With nobody leasing, the writer applies the
// log a second after its first waiting event, or at once past 16,384
// events or 16 MiB; a read (View, Get, Scan, Functions, NextDue) applies it
// first, so a reader sees every event acknowledged, and Stats counts
// logged events without applying them. Segments wholly below the applied
// position are recycled. Close applies the log, so a file closed cleanly
// holds every event itself.
//
// # Payloads stay in the log
//
// The checkpoint writes each event's record and index entries into the
// file, but not its payload when that is larger than 64 bytes: bucket
// inlog maps the event's sequence number to the payload's position in the
// log, and a lease or a read takes the payload from there (a pread of
// the page cache, almost always) and checks it against the checksum in
// the record, as it checks a payload in the file. A payload is then
// written once, to the log, instead of a second time into bbolt's pages,
// where three 1 KiB payloads fill a 4 KiB page: measured with bench/peers,
// the checkpoint went from about 1,400 bytes written per 1 KiB event to
// about 200.
//
// Segments are recycled only below both the applied position and the
// oldest payload the file still reads from the log (the first key of
// inlog: sequence numbers grow with log positions). So that one event
// scheduled far ahead, or a backlog kept for days, cannot keep the log
// growing, a checkpoint that finds that oldest payload more than 64 MiB
// behind the log's end (or half of Options.MaxBytes, if that is less, but
// never less than 8 MiB) copies the oldest ones into the file, up to 8 MiB
// a transaction, until they lie within half that. Close copies all that are
// left, so that a file closed cleanly still holds every event itself and
// can be copied, checked or opened read-only alone. After a crash the
// file needs its log, as it did for the events not yet applied: Check,
// Salvage and a read-only Open read the payloads there (package wal's
// Reader), and a payload that cannot be read there is reported missing,
// and its event set aside as damaged when leased.
//
// An enqueue that only a transaction can do goes to one, after the log is
// applied there: one that must evict under FullDropOldest, and one whose
// key window is not Options.KeyWindow (a shared window's, whose replay
// could not hold its keys). With Options.NoLog every enqueue does.
//
// Why it is safe:
//   - An event is acknowledged only after the fdatasync of its record.
//     A crash loses at most records never acknowledged: Open replays the
//     log past the applied position, and a record whose checksum fails (a
//     torn write) ends the replay and is reported, never applied, nor is
//     anything after it. The checksum is seeded with the record's position
//     and its segment's nonce, so a stale record of a recycled segment
//     reads as the end too.
//   - The events of a record and the position after it reach the file in
//     one transaction: a crash before its commit leaves the position
//     where it was, and the next Open applies the same records again from
//     there; after it, nothing of them is replayed. So replay is
//     idempotent, and no event is applied twice or half.
//   - A logged event's sequence number is above every one the file has
//     (Open refuses a log whose events are not: a file restored from an
//     older copy beside a newer log), and the counts it took at admission
//     are those the applying transaction persists.
//   - A key held by an event only in the log is seen by every later
//     enqueue: admission reads the log's keys before the file's, and the
//     file's transactions apply the log before anything else.
//   - If an append or a sync fails, what reached the disk is unknown: the
//     round's callers get the error, the log takes nothing more until the
//     store is reopened, and the next transaction records the log's end as
//     applied, so that those records are never replayed.
//   - Format 4 marks a file that may have a log: a library of format 3
//     would open it and never read the log, so it refuses the file
//     instead. Format 5 marks one that may read payloads from it. A file
//     of format 4 or older opens with an empty log. A file copied without
//     its log opens as it is, and its new log begins at the position the
//     file records; the payloads it read from the old log are reported
//     lost at Open, and their events set aside when leased.
//   - A payload in the log lies in a record that was synced before its
//     event was acknowledged, in a segment that is not recycled while the
//     file refers to it; the record's checksum of the payload catches a
//     segment reused or damaged behind the file's back.
//
// A store opened ReadOnly does not read the log: events a killed process
// left only there are not seen until the next Open for writing, which
// applies them.
//
// # Integrity
//
// bbolt trusts its file: it maps it into memory and follows page ids
// unchecked, so a truncated file would fault and a damaged page header
// panic, partly in a goroutine of bbolt's that no caller can recover. Open
// therefore first walks the file with its own reader, through ReadAt: both
// meta pages (magic, version, checksum), the high-water mark against the
// file's size, and every page reached from the root (each bucket, inline
// bucket and overflow page) for its id, flags, count, element bounds and
// key order, no page reached twice. Whatever fails is a *CorruptError, and
// the file is not written. The walk costs about 35 ms for 100,000 events.
//
// Each event record ends with a CRC-32C of itself (record versions 2 and
// 3), as each payload has one in its record. Version 3 adds the priority
// and a flags byte (cancelled) after the state. Records of version 1,
// written before checksums, still read, unchecked; those of versions 1 and
// 2 read as priority 0. A record or payload that fails its checksum is set
// aside into the corrupt bucket at its next lease and counted in
// Stats.Corrupt, so that a flipped bit never sends an event to another
// function.
//
// Check reads a file the same way, going on past damage, and also checks
// every record, payload, index, registry record and counter; Salvage
// copies what can be read into a new file, of the current format whatever
// the source's. Both work on files Open refuses, and never write
// to them. When the tree itself is cut off (a truncated file whose root
// page is gone), SalvageWith's ScanPages also reads the pages no tree
// reaches and takes the event records that prove themselves (version 2,
// checksum and payload both good). It is opt-in because a freed page can
// still hold events already delivered: those would be sent again.
//
// # Recovery
//
// Open holds bbolt's file lock for the life of the Store, so every lease
// found at Open belongs to a process that is gone: each returns to the ready
// index at its old place, with its attempts kept, except that of an event
// cancelled while leased, which is removed.
package store
