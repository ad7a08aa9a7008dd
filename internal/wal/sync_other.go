//go:build !linux

package wal

import "os"

// fdatasync falls back to a full fsync where the standard library has no
// fdatasync (on darwin, os.File.Sync asks for F_FULLFSYNC).
func fdatasync(f *os.File) error { return f.Sync() }

// preallocate reports that the caller must fill the file itself.
func preallocate(*os.File, int64) (bool, error) { return false, nil }
