package wal

import (
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dropCache evicts f's pages from the page cache; they must be clean
// (synced), as a spare's are. Linux caches a file in folios of up to
// the size of the writes and reads that brought it in, and a write
// dirties, and writeback writes, whole folios: a segment reused with
// the folios of a busy life (64 producers' 35 KB rounds, a replay's
// readahead) made each 1 KiB append of one producer count 8,400 bytes
// written in /proc/self/io, against 4,096 in pages brought in afresh.
func dropCache(f *os.File) {
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// readRandom turns readahead off for reads through f: a payload read
// back would otherwise bring in the pages after it, where the writer
// appends next, as large folios (see dropCache).
func readRandom(f *os.File) {
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM)
}

// fdatasync flushes f's data and only the metadata needed to read it back
// (its size, its block map), not its times: on a preallocated segment an
// overwrite changes neither, so ext4 and xfs write the data and flush the
// device cache once, without a journal commit.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}

// preallocate gives f its size blocks without writing them: reads of them
// return zeros, the clean end of a segment. Zero-filling wrote every
// segment in full once, a 4 MiB write for each new segment, which on a
// young log or one never recycled is most of what the log writes; the
// first write into each block then also records that the block is
// written (a journal entry, which the fdatasync that follows carries).
// It reports false where the file system cannot, for the caller to fill.
func preallocate(f *os.File, size int64) (bool, error) {
	for {
		err := syscall.Fallocate(int(f.Fd()), 0, 0, size)
		switch err {
		case nil:
			return true, nil
		case syscall.EINTR:
			continue
		case syscall.EOPNOTSUPP, syscall.ENOSYS:
			return false, nil
		}
		return false, err
	}
}

// writtenPrefix returns how far from its start every block of f has been
// written: up to the first hole, or the first extent fallocate left
// unwritten, or size. A write into an unwritten extent converts it, a
// change of the block map that the next fdatasync commits to the
// journal. Where the file system cannot say (no FIEMAP), it returns size.
func writtenPrefix(f *os.File, size int64) int64 {
	const (
		fsIocFiemap     = 0xC020660B // _IOWR('f', 11, struct fiemap)
		extentLast      = 0x1
		extentUnwritten = 0x800
		count           = 32
	)
	type extent struct {
		logical, physical, length uint64
		_                         [2]uint64
		flags                     uint32
		_                         [3]uint32
	}
	var fm struct {
		start, length             uint64
		flags, mapped, count, res uint32
		extents                   [count]extent
	}
	done := int64(0)
	for done < size {
		fm.start, fm.length, fm.flags, fm.mapped, fm.count = uint64(done), uint64(size-done), 0, 0, count
		_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), fsIocFiemap, uintptr(unsafe.Pointer(&fm)))
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			return size
		}
		if fm.mapped == 0 {
			return done // a hole to the end
		}
		from := done
		for _, e := range fm.extents[:fm.mapped] {
			if int64(e.logical) > done || e.flags&extentUnwritten != 0 {
				return done
			}
			done = int64(e.logical + e.length)
			if e.flags&extentLast != 0 {
				return min(done, size)
			}
		}
		if done <= from {
			return from // no progress: an answer not understood
		}
	}
	return size
}
