//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package wal

import (
	"errors"
	"os"
	"syscall"
)

// lockDir takes an exclusive, non-blocking flock on the open directory d:
// two writers on one log would interleave records. The kernel lets go of
// it when the process dies, so a crash never leaves the log locked.
func lockDir(d *os.File) error {
	for {
		err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EWOULDBLOCK):
			return ErrLocked
		case err != syscall.EINTR:
			return err
		}
	}
}

// unlockDir lets go of the lock before the directory is closed. Closing
// alone is not enough: a process forked at that moment (exec'ing a
// command, say) shares the open file description, and with it the lock,
// until its exec closes it, so an Open right after Close could fail.
func unlockDir(d *os.File) error {
	for {
		err := syscall.Flock(int(d.Fd()), syscall.LOCK_UN)
		if err != syscall.EINTR {
			return err
		}
	}
}
