package sharedkeys

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/store"
)

// Config is what the protocol needs. Window, Queue, Local, Now, Lease and
// InvokeTimeout are required; Logger may be nil (discard), Counters nil
// (count for no one) and Duplicate nil.
type Config struct {
	// Window is the key window shared with other dispatchers.
	Window idempotency.Shared
	Queue  Queue
	Local  Local
	Logger *slog.Logger
	// Counters are what the root's Stats.Shared reads.
	Counters *Counters
	// Duplicate is called once for each event refused as a duplicate by
	// Admit: held already, or removed from the queue after its claim was
	// taken over before the confirm (then by whichever call confirmed it).
	Duplicate func()
	// Now is the clock keys' windows and claims are measured on.
	Now func() time.Time
	// Lease is how long an unconfirmed claim keeps other dispatchers out.
	Lease time.Duration
	// InvokeTimeout caps the time BeforeInvoke and Record wait for the
	// window (with 10 s and 5 s).
	InvokeTimeout time.Duration
}

// Queue is the part of *store.Store the protocol writes through.
type Queue interface {
	EnqueueUnique(ctx context.Context, evs []store.NewEvent, w store.KeyWindow) ([]store.Result, error)
	Remove(ctx context.Context, seq uint64, move func(tx *store.Tx, ev store.Event) error) (store.Event, error)
	Update(ctx context.Context, fn func(tx *store.Tx) error) error
}

// Local is the file's own key index: the store's KeyWindow, which the
// events are committed through, and a read of the keys it holds.
type Local interface {
	store.KeyWindow
	// Holds reports, for each of keys, whether the file holds it at now.
	Holds(keys []string, now time.Time) (map[string]bool, error)
}

// Counters count the traffic with the shared window, for the root's
// Stats.Shared. The root owns them.
type Counters struct {
	Claims       atomic.Uint64 // claim requests: one conditional write each
	Waits        atomic.Uint64 // claims that waited for another owner's commit
	Lost         atomic.Uint64 // claims taken over before their confirm
	Unavailable  atomic.Uint64 // requests that found the window unreachable or throttled
	MarksSkipped atomic.Uint64 // outcomes not recorded because the window had just failed
}
