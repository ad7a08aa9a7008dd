package wal_test

import (
	"fmt"
	"log"
	"os"

	"github.com/lambdadispatch/dispatcher/internal/wal"
)

// Two sessions of a log: the first appends and syncs, the second replays
// what the first wrote, appends after it, and recycles what a checkpoint
// covered.
func Example() {
	dir, err := os.MkdirTemp("", "wal-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	l, err := wal.Open(dir, wal.Options{})
	if err != nil {
		log.Fatal(err)
	}
	// Replay first, always: a new log has nothing to replay.
	if _, err := l.Replay(0, nil); err != nil {
		log.Fatal(err)
	}
	first, end, err := l.Append([]byte("event 1"), []byte("event 2"))
	if err != nil {
		log.Fatal(err)
	}
	// Durable, and so acknowledged, once Sync returns.
	if err := l.Sync(); err != nil {
		log.Fatal(err)
	}
	// end is where the next record goes: after event 2, or at the page
	// boundary a pad mark leads to (see the package doc).
	fmt.Println("appended, the first at", first)
	if err := l.Close(); err != nil {
		log.Fatal(err)
	}

	l, err = wal.Open(dir, wal.Options{})
	if err != nil {
		log.Fatal(err)
	}
	tail, err := l.Replay(0, func(p wal.Position, data []byte) error {
		fmt.Printf("replayed %q at %d\n", data, p)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("ends where the last session did:", tail.End == end, "torn:", tail.Torn, "-", tail.Reason)
	if _, _, err := l.Append([]byte("event 3")); err != nil {
		log.Fatal(err)
	}
	if err := l.Sync(); err != nil {
		log.Fatal(err)
	}
	// A checkpoint stored events 1 and 2 elsewhere and recorded end:
	// the segments wholly below it can go (here none: the first segment
	// still holds end).
	if err := l.Recycle(end); err != nil {
		log.Fatal(err)
	}
	if err := l.Close(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// appended, the first at 64
	// replayed "event 1" at 64
	// replayed "event 2" at 79
	// ends where the last session did: true torn: false - closed
}
