//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package wal

import "os"

// lockDir does nothing where flock is not available: the caller (the
// store, which locks its bbolt file) keeps a second writer away.
func lockDir(*os.File) error { return nil }

func unlockDir(*os.File) error { return nil }
