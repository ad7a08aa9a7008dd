package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/deadletter"
)

const lsUsage = `ls [flags] FILE

Lists queued events (every queued state unless --state says which), dead
letters with --state dead (implied by --reason), or the eviction ledger
with --state evicted (events dropped by WithFullPolicy(DropOldest)). One page of --limit
rows at a time: the next page's cursor is printed on stderr as
"more: --after ID", or with --json as a last line {"next":"ID"}.`

func (c *cli) cmdLs(args []string) error {
	fs := flag.NewFlagSet("ls", flag.ContinueOnError)
	state := fs.String("state", "", "only those in `STATE`: ready, scheduled, leased, dead or evicted (default: every queued state)")
	function := fs.String("function", "", "only events or letters for `FUNCTION`")
	reason := fs.String("reason", "", "only letters with `REASON`: retries-exhausted, event-age-exceeded or rejected (implies --state dead)")
	older := fs.Duration("older-than", 0, "only those enqueued (letters: dead-lettered) more than `DURATION` ago")
	limit := fs.Int("limit", 100, "at most `N` rows; 0 for all")
	after := fs.String("after", "", "start after the id `CURSOR` (from a previous page)")
	if err := c.parse(fs, lsUsage, args); err != nil {
		return err
	}
	path, err := oneFile(fs)
	if err != nil {
		return err
	}
	switch *state {
	case "", "ready", "scheduled", "leased", "dead", "evicted":
	default:
		return usageErr("unknown state %q: want ready, scheduled, leased, dead or evicted", *state)
	}
	r, err := parseReason(*reason)
	if err != nil {
		return err
	}
	if r != "" {
		if *state != "" && *state != "dead" {
			return usageErr("--reason applies to dead letters only")
		}
		*state = "dead"
	}
	if *limit < 0 {
		return usageErr("--limit %d: want 0 or more", *limit)
	}
	if *older < 0 {
		return usageErr("--older-than %v: want a positive duration", *older)
	}
	if *after != "" {
		if _, err := strconv.ParseUint(*after, 10, 64); err != nil {
			return usageErr("--after %q: want an id", *after)
		}
	}
	now := time.Now()
	if *state == "evicted" {
		if *function != "" || *older > 0 {
			return usageErr("--function and --older-than do not apply to --state evicted")
		}
		return c.lsEvicted(path, *after, *limit)
	}
	if *state == "dead" {
		f := dispatcher.LetterFilter{Function: *function, Reason: r}
		if *older > 0 {
			f.Until = now.Add(-*older)
		}
		return c.lsDead(path, f, *after, *limit)
	}
	// Due times, and so states, are on the queue's clock, not this
	// machine's: the library computes them.
	f := dispatcher.EventFilter{Function: *function, State: dispatcher.EventState(*state)}
	if *older > 0 {
		f.EnqueuedBefore = now.Add(-*older)
	}
	return c.lsQueued(path, f, *after, *limit)
}

func (c *cli) lsQueued(path string, f dispatcher.EventFilter, after string, limit int) error {
	d, err := openReader(path)
	if err != nil {
		return err
	}
	defer d.Close()
	tw := c.table()
	if !c.json {
		fmt.Fprintln(tw, "ID\tSTATE\tFUNCTION\tQUALIFIER\tKEY\tATTEMPTS\tENQUEUED\tSIZE")
	}
	emit := func(e dispatcher.QueuedEvent) error {
		if c.json {
			return c.writeJSON(toEventJSON(e, false))
		}
		_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\n", e.ID, e.State, e.Function,
			dash(e.Qualifier), dash(e.Key), e.Attempts, fmtTime(e.Enqueued), e.Size)
		return err
	}
	ctx := context.Background()
	next, err := listPages(after, limit, queuedPage, func(after string, n int) ([]dispatcher.QueuedEvent, string, error) {
		return d.Events().Find(ctx, f, after, n)
	}, func(e dispatcher.QueuedEvent) string { return e.ID }, emit)
	if err != nil {
		return err
	}
	return c.endPage(tw, next)
}

