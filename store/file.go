package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// fileKind tells the two kinds of file the store owns apart. Each has a
// meta bucket of its own holding a format marker, so that neither is ever
// opened as the other.
type fileKind int

const (
	queueFile fileKind = iota
	keyWindowFile
)

func (k fileKind) String() string {
	if k == keyWindowFile {
		return "key window file"
	}
	return "dispatcher queue"
}

// marker returns the kind's meta bucket and the format it is written in.
func (k fileKind) marker() (bucket []byte, version byte) {
	if k == keyWindowFile {
		return bucketWindowMeta, windowFormatVersion
	}
	return bucketMeta, formatVersion
}

// Paths open in this process, of either kind: a second open of one fails
// at once rather than waiting out the lock timeout on its own flock.
var (
	openMu    sync.Mutex
	openPaths = map[string]bool{}
)

// claimPath registers path as open in this process and returns its
// absolute form; release undoes it.
func claimPath(path string) (abs string, err error) {
	abs, err = filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("store: %w", err)
	}
	openMu.Lock()
	defer openMu.Unlock()
	if openPaths[abs] {
		return "", fmt.Errorf("%w: %s is open in this process", ErrLocked, path)
	}
	openPaths[abs] = true
	return abs, nil
}

func releasePath(abs string) {
	openMu.Lock()
	delete(openPaths, abs)
	openMu.Unlock()
}

// openBolt opens and locks the file (see openLocked) with the store's
// bbolt settings, mapping bbolt's errors onto the store's.
func openBolt(path string, bo bolt.Options, timeout time.Duration) (*bolt.DB, error) {
	db, _, err := openLocked(path, bo, timeout, true)
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("%w: %s (lock not acquired within %v)", ErrLocked, path, timeout)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return nil, &CorruptError{What: "file " + path, Err: fmt.Errorf("not a readable bbolt file: %w", err)}
	default:
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
}

// initMarker writes the format marker of a new (empty) file of kind, or
// checks the marker of an existing one: a bbolt file without it is some
// other file and a *CorruptError, a newer format an error asking for a
// newer library.
func initMarker(tx *bolt.Tx, kind fileKind, path string) error {
	name, version := kind.marker()
	meta := tx.Bucket(name)
	if meta == nil {
		empty := true
		_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
		if !empty {
			return &CorruptError{What: "file " + path, Err: fmt.Errorf("a bbolt file, but not a %s (no %s bucket)", kind, name)}
		}
		var err error
		if meta, err = tx.CreateBucket(name); err != nil {
			return err
		}
		if err := meta.Put(keyFormat, []byte{version}); err != nil {
			return err
		}
	}
	return checkMarker(meta, kind, path)
}

func checkMarker(meta *bolt.Bucket, kind fileKind, path string) error {
	_, version := kind.marker()
	switch f := meta.Get(keyFormat); {
	case len(f) != 1:
		return &CorruptError{What: "format marker", Err: fmt.Errorf("%d bytes, want 1", len(f))}
	case f[0] > version:
		return fmt.Errorf("store: %s has format %d, newer than this library reads (%d): upgrade the library", path, f[0], version)
	}
	return nil
}

// The key window file's layout, besides WindowKeys and WindowExpiry.
var bucketWindowMeta = []byte("filewindow")

const windowFormatVersion = 1

// KeyFile is a key window file: a bbolt file of its own, never a queue's,
// holding the buckets [WindowKeys] and [WindowExpiry] for package
// idempotency's FileWindow. It is opened like a queue (the same lock
// timeout, the same registry of paths open in this process, the same
// pre-check of a damaged file), with a format marker of its own kind.
type KeyFile struct {
	db   *bolt.DB
	path string // absolute
}

// OpenKeyFile opens the key window file at path, creating it (mode 0600)
// if needed. A bbolt file of another kind is refused with a
// *CorruptError; a file open in this process at once, and one held by
// another process beyond lockTimeout, with an error wrapping ErrLocked.
func OpenKeyFile(path string, lockTimeout time.Duration) (*KeyFile, error) {
	if lockTimeout <= 0 {
		lockTimeout = DefaultLockTimeout
	}
	abs, err := claimPath(path)
	if err != nil {
		return nil, err
	}
	db, err := openKeyFile(path, lockTimeout)
	if err != nil {
		releasePath(abs)
		return nil, err
	}
	return &KeyFile{db: db, path: abs}, nil
}

func openKeyFile(path string, lockTimeout time.Duration) (*bolt.DB, error) {
	if err := verifyFile(path, lockTimeout); err != nil {
		return nil, err
	}
	db, err := openBolt(path, boltOptions(), lockTimeout)
	if err != nil {
		return nil, err
	}
	err = guard(path, func() error {
		return db.Update(func(tx *bolt.Tx) error {
			if err := initMarker(tx, keyWindowFile, path); err != nil {
				return err
			}
			for _, n := range []BucketName{WindowKeys, WindowExpiry} {
				if _, err := tx.CreateBucketIfNotExists([]byte(n.name)); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		db.Close()
		var ce *CorruptError
		if errors.As(err, &ce) {
			return nil, err
		}
		return nil, fmt.Errorf("store: open key window file %s: %w", path, err)
	}
	return db, nil
}

// Path returns the absolute path of the file.
func (f *KeyFile) Path() string { return f.path }

// View runs fn in a read transaction.
func (f *KeyFile) View(fn func(*Tx) error) error {
	return f.db.View(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx, kind: keyWindowFile}) })
}

// Update runs fn in a write transaction, committed and synced before it
// returns unless fn fails.
func (f *KeyFile) Update(fn func(*Tx) error) error {
	return f.db.Update(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx, kind: keyWindowFile}) })
}

// Close releases the file. The caller makes sure no transaction runs.
func (f *KeyFile) Close() error {
	err := f.db.Close()
	releasePath(f.path)
	return err
}
