package idempotency

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/lambdadispatch/dispatcher/store"
)

// ErrFileWindowInUse is returned by OpenFileWindow when the file is already
// open: by another FileWindow of this process (at once), or by another
// process that does not let go of it within the lock timeout.
var ErrFileWindowInUse = errors.New("idempotency: key window file is in use")

// ErrFileWindowClosed is returned by every call on a FileWindow after
// Close, Close included.
var ErrFileWindowClosed = errors.New("idempotency: key window file closed")

// DefaultFileLockTimeout is how long OpenFileWindow waits for another
// process to let go of the file, unless WithFileLockTimeout says otherwise.
const DefaultFileLockTimeout = 3 * time.Second

// fileItemVersion is the encoding of one key's item, its first byte. The
// file itself (its buckets and format marker) is package store's KeyFile.
const fileItemVersion = 1

// maxFileKeyBytes is the longest key a FileWindow accepts: bbolt's limit on
// a key, less the 8 bytes of expiry the expiry index puts before it.
const maxFileKeyBytes = store.MaxKeySize - 8

// maxMillis bounds the Unix milliseconds kept in an item, as package
// dynamo bounds them: time.UnixMilli converts them without overflow.
const maxMillis = 1 << 52

// FileWindow is a [Shared] window kept in a bbolt file of its own, for
// several dispatchers of one process that each have their own queue file
// but must refuse each other's duplicates: a service that shards its queue
// over several files, say, to spread the fsyncs of a heavy load over
// several disks.
//
// Choose by who must see the keys. One dispatcher, one file: the [Index]
// in the queue's own file, which is the default and needs no Shared at
// all, since a key and its event commit in one transaction. Several
// dispatchers in one process: a FileWindow, shared by passing the same
// *FileWindow to each. Dispatchers in several processes or on several
// machines: package idempotency/dynamo. A FileWindow cannot serve several
// processes: bbolt holds the file with an exclusive lock while it is open.
//
// Its conditions are exactly those of package dynamo's Window (see that
// package's doc), with times kept to the millisecond as there, so that a
// service can move from one to the other without a change in behaviour.
// Every change is one bbolt write transaction, synced to disk before it
// returns, so that a keyed event costs two or three synced writes in this
// file (claim, confirm, mark) besides those in its queue's; Lookup is one
// read transaction. Being a local file, it is never
// unavailable: it returns no *UnavailableError, and its errors (a full
// disk, a corrupt item) are plain ones that retrying will not mend.
//
// Expired keys stay in the file, treated as absent, until Sweep removes
// them. Its methods may be called from several goroutines at once.
type FileWindow struct {
	file *store.KeyFile
	path string // absolute

	mu     sync.RWMutex // held for reading by every call, for writing by Close
	closed bool
}

var _ Shared = (*FileWindow)(nil)

// FileOption configures OpenFileWindow.
type FileOption func(*fileConfig)

type fileConfig struct {
	lockTimeout time.Duration
}

// WithFileLockTimeout bounds how long OpenFileWindow waits for another
// process to let go of the file before it fails with ErrFileWindowInUse
// (default DefaultFileLockTimeout). It must be positive: bbolt would take
// zero to mean waiting for ever.
func WithFileLockTimeout(d time.Duration) FileOption {
	return func(c *fileConfig) { c.lockTimeout = d }
}

// OpenFileWindow opens the key window file at path, creating it (mode
// 0600) if needed. A bbolt file of anything else, a queue file for
// instance, is refused. If the file is open, in this process or
// another, it fails with an error wrapping ErrFileWindowInUse: at once in
// this process, after the lock timeout (WithFileLockTimeout) otherwise.
// Close the FileWindow after the dispatchers that use it.
func OpenFileWindow(path string, opts ...FileOption) (*FileWindow, error) {
	c := fileConfig{lockTimeout: DefaultFileLockTimeout}
	for _, o := range opts {
		o(&c)
	}
	if c.lockTimeout <= 0 {
		return nil, fmt.Errorf("idempotency: WithFileLockTimeout(%v): must be positive", c.lockTimeout)
	}
	f, err := store.OpenKeyFile(path, c.lockTimeout)
	switch {
	case errors.Is(err, store.ErrLocked):
		return nil, fmt.Errorf("idempotency: open key window file: %w: %w", ErrFileWindowInUse, err)
	case err != nil:
		return nil, fmt.Errorf("idempotency: open key window file %s: %w", path, err)
	}
	return &FileWindow{file: f, path: f.Path()}, nil
}

// Path returns the absolute path of the file.
func (w *FileWindow) Path() string { return w.path }

