// Package idempotency is the key window: which deduplication keys were
// seen, by which event, in what state, until when. It lives in buckets of
// the queue's own bbolt file, so that claiming a key and writing its event
// are one transaction.
//
// # Layout
//
// Bucket "keys" maps a key to an 18-byte entry: a format version, the
// state (queued, delivered, dead-lettered), the sequence number of the
// event that holds the key, and the expiry in Unix nanoseconds. Bucket
// "keyexp" is the expiry index, (expiry, key), which a sweep walks from the
// oldest to remove expired keys in bounded batches.
//
// # Shared windows
//
// One file's index deduplicates the events of one process. Dispatchers on
// several machines share a window through [Shared], which package
// idempotency/dynamo implements on DynamoDB, and [FileWindow] in a bbolt
// file of its own for several queue files on one machine; the index in
// each queue file stays in use beside it. Package idempotency/sharedtest
// checks an implementation against the contract. A keyed event then goes through three steps, and a
// process may die between any two of them:
//
//  1. Claim. One conditional write takes the key for the file's owner
//     (an identity kept in the file, so it survives restarts), with a
//     fresh token and a short lease, if no one holds it: the key is
//     absent or expired, or Claimed by this owner, or Claimed with its
//     lease passed. A key Claimed by another owner within its lease is
//     waited for; a key Queued, Delivered or DeadLettered is a duplicate.
//  2. Commit. The event is written to the file together with a pending
//     record of its claim (key and token), in one transaction.
//  3. Confirm. A conditional update, on the token, moves the key from
//     Claimed to Queued and records the event's ID; then the pending
//     record goes.
//
// Why no event is lost or wrongly refused:
//
//   - Death after 1, before 2: a claim with no event. Nobody takes it for
//     a duplicate: others wait while the lease runs, then take it over.
//     The same file replaying the Enqueue takes it back at once, since the
//     owner is its own. The claim keeps no one out for longer than one
//     lease.
//   - Death after 2, before 3: the event is queued and its claim is not
//     confirmed. The next Open reads the pending record and confirms it.
//     If the lease passed meanwhile and another owner took the key over,
//     the confirm fails; that owner holds the key for an event of its own,
//     so this one is the duplicate and is removed without being invoked.
//     If the claim merely lapsed and nobody took it, it is claimed again
//     and confirmed.
//   - Two owners racing: conditional writes on one item are serialised,
//     so one claim wins. A takeover and a late confirm race the same way:
//     either the confirm lands first, and the takeover's condition fails
//     (the key is Queued), or the takeover does, and the confirm fails
//     (the token changed). Exactly one event keeps the key.
//   - Within one process, claims of one key are serialised, so that a
//     second Enqueue cannot replace a claim (same owner) that the first is
//     about to confirm.
//
// An event whose claim is not yet confirmed is not invoked before the
// confirm is tried once more: that ends the one window in which an event
// could be invoked and then lose its key. When the shared window cannot
// be reached, delivery goes on from the file's own index, with a warning,
// rather than stall; that is the one case left where two owners can both
// deliver a key (a claim whose lease passed while its owner could not
// confirm it). At-least-once delivery holds throughout.
//
// The dispatcher keeps its side of these steps (the pending records, the
// confirm at Open, the in-process key locks, delivery's fallback) in its
// package internal/sharedkeys, whose doc names the function for each.
package idempotency

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/lambdadispatch/dispatcher/store"
)

// State is where the event holding a key stands.
type State byte

// States of a key.
const (
	Queued       State = 1
	Delivered    State = 2
	DeadLettered State = 3
)

func (s State) String() string {
	switch s {
	case Queued:
		return "queued"
	case Delivered:
		return "delivered"
	case DeadLettered:
		return "dead-lettered"
	case Claimed:
		return "claimed"
	}
	return fmt.Sprintf("state(%d)", byte(s))
}

// Entry is one key of the window.
type Entry struct {
	Key     string
	State   State
	Seq     uint64 // the event that holds the key
	Expires time.Time
}

const entryVersion = 1

// ErrCorrupt is wrapped by errors about entries that cannot be read.
var ErrCorrupt = errors.New("idempotency: corrupt entry")

// Index is the key window in a queue's file, in its buckets [store.Keys]
// and [store.KeyExpiry]. Its methods that take a *store.Tx run inside the
// caller's transaction.
type Index struct{ st *store.Store }

