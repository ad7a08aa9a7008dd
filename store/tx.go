package store

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Tx is one transaction on a file the store owns, handed to the callbacks
// of Update, View, Insert, Remove and AckAndLease so that another
// package's record (a dead letter, a key) commits together with the
// queue's change. It gives out only the buckets named by a [BucketName];
// the queue's own buckets are reached through the Store's methods alone.
// A Tx is valid only inside the callback it was handed to.
type Tx struct {
	tx   *bolt.Tx
	kind fileKind
}

// BucketName names a bucket that a package other than store keeps in a
// file the store owns. Only the values below exist: every bucket of every
// file is listed in the package doc.
type BucketName struct {
	name string
	kind fileKind
}

// String returns the bucket's name in the file.
func (n BucketName) String() string { return n.name }

// The buckets kept by other packages, in the queue file and in the key
// window file. The names are those the files have always had.
var (
	// Letters holds dead letters by event id (package deadletter).
	Letters = BucketName{"deadletters", queueFile}
	// Keys and KeyExpiry are the queue's key window and its expiry index
	// (package idempotency's Index).
	Keys      = BucketName{"keys", queueFile}
	KeyExpiry = BucketName{"keyexp", queueFile}
	// SharedOwner holds the file's identity towards a shared key window,
	// and PendingClaims the claims not yet confirmed there (the shared-key
	// protocol).
	SharedOwner   = BucketName{"shared", queueFile}
	PendingClaims = BucketName{"sharedpending", queueFile}
	// WindowKeys and WindowExpiry are the keys of a key window file and
	// their expiry index (package idempotency's FileWindow).
	WindowKeys   = BucketName{"sharedkeys", keyWindowFile}
	WindowExpiry = BucketName{"sharedkeyexp", keyWindowFile}
)

// MaxKeySize is the longest key a bucket takes.
const MaxKeySize = bolt.MaxKeySize

// Writable reports whether tx may write.
func (t *Tx) Writable() bool { return t.tx.Writable() }

// Bucket returns the named bucket. In a write transaction it is created
// when missing; in a read transaction a missing bucket reads as empty.
// A name that belongs to another kind of file is an error.
func (t *Tx) Bucket(n BucketName) (*Bucket, error) {
	if n.kind != t.kind || n.name == "" {
		return nil, fmt.Errorf("store: bucket %q is not kept in a %s", n.name, t.kind)
	}
	if !t.tx.Writable() {
		return &Bucket{b: t.tx.Bucket([]byte(n.name))}, nil
	}
	b, err := t.tx.CreateBucketIfNotExists([]byte(n.name))
	if err != nil {
		return nil, fmt.Errorf("store: bucket %s: %w", n.name, err)
	}
	return &Bucket{b: b}, nil
}

// errReadTx is what a write to a bucket read in a read transaction, or
// missing from it, returns.
var errReadTx = errors.New("store: write in a read transaction")

// Bucket is a bucket of [BucketName], as bbolt keeps it: keys in byte
// order and a sequence number its owner may use as a counter. Values
// returned are valid only inside the transaction. A bucket read in a read
// transaction that the file lacks is empty.
type Bucket struct{ b *bolt.Bucket }

// Get returns the value of k, or nil.
func (b *Bucket) Get(k []byte) []byte {
	if b.b == nil {
		return nil
	}
	return b.b.Get(k)
}

// Put sets the value of k.
func (b *Bucket) Put(k, v []byte) error {
	if b.b == nil {
		return errReadTx
	}
	return b.b.Put(k, v)
}

// Delete removes k; a missing key is no error.
func (b *Bucket) Delete(k []byte) error {
	if b.b == nil {
		return errReadTx
	}
	return b.b.Delete(k)
}

// Sequence returns the bucket's sequence number.
func (b *Bucket) Sequence() uint64 {
	if b.b == nil {
		return 0
	}
	return b.b.Sequence()
}

// SetSequence sets the bucket's sequence number.
func (b *Bucket) SetSequence(n uint64) error {
	if b.b == nil {
		return errReadTx
	}
	return b.b.SetSequence(n)
}

// Cursor returns a cursor over the bucket's keys in byte order.
func (b *Bucket) Cursor() *Cursor {
	if b.b == nil {
		return &Cursor{}
	}
	return &Cursor{c: b.b.Cursor()}
}

// Cursor walks a [Bucket]. A nil value at a key means a nested bucket,
// which the owners of these buckets never write: they treat it as damage.
type Cursor struct{ c *bolt.Cursor }

// First moves to the first key and returns it with its value; nil at the
// end.
func (c *Cursor) First() (k, v []byte) {
	if c.c == nil {
		return nil, nil
	}
	return c.c.First()
}

// Seek moves to k, or the first key after it.
func (c *Cursor) Seek(k []byte) (key, v []byte) {
	if c.c == nil {
		return nil, nil
	}
	return c.c.Seek(k)
}

// Next moves to the next key.
func (c *Cursor) Next() (k, v []byte) {
	if c.c == nil {
		return nil, nil
	}
	return c.c.Next()
}

// Delete removes the key the cursor is at.
func (c *Cursor) Delete() error {
	if c.c == nil {
		return errReadTx
	}
	return c.c.Delete()
}
