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
// shrinks on its own. The copy keeps the file's owner, group and mode, and
// its pages are packed as full as the store packs them. Compact takes the
// file's lock and fails with ErrLocked after lockTimeout
// (DefaultLockTimeout when zero); it keeps the lock until the copy is in
// place, and an Open waiting meanwhile opens the copy. A copy left by a
// compaction that was killed is removed first. A file that is not a queue
// is refused with a *CorruptError and left as it is. It returns the sizes
// before and after.
func Compact(path string, lockTimeout time.Duration) (before, after int64, err error) {
	return CompactWith(path, CompactOptions{LockTimeout: lockTimeout})
}

// CompactOptions are the choices of CompactWith.
type CompactOptions struct {
	// LockTimeout is Compact's lockTimeout.
	LockTimeout time.Duration
	// Progress, when set, is called with the number of keys copied so far
	// every compactProgressEvery keys, and once more with the total when
	// the copy is complete, so that a tool can show that a compaction of
	// a large file is moving. It runs on the copying goroutine, with the
	// file locked: it should return quickly.
	Progress func(copied int64)
}

// compactProgressEvery is how many keys the copy takes between two calls
// of CompactOptions.Progress.
var compactProgressEvery int64 = 1000

// CompactWith is Compact with options.
func CompactWith(path string, o CompactOptions) (before, after int64, err error) {
	lockTimeout := o.LockTimeout
	if lockTimeout <= 0 {
		lockTimeout = DefaultLockTimeout
	}
	// Opening read-write creates a missing file and initialises an empty
	// one: neither is a queue to compact.
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, fmt.Errorf("store: compact: %w", err)
	}
	if fi.Size() == 0 {
		return 0, 0, &CorruptError{What: "file " + path, Err: errors.New("empty: not a queue")}
	}
	// bbolt faults on a damaged file: refuse it as Open does, typed.
	if err := verifyFile(path, lockTimeout); err != nil {
		return 0, 0, err
	}
	src, held, err := openLocked(path, boltOptions(), lockTimeout, false)
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return 0, 0, fmt.Errorf("%w: %s (lock not acquired within %v)", ErrLocked, path, lockTimeout)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return 0, 0, &CorruptError{What: "file " + path, Err: fmt.Errorf("not a readable bbolt file: %w", err)}
	case err != nil:
		return 0, 0, fmt.Errorf("store: compact %s: %w", path, err)
	}
	// The lock is held until the copy is renamed over path: whoever waits
	// for it then finds path replaced and opens the copy (see openLocked).
	defer src.Close()
	if compactHook != nil {
		compactHook(path, "locked")
	}
	if err := src.View(func(tx *bolt.Tx) error { return checkQueue(tx, path) }); err != nil {
		return 0, 0, err
	}
	tmp := path + compactSuffix
	if _, err := removeStaleCopy(path); err != nil {
		return 0, 0, fmt.Errorf("store: compact %s: %w", path, err)
	}
	if err := compactInto(src, tmp, held, o.Progress); err != nil {
		os.Remove(tmp)
		return 0, 0, fmt.Errorf("store: compact %s: %w", path, err)
	}
	if compactHook != nil {
		compactHook(path, "copied")
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
	return held.Size(), fa.Size(), nil
}

// checkQueue refuses a bbolt file that is not a dispatcher queue.
func checkQueue(tx *bolt.Tx, path string) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return &CorruptError{What: "file " + path, Err: errors.New("a bbolt file, but not a dispatcher queue (no meta bucket)")}
	}
	if f := meta.Get(keyFormat); len(f) != 1 {
		return &CorruptError{What: "format marker", Err: fmt.Errorf("%d bytes, want 1", len(f))}
	}
	return nil
}

