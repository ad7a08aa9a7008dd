// Package wal is a write-ahead log: records appended to preallocated
// segment files in a directory, made durable by one fdatasync per Sync,
// read back by Replay after a restart, and recycled once the caller has
// moved them elsewhere. It knows nothing of what the records hold.
//
// A session is: Open, Replay from the position the caller recorded last
// (zero at first), then Append and Sync as records come, Recycle as the
// caller records later positions, and Close.
//
// # Positions and segments
//
// A Position is a byte offset in the log's stream since its creation. A
// segment file is named by its base position, fmt.Sprintf("%016x.wal",
// base), and holds the positions from its base to its base plus its size;
// the next segment's base is that sum, so a position names one byte of one
// file. Segments are Options.SegmentSize bytes, except one made for a
// record too large for that, sized to fit it.
//
// A segment starts with a HeaderSize-byte header: the magic "LDWAL\x00",
// a format version, the segment's size, its base, a nonce and a CRC-32C of
// the header. Frames follow, each [u32 length][u32 CRC-32C][data]: a
// record (length 1 to MaxRecord), or a mark, whose length field holds a
// kind instead:
//
//	next   the segment ends here; the stream goes on at the next one
//	epoch  8 bytes of data: a new nonce for the frames after it
//	close  Close was called here: a clean end
//	pad    the stream goes on at the next 4096-byte boundary of the file
//
// The log writes format version 2. It reads version 1 too, the format
// before pad marks: a version 1 segment holds none (one that does is a
// *CorruptError), and the writer, going on in one after Replay, writes
// none there; its next segment is of version 2. A newer version is
// refused (a *CorruptError): it is a newer library's file.
//
// Frames never span segments, and every frame leaves room after it for a
// next mark, so the writer can always end a segment. A frame's checksum
// covers the nonce in force where it lies, its position, its length field
// and its data: a frame reads as valid only at the position, and in the
// life of the segment, it was written for.
//
// # Pad marks
//
// An Append ends what it writes with a pad mark when the stream's end
// after its last record is not at a 4096-byte boundary of the segment
// file, the mark fits before that boundary, a next mark fits after it
// (every frame leaves room for one), and the page after the boundary has
// been written before in this file (see below). The next frame then goes
// at the boundary, and the bytes between the mark and the boundary are not
// written at all; the end Append returns, End and Tail.End are then the
// boundary. Replay, on a valid pad mark, goes on at the boundary.
//
// Why: an fdatasync writes whole pages. Without pad marks, the first bytes
// of each Append land in the page the one before ended in, which its Sync
// had just written: that page is dirtied and written again. With one
// producer of 1.1 KB events, an Append and a Sync each
// (BenchmarkAppendSyncEvent, ext4), that was 1.27 pages per event: 5,200
// bytes of /proc/self/io write_bytes, 5,370 bytes written by the device;
// with pad marks, 4,100 and 4,280.
//
// Not where the page after the boundary was never written, though: a
// segment made with fallocate is "unwritten" extents, and the first write
// into each block converts it, which the next fdatasync commits to the
// journal. Without pad marks an Append mostly lands in the block the one
// before converted; with them every Append would convert one. Measured on
// new segments (BenchmarkAppendSyncEventFresh), pad marks there took the
// device's writes from 6,470 to 8,200 bytes and from 2.3 to 3.0 requests
// per event, and made a Sync 1.7 to 2 times as slow. So the writer asks
// the file system (FIEMAP) how far a segment's blocks are written when it
// enters it, counts what it writes itself, and pads only short of that: in
// a segment reused from a spare, written in its previous life, and not in
// a new one (there it writes as format version 1 did). Where the file
// system cannot tell, it pads.
//
// The cost is room: an Append that pads takes whole pages, so a 4 MiB
// segment holds about 1,000 events of one producer rather than 3,800, and
// the log is that much larger for the same records. An Append of many
// records wastes at most a page.
//
// A pad mark is a frame like the others: its checksum covers the nonce,
// its position and its kind, so it is valid only where, and in the life
// of the segment, it was written, and Replay jumps only over bytes the
// writer jumped over. What those bytes hold (zeros, a previous life's
// frames, what a crashed session wrote) is never read as frames.
//
// # The end of the log
//
// Replay stops at the first frame that is not valid, or at a clean end: a
// zeroed frame (the tail of a new segment) or a close mark. It never skips
// a bad frame, so records are never returned with a hole before them. A
// bit flipped in the middle of the log therefore ends it there, like a
// torn tail: Tail reports both alike, with the offset and the reason, and
// the next Append writes over what follows.
//
// What lies past the end may still hold frames valid under the segment's
// nonce: writes of one Append reach the disk in no particular order, so a
// crash can keep a record and lose the one before it; and an Append that
// filled a segment may have written records into the next one (its next
// mark lost). Were the writer to continue under the same nonce, one of
// these could one day line up with the new records and be read as theirs.
// So the first frame written after Replay is an epoch mark with a new
// random nonce, and the segments past the end get a new nonce before any
// use: the one where the next segment goes at once (it becomes the next
// segment), the others as spares. For the same reason a segment's header is
// written only while the segment is not part of the log: when it is
// prepared (see below), synced before it can be entered. A bad header is
// thus damage, never a crash, and is reported as a *CorruptError.
//
// Replay reads the segment holding its from position from the first
// frame, because the nonce in force at from depends on the epoch marks
// before it; it delivers the records at or after from.
//
// # Preparing and recycling segments
//
// A segment is ready before the writer needs it: a goroutine of the Log
// (joined by Close) prepares the next one as soon as the writer enters a
// segment, either by reusing a spare (a new header with the base and a new
// nonce, fdatasync, rename to the segment's name, directory fsync) or by
// making a new file under a temporary name: given its full size (see "One
// flush per Sync"), its header written, fsync, rename, directory fsync.
// The writer only prepares one itself for a record larger than a segment,
// or when the preparer failed (a full disk): then Append waits for it.
//
// Recycle(upTo) retires the segments whose positions all lie below upTo
// (never the one being written): each becomes a spare, renamed
// "%016x.spare", or is removed when four are held already; one directory
// fsync covers them all. A spare keeps its old frames: under its next
// base and nonce they fail their checksums and read as its end. This
// differs from renaming a recycled segment straight to a future base: the
// base a spare will get is only known when the writer needs it (after a
// record too large for a segment, the next base moves), so the header is
// written then, in the background.
//
// # Crash safety
//
// A record is acknowledged only once Sync has returned, and Sync returns
// after fdatasync of every segment written since the previous Sync. The
// writer writes only past the last record, so a crash (or a failed write)
// can damage only what was written after the last successful Sync:
// records not yet acknowledged. Replay finds them cut by a checksum that
// fails, or by a zeroed frame, and stops before them; the frames that
// survived past that point are made unreadable as described above. Each
// segment a record lies in is synced, named and in a synced directory
// before the mark that leads to it can be.
//
// The checksums catch what a crash can leave. A torn record fails its
// CRC-32C (a false match has odds of 2^-32 per crash). A frame left from a
// segment's previous life, before it was recycled, was written under
// another nonce and another base, and a frame copied to another offset
// carries another position: neither passes. This matters more with pad
// marks, as Appends in both lives start at page boundaries: old frames
// line up with new ones far more often. A frame past a torn tail,
// left by the session that crashed, pad marks included, was written under
// the nonce the next session leaves with its epoch mark. After a pad mark,
// the frame at the boundary is checked like any: a torn one there ends
// the log at the boundary, and the next session writes its epoch mark
// there.
//
// The exceptions are those of every log on a file. A device that
// acknowledges a cache flush it did not do, or a file system mounted
// without barriers, may lose acknowledged records. The page holding the
// last acknowledged bytes is written again by the next Append (with the
// same bytes there) when the Append before did not end with a pad mark: in
// a new segment, within 8 bytes of a page boundary, in a segment's last
// page, or in a version 1 segment; a device that scrambles a sector in
// flight on power loss, rather than leaving it old or new, could damage
// acknowledged records in it. A bit flipped on the device in acknowledged
// records ends the log there, as said above.
//
// # One flush per Sync
//
// Segments never grow: a new one is given its full size when it is made,
// with fallocate on Linux, or, where the file system refuses it and on
// other systems, by writing zeros a page at a time. Either way the part
// not yet written reads as zeros, the clean end. A write then changes no
// file size (an append would), and fdatasync, unlike fsync, does not
// persist times. Once a block has been written, later writes to it are
// plain overwrites: in a segment reused from a spare, the steady state
// once checkpoints recycle, fdatasync on ext4 and xfs writes the dirty
// data pages and flushes the device cache once, with no journal commit. A
// segment fresh from fallocate is made of "unwritten" extents: the first
// write into each block converts it, a change of the block map that the
// next fdatasync commits to the journal (more writes; on ext4, measured,
// still about one cache flush per Sync). Zero-filling would spare that,
// but at the price of writing every new segment in full once, which on a
// young log, or one never recycled, was most of what the log wrote. A Sync
// costs one flush, two when an Append crossed into a new segment.
//
// # Reading records back
//
// AppendAt tells where each record went; ReadAt reads any range of the
// stream back from the segments the log holds, so that a caller may leave
// a record's bytes in the log and keep only its position: it then passes
// Recycle a position no higher than the oldest it still reads. ReadAt
// checks no checksum (the caller keeps its own). It opens segments
// read-only as they are first read and keeps them open until they are
// recycled or the log closes, under a lock of its own: a read never waits
// for an Append or a Sync.
//
// OpenReader reads the same way without opening the log: no lock, no
// replay, nothing written, for a tool or a process reading a log another
// process writes. It lists the directory again when asked for a position
// past the segments it knows. It may read a segment the writer has since
// recycled, and reused: the caller's checksum tells.
//
// # Concurrency and errors
//
// One writer: the caller orders Append and Sync (the store's goroutine
// batches concurrent callers into one Append and one Sync). Every method
// locks the Log, so End, Size, Recycle and ReadAt may come from another
// goroutine.
// After a failed write or fdatasync the Log refuses Append and Sync: the
// kernel may have dropped the pages it could not write, so no later
// fdatasync could vouch for them; Close and Open again, and Replay says
// what is there. Open locks the directory (flock) against a second Log.
package wal