// New returns the index kept in st's file.
func New(st *store.Store) *Index { return &Index{st: st} }

func encodeEntry(s State, seq uint64, expires int64) []byte {
	b := make([]byte, 0, 18)
	b = append(b, entryVersion, byte(s))
	b = binary.BigEndian.AppendUint64(b, seq)
	return binary.BigEndian.AppendUint64(b, uint64(expires))
}

func decodeEntry(key string, v []byte) (Entry, error) {
	if len(v) != 18 || v[0] != entryVersion || v[1] < byte(Queued) || v[1] > byte(DeadLettered) {
		return Entry{}, fmt.Errorf("%w: key %q: %d bytes, version %d", ErrCorrupt, key, len(v), firstByte(v))
	}
	return Entry{
		Key: key, State: State(v[1]), Seq: binary.BigEndian.Uint64(v[2:10]),
		Expires: time.Unix(0, int64(binary.BigEndian.Uint64(v[10:18]))),
	}, nil
}

func firstByte(v []byte) int {
	if len(v) == 0 {
		return -1
	}
	return int(v[0])
}

func expKey(expires int64, key string) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(key)), uint64(expires)^(1<<63))
	return append(k, key...)
}

func buckets(tx *store.Tx) (keys, exp *store.Bucket, err error) {
	if keys, err = tx.Bucket(store.Keys); err != nil {
		return nil, nil, err
	}
	exp, err = tx.Bucket(store.KeyExpiry)
	return keys, exp, err
}

// Hold gives key to the event seq for window from now, unless another
// event holds it unexpired: then it writes nothing (the caller asks Held
// first). Run in the transaction that writes the event, a key and its
// event commit together or not at all.
func (x *Index) Hold(tx *store.Tx, key string, seq uint64, now time.Time, window time.Duration) error {
	keys, exp, err := buckets(tx)
	if err != nil {
		return err
	}
	if v := keys.Get([]byte(key)); v != nil {
		e, err := decodeEntry(key, v)
		if err != nil {
			return err
		}
		if e.Expires.After(now) {
			return nil
		}
		if err := exp.Delete(expKey(e.Expires.UnixNano(), key)); err != nil {
			return err
		}
	} else if err := keys.SetSequence(keys.Sequence() + 1); err != nil {
		return err
	}
	expires := expiresAt(now, window)
	if err := keys.Put([]byte(key), encodeEntry(Queued, seq, expires)); err != nil {
		return err
	}
	return exp.Put(expKey(expires, key), []byte{})
}

// Held returns the event holding key at now, and false when none does.
func (x *Index) Held(tx *store.Tx, key string, now time.Time) (uint64, bool, error) {
	e, ok, err := x.Lookup(tx, key, now)
	return e.Seq, ok, err
}

var _ store.KeyWindow = (*Index)(nil)

// Mark sets the state of key, if the event seq still holds it.
func (x *Index) Mark(tx *store.Tx, key string, seq uint64, s State) error {
	keys, e, held, err := heldBy(tx, key, seq)
	if err != nil || !held {
		return err
	}
	return keys.Put([]byte(key), encodeEntry(s, seq, e.Expires.UnixNano()))
}

// heldBy reads the entry of key, and reports whether the event seq holds
// it: absent, or held by another event, is false without an error.
func heldBy(tx *store.Tx, key string, seq uint64) (*store.Bucket, Entry, bool, error) {
	keys, err := tx.Bucket(store.Keys)
	if err != nil {
		return nil, Entry{}, false, err
	}
	v := keys.Get([]byte(key))
	if v == nil {
		return keys, Entry{}, false, nil
	}
	e, err := decodeEntry(key, v)
	if err != nil || e.Seq != seq {
		return keys, Entry{}, false, err
	}
	return keys, e, true, nil
}

// expiresAt returns now+window in Unix nanoseconds, saturated at the
// largest: an expiry past 2262 would otherwise wrap to the distant past and
// let the key expire at once, turning deduplication off without a word.
func expiresAt(now time.Time, window time.Duration) int64 {
	n := now.UnixNano()
	if window > 0 && n > math.MaxInt64-int64(window) {
		return math.MaxInt64
	}
	return n + int64(window)
}

