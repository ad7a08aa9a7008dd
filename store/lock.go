package store

import (
	"errors"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Test hooks, nil outside tests. openedHook runs once Open (or Compact) has
// a descriptor of the file and is about to wait for its lock; compactHook
// runs at each stage of a compaction ("locked", "copying" after each
// intermediate commit of the copy, "copied" before the rename).
var (
	openedHook  func(path string)
	compactHook func(path, stage string)
)

// openLocked opens the bbolt file at path and takes its lock (shared when
// o.ReadOnly), then checks that the file it locked is still the one at
// path. A compaction renames its copy over path while it holds the old
// file's lock, so whoever was waiting for that lock wakes up holding a file
// that is no longer reachable: whatever it wrote would be lost. In that
// case it lets go and opens path again, for as long as timeout allows.
// It returns the file's details as of the lock. Unless create is set, a
// missing file is an error rather than a new, empty queue.
func openLocked(path string, o bolt.Options, timeout time.Duration, create bool) (*bolt.DB, os.FileInfo, error) {
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, nil, berrors.ErrTimeout
		}
		var f *os.File
		o.Timeout = left
		o.OpenFile = func(name string, flag int, perm os.FileMode) (*os.File, error) {
			if !create {
				flag &^= os.O_CREATE
			}
			file, err := os.OpenFile(name, flag, perm)
			if err == nil {
				f = file
				if openedHook != nil {
					openedHook(name)
				}
			}
			return file, err
		}
		db, err := boltOpen(path, &o)
		if err != nil {
			return nil, nil, err
		}
		held, err := f.Stat()
		if err != nil {
			db.Close()
			return nil, nil, err
		}
		now, err := os.Stat(path)
		switch {
		case err == nil && os.SameFile(held, now):
			return db, held, nil
		case err != nil && !errors.Is(err, os.ErrNotExist):
			db.Close()
			return nil, nil, err
		}
		// Replaced (or removed) while we waited: what we hold is stale.
		if err := db.Close(); err != nil {
			return nil, nil, fmt.Errorf("close replaced file: %w", err)
		}
	}
}

// compactSuffix names the copy a compaction writes beside the file.
const compactSuffix = ".compact"

// removeStaleCopy removes the copy left by a compaction that was killed
// before its rename. The caller holds the exclusive lock of the file now at
// path, so no compaction of it is running: each holds that lock from
// before it creates the copy until after the rename.
func removeStaleCopy(path string) (bool, error) {
	err := os.Remove(path + compactSuffix)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	}
	return false, err
}
