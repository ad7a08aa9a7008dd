package dispatcher

import (
	bolt "go.etcd.io/bbolt"

	"github.com/lambdadispatch/dispatcher/store"
)

// ScanEvents lets the external tests read the queue of an open Dispatcher.
func ScanEvents(d *Dispatcher, fn func(store.Event) error) error { return d.st.Scan(fn) }

// DBForTest exposes the bbolt handle, to seed dead letters directly.
func DBForTest(d *Dispatcher) *bolt.DB { return d.st.DB() }