// compactInto copies src into a new file tmp with the owner, group and
// mode of held, and syncs it.
func compactInto(src *bolt.DB, tmp string, held os.FileInfo, progress func(int64)) error {
	opts := boltOptions()
	dst, err := bolt.Open(tmp, held.Mode().Perm(), &opts)
	if err != nil {
		return err
	}
	size, err := copyDB(dst, src, tmp, progress)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	// bbolt grows a file ahead of its data (by up to 16 MiB); the copy
	// needs none of that room, and keeping it could make the copy the
	// larger file. bbolt grows it again when it needs to.
	err = f.Truncate(size)
	if err == nil {
		// Created with the umask applied and owned by whoever compacts:
		// root compacting a service's file must not take it from the
		// service.
		err = f.Chmod(held.Mode().Perm())
	}
	if err == nil {
		err = keepOwner(f, held)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// compactTxBytes bounds what one transaction of the copy holds in memory.
var compactTxBytes int64 = 64 << 20

// fillPercent is how full the copy packs a top-level bucket's pages: as
// full as the writer packs them (see newTxn), so that the writes after a
// compaction do not split every page. Buckets other packages keep get
// full pages: compaction writes them in key order, as bbolt.Compact does.
func fillPercent(name []byte) float64 {
	if string(name) == string(bucketEvents) {
		return eventsFill
	}
	return 1.0
}

// compactCopier copies one bbolt file into another in key order, in transactions
// of at most compactTxBytes.
type compactCopier struct {
	dst      *bolt.DB
	tx       *bolt.Tx
	size     int64
	path     string // for the hook
	keys     int64  // copied so far, for progress
	progress func(copied int64)
}

// copyDB copies every bucket of src into dst and returns the size of dst's
// data: its high-water mark.
func copyDB(dst, src *bolt.DB, path string, progress func(int64)) (int64, error) {
	c := &compactCopier{dst: dst, path: path, progress: progress}
	var err error
	if c.tx, err = dst.Begin(true); err != nil {
		return 0, err
	}
	defer func() {
		if c.tx != nil {
			_ = c.tx.Rollback()
		}
	}()
	err = src.View(func(stx *bolt.Tx) error {
		return stx.ForEach(func(name []byte, b *bolt.Bucket) error {
			nb, err := c.tx.CreateBucket(name)
			if err != nil {
				return err
			}
			if err := nb.SetSequence(b.Sequence()); err != nil {
				return err
			}
			return c.copyBucket(b, [][]byte{name})
		})
	})
	if err != nil {
		return 0, err
	}
	err = c.tx.Commit()
	c.tx = nil
	if err != nil {
		return 0, err
	}
	if c.progress != nil {
		c.progress(c.keys)
	}
	// Pages are allocated as the transaction commits: only now is the
	// high-water mark known.
	var size int64
	err = dst.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil })
	return size, err
}

// bucket finds the copy of the bucket at path in the current transaction.
func (c *compactCopier) bucket(path [][]byte) *bolt.Bucket {
	b := c.tx.Bucket(path[0])
	b.FillPercent = fillPercent(path[0])
	for _, k := range path[1:] {
		b = b.Bucket(k)
		b.FillPercent = 1.0
	}
	return b
}

// room commits the transaction if n more bytes would take it past
// compactTxBytes. The source's keys and values stay valid across the
// commit: its read transaction is open until the copy ends.
func (c *compactCopier) room(n int) error {
	if c.size+int64(n) <= compactTxBytes || c.size == 0 {
		c.size += int64(n)
		return nil
	}
	if err := c.tx.Commit(); err != nil {
		c.tx = nil
		return err
	}
	if compactHook != nil {
		compactHook(c.path, "copying")
	}
	var err error
	if c.tx, err = c.dst.Begin(true); err != nil {
		return err
	}
	c.size = int64(n)
	return nil
}

func (c *compactCopier) copyBucket(src *bolt.Bucket, path [][]byte) error {
	cur := src.Cursor()
	for k, v := cur.First(); k != nil; k, v = cur.Next() {
		if err := c.room(len(k) + len(v)); err != nil {
			return err
		}
		c.keys++
		if c.progress != nil && c.keys%compactProgressEvery == 0 {
			c.progress(c.keys)
		}
		dst := c.bucket(path)
		if v != nil {
			if err := dst.Put(k, v); err != nil {
				return err
			}
			continue
		}
		sub := src.Bucket(k)
		nb, err := dst.CreateBucket(k)
		if err != nil {
			return err
		}
		if err := nb.SetSequence(sub.Sequence()); err != nil {
			return err
		}
		if err := c.copyBucket(sub, append(path[:len(path):len(path)], k)); err != nil {
			return err
		}
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
