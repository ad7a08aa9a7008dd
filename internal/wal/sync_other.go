//go:build !linux

package wal

import "os"

// fdatasync falls back to a full fsync where the standard library has no
// fdatasync (on darwin, os.File.Sync asks for F_FULLFSYNC).
func fdatasync(f *os.File) error { return f.Sync() }

// dropCache does nothing where the page cache cannot be told.
func dropCache(*os.File) {}

// readRandom does nothing where readahead cannot be turned off.
func readRandom(*os.File) {}

// preallocate reports that the caller must fill the file itself.
func preallocate(*os.File, int64) (bool, error) { return false, nil }

// writtenPrefix reports every block written: files are filled, not
// preallocated.
func writtenPrefix(_ *os.File, size int64) int64 { return size }
