package wal

import (
	"os"
	"syscall"
)

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