// Close waits for the calls under way and releases the file. Calls after
// Close, Close included, return ErrFileWindowClosed.
func (w *FileWindow) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrFileWindowClosed
	}
	w.closed = true
	err := w.file.Close()
	if err != nil {
		return fmt.Errorf("idempotency: close key window file %s: %w", w.path, err)
	}
	return nil
}

// errFileLost is what a transaction returns when its condition fails; the
// method turns it into an error wrapping ErrLost, or nil.
var errFileLost = errors.New("condition failed")

// update runs fn in one write transaction, unless ctx has ended or w is
// closed, and names op and key in its error.
func (w *FileWindow) update(ctx context.Context, op, key string, fn func(keys, exp *store.Bucket) error) error {
	return w.run(ctx, op, key, true, func(tx *store.Tx) error {
		keys, exp, err := windowBuckets(tx)
		if err != nil {
			return err
		}
		return fn(keys, exp)
	})
}

func windowBuckets(tx *store.Tx) (keys, exp *store.Bucket, err error) {
	if keys, err = tx.Bucket(store.WindowKeys); err != nil {
		return nil, nil, err
	}
	exp, err = tx.Bucket(store.WindowExpiry)
	return keys, exp, err
}

func (w *FileWindow) run(ctx context.Context, op, key string, write bool, fn func(tx *store.Tx) error) error {
	where := "idempotency: file window " + op
	if key != "" {
		where = fmt.Sprintf("%s key %q", where, key)
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return fmt.Errorf("%s: %w", where, ErrFileWindowClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	var err error
	if write {
		err = w.file.Update(fn)
	} else {
		err = w.file.View(fn)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errFileLost):
		return errFileLost
	}
	return fmt.Errorf("%s: %w", where, err)
}

// Claim takes c.Key for c.Owner when no one holds it, in one write
// transaction; see [Shared]. The key is free when it is absent or expires
// at or before now, or is Claimed by c.Owner, or is Claimed with its lease
// at or before now. Times are kept to the millisecond.
func (w *FileWindow) Claim(ctx context.Context, c Claim, now time.Time) (Holder, bool, error) {
	if err := c.Check(maxFileKeyBytes); err != nil {
		return Holder{}, false, fmt.Errorf("idempotency: file window Claim key %q: %w", c.Key, err)
	}
	nowMS := now.UnixMilli()
	it := fileItem{
		owner: c.Owner, token: c.Token, state: Claimed,
		lease: now.Add(c.Lease).UnixMilli(), expires: now.Add(c.Window).UnixMilli(),
	}
	if outOfRange(it.lease) || outOfRange(it.expires) {
		return Holder{}, false, fmt.Errorf("idempotency: file window Claim key %q: now %v plus the window or lease is out of range", c.Key, now)
	}
	var held Holder
	var claimed bool
	err := w.update(ctx, "Claim", c.Key, func(keys, exp *store.Bucket) error {
		held, claimed = Holder{}, false
		k := []byte(c.Key)
		if v := keys.Get(k); v != nil {
			old, err := decodeFileItem(c.Key, v)
			if err != nil {
				return err
			}
			if !old.claimable(c.Owner, nowMS) {
				held = old.holder()
				return nil
			}
			if err := exp.Delete(expKey(old.expires, c.Key)); err != nil {
				return err
			}
		}
		if err := keys.Put(k, encodeFileItem(it)); err != nil {
			return err
		}
		claimed = true
		return exp.Put(expKey(it.expires, c.Key), []byte{})
	})
	if err != nil {
		return Holder{}, false, err
	}
	return held, claimed, nil
}

// Confirm moves r.Key from Claimed to Queued, records r.ID and drops the
// lease, in one write transaction, if r.Owner and r.Token hold the key and
// it is Claimed, or already Queued for r.ID; otherwise it returns ErrLost.
// See [Shared].
func (w *FileWindow) Confirm(ctx context.Context, r Ref) error {
	if err := r.Check(true, true); err != nil {
		return fmt.Errorf("idempotency: file window Confirm key %q: %w", r.Key, err)
	}
	err := w.update(ctx, "Confirm", r.Key, func(keys, _ *store.Bucket) error {
		it, ok, err := getFileItem(keys, r.Key)
		if err != nil {
			return err
		}
		if !ok || it.owner != r.Owner || it.token != r.Token ||
			(it.state != Claimed && (it.state != Queued || it.id != r.ID)) {
			return errFileLost
		}
		it.state, it.id, it.lease = Queued, r.ID, 0
		return keys.Put([]byte(r.Key), encodeFileItem(it))
	})
	return lostOr("Confirm", r.Key, err, true)
}

// Mark sets the state of r.Key to s, Delivered or DeadLettered, in one
// write transaction, if r.Owner and the event r.ID hold it; otherwise it
// returns ErrLost. See [Shared].
func (w *FileWindow) Mark(ctx context.Context, r Ref, s State) error {
	if err := r.Check(false, true); err != nil {
		return fmt.Errorf("idempotency: file window Mark key %q: %w", r.Key, err)
	}
	if s != Delivered && s != DeadLettered {
		return fmt.Errorf("idempotency: file window Mark key %q: state %v is neither %v nor %v", r.Key, s, Delivered, DeadLettered)
	}
	err := w.update(ctx, "Mark", r.Key, func(keys, _ *store.Bucket) error {
		it, ok, err := getFileItem(keys, r.Key)
		if err != nil {
			return err
		}
		if !ok || it.owner != r.Owner || it.id != r.ID {
			return errFileLost
		}
		it.state = s
		return keys.Put([]byte(r.Key), encodeFileItem(it))
	})
	return lostOr("Mark", r.Key, err, true)
}

// Release removes r.Key, in one write transaction, if r.Owner holds it
// with the claim r.Token, when set, else with the event r.ID. It returns
// nil when r does not hold the key. See [Shared].
func (w *FileWindow) Release(ctx context.Context, r Ref) error {
	if err := r.Check(false, false); err != nil {
		return fmt.Errorf("idempotency: file window Release key %q: %w", r.Key, err)
	}
	if r.Token == "" && r.ID == "" {
		return fmt.Errorf("idempotency: file window Release key %q: neither a token nor an event ID", r.Key)
	}
	err := w.update(ctx, "Release", r.Key, func(keys, exp *store.Bucket) error {
		it, ok, err := getFileItem(keys, r.Key)
		if err != nil {
			return err
		}
		if !ok || it.owner != r.Owner ||
			(r.Token != "" && it.token != r.Token) || (r.Token == "" && it.id != r.ID) {
			return errFileLost
		}
		if err := keys.Delete([]byte(r.Key)); err != nil {
			return err
		}
		return exp.Delete(expKey(it.expires, r.Key))
	})
	return lostOr("Release", r.Key, err, false)
}

// Lookup returns the holders of those keys that are held and expire after
// now, in one read transaction; see [Shared].
func (w *FileWindow) Lookup(ctx context.Context, keys []string, now time.Time) (map[string]Holder, error) {
	for _, k := range keys {
		if k == "" {
			return nil, errors.New("idempotency: file window Lookup: empty key")
		}
	}
	nowMS := now.UnixMilli()
	found := make(map[string]Holder)
	err := w.run(ctx, "Lookup", "", false, func(tx *store.Tx) error {
		clear(found)
		b, err := tx.Bucket(store.WindowKeys)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if _, ok := found[k]; ok {
				continue
			}
			it, ok, err := getFileItem(b, k)
			if err != nil {
				return err
			}
			if ok && it.expires > nowMS {
				found[k] = it.holder()
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return found, nil
}

// Sweep removes the keys that expire at or before now, the ones Claim and
// Lookup already take for absent, oldest first, at most batch (default
// 1000) per write transaction so that no sweep holds the file for long,
// until none is left or ctx ends. It returns how many it removed. Nothing
// sweeps on its own: call it now and then, from a goroutine of your own.
func (w *FileWindow) Sweep(ctx context.Context, now time.Time, batch int) (int, error) {
	if batch < 1 {
		batch = 1000
	}
	nowMS := now.UnixMilli()
	total := 0
	for {
		seen, removed := 0, 0
		err := w.run(ctx, "Sweep", "", true, func(tx *store.Tx) error {
			seen, removed = 0, 0
			keys, exp, err := windowBuckets(tx)
			if err != nil {
				return err
			}
			var doomed [][]byte
			c := exp.Cursor()
			for k, _ := c.First(); k != nil && len(doomed) < batch; k, _ = c.Next() {
				if len(k) < 8 || int64(binary.BigEndian.Uint64(k)^(1<<63)) > nowMS {
					break
				}
				doomed = append(doomed, append([]byte(nil), k...))
			}
			for _, k := range doomed {
				seen++
				if err := exp.Delete(k); err != nil {
					return err
				}
				// An item whose expiry is not its index entry's was
				// claimed again: only the stale entry goes. One that
				// cannot be read goes with its entry.
				key := k[8:]
				v := keys.Get(key)
				if v == nil {
					continue
				}
				it, err := decodeFileItem(string(key), v)
				if err == nil && it.expires != int64(binary.BigEndian.Uint64(k)^(1<<63)) {
					continue
				}
				if err := keys.Delete(key); err != nil {
					return err
				}
				removed++
			}
			return nil
		})
		total += removed
		if err != nil || seen < batch {
			return total, err
		}
	}
}

// lostOr maps the error of a conditional change: a failed condition is an
// error wrapping ErrLost when lost is set, else nil.
func lostOr(op, key string, err error, lost bool) error {
	if !errors.Is(err, errFileLost) {
		return err
	}
	if !lost {
		return nil
	}
	return fmt.Errorf("idempotency: file window %s key %q: %w", op, key, ErrLost)
}

func outOfRange(ms int64) bool { return ms < -maxMillis || ms > maxMillis }

// fileItem is one key of a FileWindow, its times in Unix milliseconds.
type fileItem struct {
	owner, token string
	id           string // empty while Claimed, set from Confirm on
	state        State
	lease        int64 // kept only while Claimed
	expires      int64
}

func (it fileItem) holder() Holder {
	h := Holder{Owner: it.owner, Token: it.token, ID: it.id, State: it.state, Expires: time.UnixMilli(it.expires)}
	if it.state == Claimed {
		h.Lease = time.UnixMilli(it.lease)
	}
	return h
}

// claimable reports whether owner may claim the key at nowMS, as the
// condition of package dynamo's Claim has it.
func (it fileItem) claimable(owner string, nowMS int64) bool {
	if it.expires <= nowMS {
		return true
	}
	return it.state == Claimed && (it.owner == owner || it.lease <= nowMS)
}

func getFileItem(b *store.Bucket, key string) (fileItem, bool, error) {
	v := b.Get([]byte(key))
	if v == nil {
		return fileItem{}, false, nil
	}
	it, err := decodeFileItem(key, v)
	return it, err == nil, err
}

// encodeFileItem lays an item out as: the version, the state, expires
// (8 bytes, big-endian), the lease (8 bytes) only while Claimed, then the
// owner, the token and the ID, each after its length as a uvarint.
func encodeFileItem(it fileItem) []byte {
	b := make([]byte, 0, 2+16+3*binary.MaxVarintLen32+len(it.owner)+len(it.token)+len(it.id))
	b = append(b, fileItemVersion, byte(it.state))
	b = binary.BigEndian.AppendUint64(b, uint64(it.expires))
	if it.state == Claimed {
		b = binary.BigEndian.AppendUint64(b, uint64(it.lease))
	}
	for _, s := range []string{it.owner, it.token, it.id} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

// decodeFileItem reads the item of key. It returns an error wrapping
// ErrCorrupt, and never panics, for anything encodeFileItem would not
// have written: so an item it accepts encodes back to the same bytes.
func decodeFileItem(key string, v []byte) (fileItem, error) {
	corrupt := func(format string, args ...any) (fileItem, error) {
		return fileItem{}, fmt.Errorf("%w: key %q: %d bytes, version %d: %s", ErrCorrupt, key, len(v), firstByte(v), fmt.Sprintf(format, args...))
	}
	if len(v) < 10 {
		return corrupt("too short")
	}
	if v[0] != fileItemVersion {
		return corrupt("unknown version")
	}
	it := fileItem{state: State(v[1]), expires: int64(binary.BigEndian.Uint64(v[2:10]))}
	rest := v[10:]
	switch it.state {
	case Claimed:
		if len(rest) < 8 {
			return corrupt("claimed without a lease")
		}
		it.lease = int64(binary.BigEndian.Uint64(rest))
		rest = rest[8:]
	case Queued, Delivered, DeadLettered:
	default:
		return corrupt("unknown state %d", v[1])
	}
	if outOfRange(it.expires) || outOfRange(it.lease) {
		return corrupt("time out of range")
	}
	var fields [3]string
	for i := range fields {
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			return corrupt("field %d cut short", i)
		}
		if w != uvarintLen(n) {
			return corrupt("field %d: length not in its shortest form", i)
		}
		fields[i] = string(rest[w : w+int(n)])
		rest = rest[w+int(n):]
	}
	if len(rest) > 0 {
		return corrupt("%d bytes left over", len(rest))
	}
	it.owner, it.token, it.id = fields[0], fields[1], fields[2]
	switch {
	case it.owner == "" || it.token == "":
		return corrupt("empty owner or token")
	case it.state == Claimed && it.id != "":
		return corrupt("claimed with an event ID")
	case it.state != Claimed && it.id == "":
		return corrupt("%v without an event ID", it.state)
	}
	return it, nil
}

func uvarintLen(n uint64) int {
	w := 1
	for ; n >= 0x80; n >>= 7 {
		w++
	}
	return w
}
