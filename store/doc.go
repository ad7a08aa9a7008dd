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
// One goroutine owns every write transaction. Concurrent calls (Enqueue,
// Lease, Ack, Reschedule, Release, Remove, Reclaim, Cancel, SetPaused)
// wait in a channel; the writer takes all that are waiting, applies them
// in one transaction and one fsync, and answers each. A call whose context
// ends before the writer takes it is dropped unwritten. When a shared
// transaction fails, each call in it is run again alone, so one failing
// call cannot fail its neighbours. Each commit closes the channel Changed
// last handed out, if any: a caller draining the queue waits on it
// rather than polling.
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