// Release removes key from the window if the event seq holds it: a
// cancelled or evicted event lets its key go, and a key already taken
// over by a later event stays that event's.
func (x *Index) Release(tx *store.Tx, key string, seq uint64) error {
	_, _, held, err := heldBy(tx, key, seq)
	if err != nil || !held {
		return err
	}
	return x.Forget(tx, key)
}

// Forget removes key from the window, whoever holds it: a redrive clears
// the mark of the event it sends again.
func (x *Index) Forget(tx *store.Tx, key string) error {
	keys, exp, err := buckets(tx)
	if err != nil {
		return err
	}
	v := keys.Get([]byte(key))
	if v == nil {
		return nil
	}
	e, err := decodeEntry(key, v)
	if err != nil {
		return err
	}
	if err := keys.Delete([]byte(key)); err != nil {
		return err
	}
	if err := keys.SetSequence(keys.Sequence() - 1); err != nil {
		return err
	}
	return exp.Delete(expKey(e.Expires.UnixNano(), key))
}

// Lookup returns the entry of key inside tx, and false when the key is not
// in the window or has expired at now.
func (x *Index) Lookup(tx *store.Tx, key string, now time.Time) (Entry, bool, error) {
	keys, err := tx.Bucket(store.Keys)
	if err != nil {
		return Entry{}, false, err
	}
	v := keys.Get([]byte(key))
	if v == nil {
		return Entry{}, false, nil
	}
	e, err := decodeEntry(key, v)
	if err != nil || !e.Expires.After(now) {
		return Entry{}, false, err
	}
	return e, true, nil
}

// Len returns the number of keys held, expired ones not yet swept
// included.
func (x *Index) Len() (int, error) {
	var n uint64
	err := x.st.View(func(tx *store.Tx) error {
		b, err := tx.Bucket(store.Keys)
		if err != nil {
			return err
		}
		n = b.Sequence()
		return nil
	})
	return int(n), err
}

// Sweep removes keys that expired before now, oldest first, at most batch
// per write transaction so that no sweep holds the file for long, until
// none is left or ctx ends. It returns how many it removed.
func (x *Index) Sweep(ctx context.Context, now time.Time, batch int) (int, error) {
	return x.trim(ctx, batch, func(expires int64, _ int) bool { return expires < now.UnixNano() })
}

// Evict removes the oldest keys, by expiry, until at most max are held,
// and returns how many it removed.
func (x *Index) Evict(ctx context.Context, max, batch int) (int, error) {
	return x.trim(ctx, batch, func(_ int64, held int) bool { return held > max })
}

func (x *Index) trim(ctx context.Context, batch int, drop func(expires int64, held int) bool) (int, error) {
	if batch < 1 {
		batch = 1000
	}
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, err := x.trimOnce(ctx, batch, drop)
		total += n
		if err != nil || n < batch {
			return total, err
		}
	}
}

// SweepOnce is one transaction of Sweep: it removes at most batch keys
// that expired before now and returns how many.
func (x *Index) SweepOnce(now time.Time, batch int) (int, error) {
	return x.trimOnce(context.Background(), batch, func(expires int64, _ int) bool { return expires < now.UnixNano() })
}

func (x *Index) trimOnce(ctx context.Context, batch int, drop func(expires int64, held int) bool) (int, error) {
	n := 0
	err := x.st.Update(ctx, func(tx *store.Tx) error {
		n = 0
		keys, exp, err := buckets(tx)
		if err != nil {
			return err
		}
		var doomed [][]byte
		held := int(keys.Sequence())
		c := exp.Cursor()
		for k, _ := c.First(); k != nil && len(doomed) < batch; k, _ = c.Next() {
			if len(k) < 8 || !drop(int64(binary.BigEndian.Uint64(k)^(1<<63)), held-len(doomed)) {
				break
			}
			doomed = append(doomed, append([]byte(nil), k...))
		}
		for _, k := range doomed {
			if err := exp.Delete(k); err != nil {
				return err
			}
			if err := keys.Delete(k[8:]); err != nil {
				return err
			}
		}
		n = len(doomed)
		return keys.SetSequence(keys.Sequence() - uint64(n))
	})
	if err != nil {
		// The store's writer may still be running the transaction (see
		// store.Update): n is not ours to read.
		return 0, err
	}
	return n, nil
}