// queuedPage is how many events ls without a limit reads per call.
const queuedPage = 1000

// listPages emits what find returns from the cursor after on: every item,
// page by page, when limit is 0, else up to limit, and then the cursor of
// the next page ("" when there is none). One item more than asked says
// whether another page exists.
func listPages[T any](after string, limit, page int, find func(after string, n int) ([]T, string, error), id func(T) string, emit func(T) error) (string, error) {
	if limit > 0 {
		items, _, err := find(after, limit+1)
		if err != nil {
			return "", err
		}
		next := ""
		if len(items) > limit {
			items = items[:limit]
			next = id(items[limit-1])
		}
		for _, it := range items {
			if err := emit(it); err != nil {
				return "", err
			}
		}
		return next, nil
	}
	for {
		items, cursor, err := find(after, page)
		if err != nil {
			return "", err
		}
		for _, it := range items {
			if err := emit(it); err != nil {
				return "", err
			}
		}
		if cursor == "" {
			return "", nil
		}
		after = cursor
	}
}

func (c *cli) endPage(tw *tabwriter.Writer, next string) error {
	if c.json {
		if next != "" {
			return c.writeJSON(map[string]string{"next": next})
		}
		return nil
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if next != "" {
		fmt.Fprintf(c.stderr, "more: --after %s\n", next)
	}
	return nil
}

func (c *cli) lsDead(path string, f dispatcher.LetterFilter, after string, limit int) error {
	d, err := openReader(path)
	if err != nil {
		return err
	}
	defer d.Close()
	ctx := context.Background()
	dl := d.DeadLetters()
	tw := c.table()
	if !c.json {
		fmt.Fprintln(tw, "ID\tREASON\tFUNCTION\tQUALIFIER\tKEY\tATTEMPTS\tDEAD-LETTERED\tSIZE")
	}
	emit := func(l deadletter.Letter) error {
		if c.json {
			return c.writeJSON(toLetterJSON(l, false))
		}
		_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\n", l.ID, l.Reason, l.Function,
			dash(l.Qualifier), dash(l.Key), l.Attempts, fmtTime(l.DeadLettered), len(l.Payload))
		return err
	}
	next, err := listPages(after, limit, deadletter.MaxListLimit, func(after string, n int) ([]deadletter.Letter, string, error) {
		return dl.Find(ctx, f, after, n)
	}, func(l deadletter.Letter) string { return l.ID }, emit)
	if err != nil {
		return err
	}
	return c.endPage(tw, next)
}

type evictionJSON struct {
	ID       string    `json:"id"`
	Function string    `json:"function"`
	Key      string    `json:"key,omitempty"`
	Enqueued time.Time `json:"enqueued"`
	Size     int64     `json:"size"`
	Priority int       `json:"priority"`
	Reason   string    `json:"reason"`
	Evicted  time.Time `json:"evicted"`
}

func (c *cli) lsEvicted(path, after string, limit int) error {
	d, err := openReader(path)
	if err != nil {
		return err
	}
	defer d.Close()
	tw := c.table()
	if !c.json {
		fmt.Fprintln(tw, "ID\tFUNCTION\tKEY\tPRIORITY\tENQUEUED\tSIZE\tWHY")
	}
	emit := func(e dispatcher.Eviction) error {
		if c.json {
			return c.writeJSON(evictionJSON(e))
		}
		_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\n", e.ID, e.Function, dash(e.Key), e.Priority, fmtTime(e.Enqueued), e.Size, e.Reason)
		return err
	}
	ctx := context.Background()
	next, err := listPages(after, limit, queuedPage, func(after string, n int) ([]dispatcher.Eviction, string, error) {
		return d.Events().Evictions(ctx, after, n)
	}, func(e dispatcher.Eviction) string { return e.ID }, emit)
	if err != nil {
		return err
	}
	return c.endPage(tw, next)
}
