package dispatcher

import (
	"time"

	"github.com/lambdadispatch/dispatcher/internal/admin"
	"github.com/lambdadispatch/dispatcher/store"
)

// ScanEvents lets the external tests read the queue of an open Dispatcher.
func ScanEvents(d *Dispatcher, fn func(store.Event) error) error { return d.st.Scan(fn) }

// StoreForTest exposes the queue's store, so that tests seed dead letters
// and keys through the packages that own them.
func StoreForTest(d *Dispatcher) *store.Store { return d.st }

// WithElapsed replaces the monotonic clock the queue's schedule runs on,
// so tests can move due times and ages without waiting.
func WithElapsed(f func() time.Duration) Option {
	return func(o *options) error {
		o.elapsed = f
		return nil
	}
}

// AdminPatterns lists the admin handler's routes, so that a test can call
// every one, including routes added after it was written.
func AdminPatterns(*Dispatcher) []string { return admin.Patterns() }
