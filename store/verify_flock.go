//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package store

import (
	"os"
	"syscall"
)

// lockShared tries, without waiting, to take a shared lock on f, which
// bbolt's exclusive lock excludes: false means another process has the file
// open for writing. Closing f releases the lock.
func lockShared(f *os.File) bool {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB) == nil
}
