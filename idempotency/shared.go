package idempotency

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Claimed is the state of a key in a [Shared] window whose event is not
// yet committed to its owner's file. The local index never holds it.
const Claimed State = 4

// Shared is a key window held outside the queue's file, so that every
// dispatcher using it, in any process on any machine, sees the same keys.
// The default window is the [Index] in each queue's own file, which needs
// no Shared at all; package idempotency/dynamo implements Shared on
// DynamoDB.
//
// A key moves through Claimed, Queued, then Delivered or DeadLettered.
// Every change is conditional on who holds the key, so two dispatchers
// racing for a key, or a dispatcher racing the one it took a key over
// from, cannot both win. See the dispatcher's README for the sequence and
// why it is safe.
//
// Errors that mean the window could not be reached or refused the request
// for load are *UnavailableError; a change refused because the caller no
// longer holds the key is ErrLost.
type Shared interface {
	// Claim takes c.Key for c.Owner, in one conditional write, when no one
	// holds it: the key is absent or expired at now, or it is Claimed by
	// c.Owner itself (a retry after a crash between claim and commit), or
	// it is Claimed and its lease has passed (its owner died before
	// committing). Otherwise it writes nothing and returns the holder and
	// false.
	Claim(ctx context.Context, c Claim, now time.Time) (Holder, bool, error)
	// Confirm moves r.Key from Claimed to Queued and records r.ID, if the
	// claim r.Token still holds it; otherwise it returns ErrLost. Confirming
	// again with the same ID succeeds while the key is Queued; once it is
	// marked, a late Confirm returns ErrLost, and the caller reads the
	// holder to see that it is its own event.
	Confirm(ctx context.Context, r Ref) error
	// Mark sets the state of r.Key (Delivered or DeadLettered) if the event
	// r.Owner, r.ID holds it; otherwise it returns ErrLost.
	Mark(ctx context.Context, r Ref, s State) error
	// Release removes r.Key if r holds it: the claim r.Token when it is
	// set, else the event r.ID. It returns nil when r does not hold the key.
	Release(ctx context.Context, r Ref) error
	// Lookup returns the holders of those keys that are held and unexpired
	// at now, reading in batches where the store allows.
	Lookup(ctx context.Context, keys []string, now time.Time) (map[string]Holder, error)
}

// Claim is one key claimed for one event.
type Claim struct {
	Key   string
	Owner string // the dispatcher claiming: stable across its restarts
	Token string // unique to this claim; Confirm must present it
	// Window is how long from now the key is held.
	Window time.Duration
	// Lease is how long from now an unconfirmed claim keeps other owners
	// out. It must cover the claimer's local commit and confirm.
	Lease time.Duration
}

// Check reports what is wrong with c, if anything: the checks every Shared
// implementation makes before it writes. maxKey is the longest key, in
// bytes, that the implementation's store takes.
func (c Claim) Check(maxKey int) error {
	switch {
	case c.Key == "":
		return errors.New("empty key")
	case len(c.Key) > maxKey:
		return fmt.Errorf("key of %d bytes, more than the store's %d", len(c.Key), maxKey)
	case c.Owner == "":
		return errors.New("empty owner")
	case c.Token == "":
		return errors.New("empty token")
	case c.Window <= 0:
		return fmt.Errorf("window %v is not positive", c.Window)
	case c.Lease <= 0:
		return fmt.Errorf("lease %v is not positive", c.Lease)
	}
	return nil
}

// Ref names a claim, or the event that holds a key.
type Ref struct {
	Key   string
	Owner string
	Token string // the claim; set for Confirm, and for Release before Confirm
	ID    string // the event's ID in its owner's file
}

// Check reports what is wrong with r, if anything, for an operation that
// needs its token, its ID, or neither.
func (r Ref) Check(needToken, needID bool) error {
	switch {
	case r.Key == "":
		return errors.New("empty key")
	case r.Owner == "":
		return errors.New("empty owner")
	case needToken && r.Token == "":
		return errors.New("empty token")
	case needID && r.ID == "":
		return errors.New("empty event ID")
	}
	return nil
}

// Holder is who holds a key in a Shared window.
type Holder struct {
	Owner   string
	Token   string
	ID      string // the event's ID in its owner's file; empty while Claimed
	State   State
	Lease   time.Time // for Claimed: when other owners may take the key over
	Expires time.Time
}

// ErrLost is returned by a change to a key that the caller no longer holds:
// another owner took its unconfirmed claim over after the lease passed, or
// the key expired and was claimed again.
var ErrLost = errors.New("idempotency: the key is held by another claim")

// ErrUnavailable is matched (errors.Is) by every *UnavailableError.
var ErrUnavailable = errors.New("idempotency: shared key window unavailable")

// UnavailableError reports that the shared window could not be reached, or
// refused a request for load. Nothing was decided: the caller may retry.
type UnavailableError struct {
	Op        string // Claim, Confirm, Mark, Release or Lookup
	Key       string // the key, when the request was about one
	Throttled bool   // the store refused for load rather than failing
	Err       error  // the cause, as the client returned it
}

func (e *UnavailableError) Error() string {
	what := "unavailable"
	if e.Throttled {
		what = "throttled"
	}
	if e.Key != "" {
		return fmt.Sprintf("idempotency: %s key %q: shared key window %s: %v", e.Op, e.Key, what, e.Err)
	}
	return fmt.Sprintf("idempotency: %s: shared key window %s: %v", e.Op, what, e.Err)
}

// Unwrap returns the cause.
func (e *UnavailableError) Unwrap() error { return e.Err }

// Is reports whether target is ErrUnavailable.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }
