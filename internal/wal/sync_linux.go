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
