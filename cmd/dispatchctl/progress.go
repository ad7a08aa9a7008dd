package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

// progress shows long work moving on stderr — a count and a rate on one
// line, rewritten in place — when stderr is a terminal and the output is
// not --json, so that it never mixes into what a script reads.
type progress struct {
	w     io.Writer
	on    bool
	now   func() time.Time
	start time.Time
	last  time.Time // of the last line shown
}

// progressEvery spaces the lines count shows: a terminal need not be
// rewritten for every page of a fast local file.
const progressEvery = 100 * time.Millisecond

func (c *cli) progress() *progress {
	p := &progress{w: c.stderr, now: c.now}
	p.start = p.now()
	if c.json {
		return p
	}
	if c.forceProgress {
		p.on = true
		return p
	}
	if f, ok := c.stderr.(*os.File); ok {
		fi, err := f.Stat()
		p.on = err == nil && fi.Mode()&os.ModeCharDevice != 0
	}
	return p
}

// printf shows a line of its own, in place of the last.
func (p *progress) printf(format string, a ...any) {
	if p.on {
		fmt.Fprintf(p.w, "\r\033[K"+format, a...)
	}
}

// count shows n things done and the rate since the start, as
// "redriven 1200 (850/s)", at most once per progressEvery.
func (p *progress) count(verb string, n int64) {
	if !p.on {
		return
	}
	now := p.now()
	if !p.last.IsZero() && now.Sub(p.last) < progressEvery {
		return
	}
	p.last = now
	p.printf("%s", countLine(verb, n, now.Sub(p.start)))
}

// countLine is what count shows: the rate only once there is time to
// divide by.
func countLine(verb string, n int64, elapsed time.Duration) string {
	if elapsed < time.Millisecond {
		return fmt.Sprintf("%s %d", verb, n)
	}
	return fmt.Sprintf("%s %d (%.0f/s)", verb, n, float64(n)/elapsed.Seconds())
}

// total leaves the last count on the terminal, with its rate: for export,
// whose stdout is the data, this is the only summary.
func (p *progress) total(verb string, n int64) {
	p.printf("%s\n", countLine(verb, n, p.now().Sub(p.start)))
}

// done clears the line, for the result to be printed.
func (p *progress) done() {
	if p.on {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
