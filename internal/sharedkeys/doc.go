// Package sharedkeys is the dispatcher's side of a key window shared with
// other dispatchers (the root's WithSharedKeys): claim, commit with a
// pending record, confirm. The protocol itself, the states a key moves
// through and why a death between any two steps loses nothing, is the
// contract of idempotency.Shared and is written down once, in package
// idempotency's doc under "Shared windows". This package says how the
// dispatcher keeps its half of it; each step below names the function that
// does it.
//
// # The four calls
//
// The root package calls a [Keys] at four points, and never otherwise:
//
//   - [Keys.Admit] on Enqueue of keyed events: plan (which keys the file
//     holds already, which are held elsewhere), claim the rest, commit the
//     events with a pending record of each claim, confirm.
//   - [Keys.BeforeInvoke] before a keyed event is sent: it waits for an
//     Enqueue still confirming the event's claim, and a claim still
//     unconfirmed after that is tried once more, so an event is never
//     invoked and then found to have lost its key.
//   - [Keys.Record] after its outcome: the key is marked Delivered or
//     DeadLettered in the shared window. These two are the methods of
//     package delivery's Shared interface, so the root hands a *Keys to
//     delivery as it is.
//   - [Keys.Redrive] for a redrive of dead letters: the keys held by the
//     dead-lettered events are released and claimed afresh for the new
//     ones.
//
// [Open] also starts the one goroutine of the package, which confirms the
// claims left unconfirmed (by a crash, or by a window that could not be
// reached) at Open and then every second, backing off while the window is
// unavailable; [Keys.Close] stops it and waits for it.
//
// # In the queue's file
//
// Two buckets of the queue's file belong to this package, written through
// the store's transactions: "shared" holds the file's owner identity
// (stable across restarts, so that a replayed Enqueue takes its own claim
// back at once), and "sharedpending" holds one record per committed event
// whose claim is not yet confirmed, keyed by the event's sequence number
// (8 bytes, big-endian). A record is
//
//	version (1) | window end, Unix ns (8, big-endian) | uvarint len(token) | token | key
//
// It is written in the transaction that writes its event, and deleted
// after the confirm, in batches, by the background loop: a record left by
// a crash is confirmed again at the next Open, which is harmless.
//
// # Within one process
//
// Claims of one key are serialised by an in-process lock, so that a second
// Enqueue of a key cannot replace (same owner) the claim that the first is
// about to confirm; delivery takes the same lock before it sends a keyed
// event, so that an event is not sent while its Enqueue may yet find it a
// duplicate, and an event removed as one while leased is not sent at all.
// Concurrent confirms of one event's claim (Enqueue's, delivery's, the
// background loop's) share one attempt. When the window fails during
// delivery, delivery goes on from the file's own index for a while
// (degradedFor) rather than make every event wait for it to fail again.
package sharedkeys
