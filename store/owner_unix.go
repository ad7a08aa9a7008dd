//go:build unix

package store

import (
	"os"
	"syscall"
)

// keepOwner gives f the owner and group of held, when they differ.
func keepOwner(f *os.File, held os.FileInfo) error {
	want, ok := held.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if have, ok := fi.Sys().(*syscall.Stat_t); ok && have.Uid == want.Uid && have.Gid == want.Gid {
		return nil
	}
	return f.Chown(int(want.Uid), int(want.Gid))
}
