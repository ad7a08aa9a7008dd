package sharedkeys

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/lambdadispatch/dispatcher/store"
)

// The file's side of a shared window, in the buckets store.SharedOwner and
// store.PendingClaims: the owner's identity, and the claims committed but
// not yet confirmed, so that a crash between the commit and the confirm is
// finished at the next Open. The bytes are those files written before this
// package existed hold: change them only with a new pendingVersion.
var keyOwner = []byte("owner")

const pendingVersion = 1

// pendingClaim is a claim whose event is committed but not yet confirmed.
type pendingClaim struct {
	key, token string
	expires    time.Time // the end of the key's window
}

func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

func encodePending(p pendingClaim) []byte {
	b := make([]byte, 0, 1+8+binary.MaxVarintLen64+len(p.token)+len(p.key))
	b = append(b, pendingVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(p.expires.UnixNano()))
	b = binary.AppendUvarint(b, uint64(len(p.token)))
	b = append(b, p.token...)
	return append(b, p.key...)
}

func decodePending(v []byte) (pendingClaim, error) {
	if len(v) < 10 || v[0] != pendingVersion {
		return pendingClaim{}, fmt.Errorf("dispatcher: unreadable pending claim (%d bytes)", len(v))
	}
	exp := int64(binary.BigEndian.Uint64(v[1:9]))
	n, w := binary.Uvarint(v[9:])
	if w <= 0 || n > uint64(len(v)-9-w) {
		return pendingClaim{}, fmt.Errorf("dispatcher: unreadable pending claim (%d bytes)", len(v))
	}
	rest := v[9+w:]
	return pendingClaim{token: string(rest[:n]), key: string(rest[n:]), expires: time.Unix(0, exp)}, nil
}

func pendingKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func deletePending(tx *store.Tx, seqs ...uint64) error {
	b, err := tx.Bucket(store.PendingClaims)
	if err != nil {
		return err
	}
	for _, seq := range seqs {
		if err := b.Delete(pendingKey(seq)); err != nil {
			return err
		}
	}
	return nil
}

// loadFile reads or creates the file's owner identity and reads the
// pending claims, in tx. It may run more than once (the store's writer
// may retry), so it starts from an empty map each time.
func loadFile(tx *store.Tx, unconfirmed map[uint64]pendingClaim, dropped func(error)) (owner string, err error) {
	clear(unconfirmed)
	b, err := tx.Bucket(store.SharedOwner)
	if err != nil {
		return "", err
	}
	if v := b.Get(keyOwner); v != nil {
		owner = string(v)
	} else {
		owner = newToken()
		if err := b.Put(keyOwner, []byte(owner)); err != nil {
			return "", err
		}
	}
	p, err := tx.Bucket(store.PendingClaims)
	if err != nil {
		return "", err
	}
	c := p.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		pc, err := decodePending(v)
		if err != nil || len(k) != 8 {
			dropped(err)
			continue
		}
		unconfirmed[binary.BigEndian.Uint64(k)] = pc
	}
	return owner, nil
}

// pendingWindow is the store's KeyWindow in shared mode: the file's own
// index, plus a pending record for each claim, written with its event.
type pendingWindow struct {
	local  store.KeyWindow
	claims map[string]pendingClaim
}

// Held is the file's own index's.
func (w pendingWindow) Held(tx *store.Tx, key string, now time.Time) (uint64, bool, error) {
	return w.local.Held(tx, key, now)
}

// Hold holds key in the file's index and records the shared claim as
// pending, in the transaction that writes the event seq.
func (w pendingWindow) Hold(tx *store.Tx, key string, seq uint64, now time.Time, window time.Duration) error {
	if err := w.local.Hold(tx, key, seq, now, window); err != nil {
		return err
	}
	pc, ok := w.claims[key]
	if !ok {
		return nil
	}
	b, err := tx.Bucket(store.PendingClaims)
	if err != nil {
		return err
	}
	return b.Put(pendingKey(seq), encodePending(pc))
}
