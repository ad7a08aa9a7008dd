package deadletter

import (
	"context"
	"errors"
	"fmt"

	"github.com/lambdadispatch/dispatcher/store"
)

// ErrNotFound is returned, wrapped with the id, by [Bolt.Get] for an id that
// names no letter, including one that could not name any ("abc").
var ErrNotFound = errors.New("deadletter: no such letter")

// MaxListLimit caps the letters one [Bolt.List] call returns, so that each
// call holds its read transaction briefly: a long read transaction keeps
// bbolt from reusing pages and makes the file grow.
const MaxListLimit = 1000

// Bolt is the default sink: it keeps letters in the bucket [store.Letters]
// of the queue's own file, keyed by event id, and implements [TxSink].
// It also reads them back: [Bolt.Count], [Bolt.Get] and [Bolt.List].
//
// Bolt holds no state but the store, starts no goroutine and needs no
// closing; it is safe for concurrent use. Every call needs the store open.
type Bolt struct {
	st *store.Store
}

// NewBolt returns a sink that keeps letters in st's file. It writes
// nothing until the first letter: the bucket is created then.
func NewBolt(st *store.Store) *Bolt { return &Bolt{st: st} }

// Put stores l in a write transaction of its own, and returns once it is
// committed and synced. ctx bounds the
// wait for the store's writer, whose transaction (and sync) the letter may
// share with other writes. Like PutTx, it replaces a letter already held under l.ID.
func (b *Bolt) Put(ctx context.Context, l Letter) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// Encode outside the transaction, which other writers wait on.
	key, value, err := encodeLetter(l)
	if err != nil {
		return err
	}
	if err := b.st.Update(ctx, func(tx *store.Tx) error { return put(tx, key, value) }); err != nil {
		return fmt.Errorf("deadletter: put letter %s: %w", l.ID, err)
	}
	return nil
}

// PutTx stores l inside tx, a write transaction the caller owns: the letter
// is kept if and only if tx commits. It creates the bucket when missing. It
// is idempotent: a letter already held under l.ID is replaced, so calling it
// twice, or in a transaction that is run again, leaves one letter.
//
// A letter that cannot be stored faithfully is refused with an error
// wrapping [ErrInvalidLetter], before anything is written.
func (b *Bolt) PutTx(tx *store.Tx, l Letter) error {
	key, value, err := encodeLetter(l)
	if err != nil {
		return err
	}
	if err := put(tx, key, value); err != nil {
		return fmt.Errorf("deadletter: put letter %s: %w", l.ID, err)
	}
	return nil
}

// put writes one letter and keeps the count. The count is the bucket's
// sequence number: every write to the bucket must keep it equal to the
// number of keys, so that Count need not walk them.
func put(tx *store.Tx, key, value []byte) error {
	bk, err := tx.Bucket(store.Letters)
	if err != nil {
		return err
	}
	isNew := bk.Get(key) == nil
	if err := bk.Put(key, value); err != nil {
		return err
	}
	if isNew {
		return bk.SetSequence(bk.Sequence() + 1)
	}
	return nil
}

// Count returns the number of letters held, including any that cannot be
// read. It reads one counter, not the letters.
func (b *Bolt) Count() (int, error) {
	var n uint64
	err := b.st.View(func(tx *store.Tx) error {
		bk, err := tx.Bucket(store.Letters)
		if err != nil {
			return err
		}
		n = bk.Sequence()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("deadletter: count: %w", err)
	}
	return int(n), nil
}

// Get returns the letter with the given id. It returns an error wrapping
// [ErrNotFound] when there is none, and a *[CorruptError] when the letter
// cannot be read. Times come back in UTC, and an empty payload as nil.
func (b *Bolt) Get(id string) (Letter, error) {
	key, err := idKey(id)
	if err != nil {
		return Letter{}, fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	var l Letter
	err = b.st.View(func(tx *store.Tx) error {
		var err error
		l, err = getTx(tx, key, id)
		return err
	})
	return l, err
}

// List returns up to limit letters in id order (which is event order),
// starting after the letter whose id is after, or from the first when after
// is "". It returns the cursor to pass as after for the next page, and ""
// when there are no more. A limit above [MaxListLimit] is taken as
// MaxListLimit; below 1 is an error.
//
// Each call is one short read transaction, so letters put or removed
// between calls may or may not be seen; none is seen twice.
//
// List stops at a letter it cannot read and returns a *[CorruptError]
// naming it: to skip it, list again after its ID.
func (b *Bolt) List(ctx context.Context, after string, limit int) ([]Letter, string, error) {
	if limit < 1 {
		return nil, "", fmt.Errorf("deadletter: list: limit %d, want at least 1", limit)
	}
	limit = min(limit, MaxListLimit)
	var from []byte
	if after != "" {
		k, err := idKey(after)
		if err != nil {
			return nil, "", fmt.Errorf("deadletter: list: cursor: %v", err)
		}
		from = k
	}
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	var (
		letters []Letter
		next    string
	)
	err := b.st.View(func(tx *store.Tx) error {
		bk, err := tx.Bucket(store.Letters)
		if err != nil {
			return err
		}
		cur := bk.Cursor()
		var k, v []byte
		if from == nil {
			k, v = cur.First()
		} else if k, v = cur.Seek(from); k != nil && string(k) == string(from) {
			k, v = cur.Next()
		}
		for ; k != nil; k, v = cur.Next() {
			if len(letters) == limit {
				next = letters[len(letters)-1].ID
				return nil
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			id, err := keyID(k)
			if err != nil {
				return err
			}
			if v == nil {
				return &CorruptError{ID: id, Err: errors.New("a bucket, not a letter")}
			}
			l, err := decodeLetter(id, v)
			if err != nil {
				return err
			}
			letters = append(letters, l)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return letters, next, nil
}

// GetTx reads the letter with the given id inside tx: a redrive reads and
// removes a letter in the transaction that queues its event again. It
// returns an error wrapping ErrNotFound when there is none.
func (b *Bolt) GetTx(tx *store.Tx, id string) (Letter, error) {
	key, err := idKey(id)
	if err != nil {
		return Letter{}, fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	return getTx(tx, key, id)
}

func getTx(tx *store.Tx, key []byte, id string) (Letter, error) {
	bk, err := tx.Bucket(store.Letters)
	if err != nil {
		return Letter{}, err
	}
	v := bk.Get(key)
	if v == nil {
		return Letter{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return decodeLetter(id, v)
}

// DeleteTx removes the letters with the given ids inside tx, skipping
// those that are not there, and returns how many it removed.
func (b *Bolt) DeleteTx(tx *store.Tx, ids ...string) (int, error) {
	bk, err := tx.Bucket(store.Letters)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		key, err := idKey(id)
		if err != nil || bk.Get(key) == nil {
			continue
		}
		if err := bk.Delete(key); err != nil {
			return n, err
		}
		n++
	}
	// Count reads the bucket's sequence: keep it the number of letters.
	return n, bk.SetSequence(bk.Sequence() - uint64(n))
}
