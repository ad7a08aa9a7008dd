package wal

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkAppendSync is Enqueue's cost in the log: one 1 KiB record
// appended and synced per op.
func BenchmarkAppendSync(b *testing.B) { benchAppendSync(b, 1, 1024, false) }

// BenchmarkAppendSync64 is a batch of concurrent Enqueues sharing one
// append and one sync: 64 records of 1 KiB per op.
func BenchmarkAppendSync64(b *testing.B) { benchAppendSync(b, 64, 1024, false) }

// BenchmarkAppendSyncEvent is one producer's event as the store logs it,
// about 1.1 KB, appended and synced per op: its io-B/op is the bytes an
// event costs the page cache (and so, at the next flush, the disk).
func BenchmarkAppendSyncEvent(b *testing.B) { benchAppendSync(b, 1, 1100, false) }

// BenchmarkAppendSyncEventFresh is BenchmarkAppendSyncEvent in the first
// segments of a log, made by fallocate: the first write into each of
// their blocks converts it (a journal commit at the next fdatasync).
func BenchmarkAppendSyncEventFresh(b *testing.B) { benchAppendSync(b, 1, 1100, true) }

// benchAppendSync runs Append and Sync with per records of size bytes each,
// recycling every half segment as a frequent enough checkpoint would, so
// that segments are reused as in a steady state rather than created:
// unless fresh, what it measures follows three segments' worth of such
// appends, not timed. Besides the time it reports, per op:
//
//	io-B       the bytes this process dirtied for writing, as the kernel
//	           counts them (/proc/self/io write_bytes): whole folios, so
//	           far more than is written where the page cache uses large
//	           folios (ext4 since Linux 6.16)
//	dev-B      the bytes the device holding the log was asked to write,
//	           journal included (and any other process's writes)
//	dev-writes its write requests
//	flushes    its cache flushes: one per Sync is the aim
func benchAppendSync(b *testing.B, per, size int, fresh bool) {
	dir := b.TempDir()
	l, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Replay(0, func(Position, []byte) error { return nil }); err != nil {
		b.Fatal(err)
	}
	recs := make([][]byte, per)
	for i := range recs {
		recs[i] = make([]byte, size)
		recs[i][0] = byte(i) // not all zeros, as a record never is
	}
	b.SetBytes(int64(per * size))
	var recycled Position
	round := func() {
		if _, _, err := l.Append(recs...); err != nil {
			b.Fatal(err)
		}
		if err := l.Sync(); err != nil {
			b.Fatal(err)
		}
		if l.End()-recycled > DefaultSegmentSize/2 {
			recycled = l.End()
			if err := l.Recycle(recycled); err != nil {
				b.Fatal(err)
			}
		}
	}
	for !fresh && l.End() < 3*DefaultSegmentSize {
		round()
	}
	before := writeBytes()
	devBytes, devWrites, devFlushes, devOK := devStat(dir)
	n := 0
	for b.Loop() {
		round()
		n++
	}
	if after := writeBytes(); before >= 0 && after >= 0 {
		b.ReportMetric(float64(after-before)/float64(n), "io-B/op")
	}
	if bytes, writes, flushes, ok := devStat(dir); devOK && ok {
		b.ReportMetric(float64(bytes-devBytes)/float64(n), "dev-B/op")
		b.ReportMetric(float64(writes-devWrites)/float64(n), "dev-writes/op")
		b.ReportMetric(float64(flushes-devFlushes)/float64(n), "flushes/op")
	}
}

// writeBytes returns write_bytes from /proc/self/io, or -1 where there is
// none.
func writeBytes() int64 {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "write_bytes: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}
