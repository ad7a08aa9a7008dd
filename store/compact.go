package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Compact rewrites the queue file at path without its free pages, into
// path+".compact", syncs it, and renames it over path: a bbolt file never
// shrinks on its own. The file must not be open: Compact takes its lock
// and fails with ErrLocked after lockTimeout (DefaultLockTimeout when
// zero). It returns the sizes before and after.
func Compact(path string, lockTimeout time.Duration) (before, after int64, err error) {
	if lockTimeout <= 0 {
		lockTimeout = DefaultLockTimeout
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, fmt.Errorf("store: compact: %w", err)
	}
	src, _, err := openLocked(path, boltOptions(), lockTimeout)
	if errors.Is(err, berrors.ErrTimeout) {
		return 0, 0, fmt.Errorf("%w: %s (lock not acquired within %v)", ErrLocked, path, lockTimeout)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("store: compact %s: %w", path, err)
	}
	// The lock is held until the copy is renamed over path: whoever waits
	// for it then finds path replaced and opens the copy (see openLocked).
	defer src.Close()
	if compactHook != nil {
		compactHook(path, "locked")
	}
	opts := boltOptions()
	tmp := path + ".compact"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, 0, err
	}
	if err := compactInto(src, tmp, fi.Mode().Perm(), &opts); err != nil {
		os.Remove(tmp)
		return 0, 0, fmt.Errorf("store: compact %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return 0, 0, err
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return 0, 0, err
	}
	fa, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	return fi.Size(), fa.Size(), nil
}

func compactInto(src *bolt.DB, tmp string, mode os.FileMode, opts *bolt.Options) error {
	dst, err := bolt.Open(tmp, mode, opts)
	if err != nil {
		return err
	}
	if err := bolt.Compact(dst, src, 64<<20); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	f, err := os.Open(tmp)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
