package dispatcher

import "github.com/lambdadispatch/dispatcher/store"

// ScanEvents lets the external tests read the queue of an open Dispatcher.
func ScanEvents(d *Dispatcher, fn func(store.Event) error) error { return d.st.Scan(fn) }
