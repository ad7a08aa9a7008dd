package store

import (
	"sync"
	"time"
)

// queueClock is the time the queue's own schedule runs on: due times,
// leases, attempt times and so an event's age. It is the wall clock read
// once, at Open, and moved on from there by a monotonic clock only.
//
// Why not the wall clock: edge devices without a battery-backed clock boot
// in the past and are set right later, or the other way round. With due
// times on the wall clock, a step back of two hours left every ready event
// waiting two hours, and a step forward made retries due at once and
// dead-lettered events for an age they never had. A step of the wall clock
// while the store is open moves nothing here.
//
// Across a restart the wall clock is all there is, so Open takes the later
// of it and the queue time the file last recorded: a device that boots in
// the past carries on from where it stopped rather than waiting for its
// clock to catch up, and time spent switched off counts when the clock
// knows of it.
type queueClock struct {
	elapsed func() time.Duration // monotonic, from an arbitrary origin

	mu     sync.Mutex
	base   int64         // queue time at origin, unix nanoseconds
	origin time.Duration // elapsed() when base was taken
	last   int64         // the latest reading, so it never goes back
}

// monotonic returns a function reading the process's monotonic clock:
// time.Since uses the monotonic reading time.Now carries, which no step of
// the wall clock moves.
func monotonic() func() time.Duration {
	start := time.Now()
	return func() time.Duration { return time.Since(start) }
}

func newQueueClock(elapsed func() time.Duration) *queueClock {
	if elapsed == nil {
		elapsed = monotonic()
	}
	return &queueClock{elapsed: elapsed}
}

// anchor starts the clock at the later of wall and recorded, both unix
// nanoseconds.
func (c *queueClock) anchor(wall, recorded int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.base, c.origin, c.last = max(wall, recorded), c.elapsed(), 0
}

// now returns the queue time in unix nanoseconds. It never goes back, even
// if the elapsed source does (a test's).
func (c *queueClock) now() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.base + int64(c.elapsed()-c.origin)
	if n < c.last {
		n = c.last
	}
	c.last = n
	return n
}
