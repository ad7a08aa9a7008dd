package main

import (
	"flag"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/lambdadispatch/dispatcher/internal/wire"
)

const lsUsage = `ls [flags] FILE
--url URL ls [flags]

Lists queued events (every queued state unless --state says which), dead
letters with --state dead (implied by --reason), or the eviction ledger
with --state evicted (events dropped by WithFullPolicy(DropOldest)). One page of --limit
rows at a time: the next page's cursor is printed on stderr as
"more: --after ID", or with --json as a last line {"next":"ID"}.`

func (c *cli) cmdLs(args []string) error {
	fs := flag.NewFlagSet("ls", flag.ContinueOnError)
	state := fs.String("state", "", "only those in `STATE`: ready, scheduled, leased, dead or evicted (default: every queued state)")
	function := fs.String("function", "", "only events or letters for `FUNCTION`")
	reason := fs.String("reason", "", "only letters with `REASON`: "+wire.ReasonIDs()+" (implies --state dead)")
	older := fs.Duration("older-than", 0, "only those enqueued (letters: dead-lettered) more than `DURATION` ago")
	limit := fs.Int("limit", 100, "at most `N` rows; 0 for all")
	after := fs.String("after", "", "start after the id `CURSOR` (from a previous page)")
	if err := c.parse(fs, lsUsage, args); err != nil {
		return err
	}
	path, err := c.oneFile(fs)
	if err != nil {
		return err
	}
	switch *state {
	case "", "ready", "scheduled", "leased", wire.StateDead, wire.StateEvicted:
	default:
		return usageErr("unknown state %q: want ready, scheduled, leased, dead or evicted", *state)
	}
	r, err := reasonFlag(*reason)
	if err != nil {
		return err
	}
	if r != "" {
		if *state != "" && *state != wire.StateDead {
			return usageErr("--reason applies to dead letters only")
		}
		*state = wire.StateDead
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
	if *state == wire.StateEvicted && (*function != "" || *older > 0) {
		return usageErr("--function and --older-than do not apply to --state evicted")
	}
	q := listQuery{function: *function, reason: r}
	if *older > 0 {
		// Due times, and so states, are on the queue's clock, not this
		// machine's: the service computes them. Ages are this machine's.
		q.until = time.Now().Add(-*older)
	}
	if err := c.connect(path, false); err != nil {
		return err
	}
	switch *state {
	case wire.StateEvicted:
		return c.lsEvicted(*after, *limit)
	case wire.StateDead:
		return c.lsDead(q, *after, *limit)
	}
	q.state = *state
	return c.lsQueued(q, *after, *limit)
}

func (c *cli) lsQueued(q listQuery, after string, limit int) error {
	tw := c.table()
	if !c.json {
		fmt.Fprintln(tw, "ID\tSTATE\tFUNCTION\tQUALIFIER\tKEY\tATTEMPTS\tENQUEUED\tSIZE")
	}
	emit := func(e wire.Event) error {
		if c.json {
			return c.writeJSON(e)
		}
		_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\n", e.ID, e.State, e.Function,
			dash(e.Qualifier), dash(e.Key), e.Attempts, fmtTime(e.Enqueued), e.Size)
		return err
	}
	next, err := listPages(after, limit, c.page, func(after string, n int) ([]wire.Event, string, error) {
		pg, err := c.api.events(q, after, n)
		return pg.Items, pg.Next, err
	}, func(e wire.Event) string { return e.ID }, emit)
	if err != nil {
		return err
	}
	return c.endPage(tw, next)
}

// listPages emits what find returns from the cursor after on: every item,
// page by page, when limit is 0, else up to limit, and then the cursor of
// the next page ("" when there is none). A page holds at most page items,
// the API's largest; one item more than asked, when it fits, says whether
// another page exists, since a full page's cursor does not.
func listPages[T any](after string, limit, page int, find func(after string, n int) ([]T, string, error), id func(T) string, emit func(T) error) (string, error) {
	emitted, last := 0, ""
	for {
		n := page
		if limit > 0 {
			n = min(limit-emitted+1, page)
		}
		items, next, err := find(after, n)
		if err != nil {
			return "", err
		}
		for _, it := range items {
			if limit > 0 && emitted == limit {
				return last, nil // an item beyond the limit: there is a next page
			}
			if err := emit(it); err != nil {
				return "", err
			}
			emitted++
			last = id(it)
		}
		if next == "" || len(items) == 0 {
			return "", nil
		}
		after = next
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

func (c *cli) lsDead(q listQuery, after string, limit int) error {
	tw := c.table()
	if !c.json {
		fmt.Fprintln(tw, "ID\tREASON\tFUNCTION\tQUALIFIER\tKEY\tATTEMPTS\tDEAD-LETTERED\tSIZE")
	}
	emit := func(l wire.Letter) error {
		if c.json {
			return c.writeJSON(l)
		}
		_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\n", l.ID, l.Reason, l.Function,
			dash(l.Qualifier), dash(l.Key), l.Attempts, fmtTime(l.DeadLettered), l.Size)
		return err
	}
	next, err := listPages(after, limit, c.page, func(after string, n int) ([]wire.Letter, string, error) {
		pg, err := c.api.letters(q, after, n)
		return pg.Items, pg.Next, err
	}, func(l wire.Letter) string { return l.ID }, emit)
	if err != nil {
		return err
	}
	return c.endPage(tw, next)
}

func (c *cli) lsEvicted(after string, limit int) error {
	tw := c.table()
	if !c.json {
		fmt.Fprintln(tw, "ID\tFUNCTION\tKEY\tPRIORITY\tENQUEUED\tSIZE\tWHY")
	}
	emit := func(e wire.Eviction) error {
		if c.json {
			return c.writeJSON(e)
		}
		_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\n", e.ID, e.Function, dash(e.Key), e.Priority, fmtTime(e.Enqueued), e.Size, e.Reason)
		return err
	}
	next, err := listPages(after, limit, c.page, func(after string, n int) ([]wire.Eviction, string, error) {
		pg, err := c.api.evictions(after, n)
		return pg.Items, pg.Next, err
	}, func(e wire.Eviction) string { return e.ID }, emit)
	if err != nil {
		return err
	}
	return c.endPage(tw, next)
}
