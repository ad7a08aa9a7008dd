// Package dispatcher is an embeddable, durable queue of asynchronous AWS
// Lambda invocations.
//
// An application opens one file, enqueues events, and gets a Receipt only
// once the event is committed and fsync'd: a crash, a reboot or a week
// without network loses nothing that was acknowledged.
//
// # Basics
//
//	d, err := dispatcher.Open("events.db")
//	if err != nil { ... }
//	defer d.Close()
//	r, err := d.Enqueue(ctx, dispatcher.Event{Function: "orders", Payload: []byte(`{"id":42}`), Key: "order-42"})
//
// Concurrent Enqueue calls share one transaction and one fsync (group
// commit), so throughput grows with the number of producers. EnqueueBatch
// writes a slice of events all or nothing.
//
// # Validation
//
// Events are checked before anything is written, against what Lambda's
// Invoke accepts: the function in any of its forms (name, name:alias,
// partial or full ARN), the qualifier, a payload that is JSON and within
// the asynchronous payload limit, a bounded key. A bad event gives an
// error wrapping ErrInvalidEvent, as a *ValidationError naming the field.
//
// # Sending
//
// With WithLambda, Run delivers until its context ends: workers lease due
// events in batches and invoke Lambda with InvocationType Event, the SDK's
// own retries off. Each outcome is classified by package retry: success is
// acked; throttled and transient failures are retried with exponential
// backoff and jitter, twice by default (three attempts, like Lambda's own
// asynchronous retries); permanent failures, exhausted retries and events
// past their age go to the dead-letter sink, in the queue's file by
// default; an unreachable endpoint or failing credentials pause dispatch
// as a whole without spending attempts, until a DryRun probe gets through.
// Check makes one DryRun invocation, to fail fast at start-up.
//
// # Inspection
//
// Events reads the queued events and DeadLetters the dead letters: Get
// one by id, Find a page at a time with a cursor, or range over All, an
// iter.Seq2 that reads in short transactions and stops when the loop
// breaks. AdminHandler and the dispatchctl command read through them.
//
// # Guarantees
//
// Delivery is at least once: an event leased by a process that dies is
// returned to the queue on the next Open, with the attempts it spent kept.
// The queue is never loaded into memory: Open reads a few counters and the
// leases, whatever the backlog.
//
// # Caveats
//
// One file belongs to one Dispatcher at a time; a second Open fails with
// ErrFileInUse after WithLockTimeout. The file grows with the backlog and,
// like every bbolt file, does not shrink by itself.
package dispatcher
