package main

import (
	"errors"
	"flag"
	"fmt"

	"github.com/lambdadispatch/dispatcher/internal/wire"
)

const cancelUsage = `cancel [flags] FILE [ID ...]
--url URL cancel [flags] [ID ...]

Cancels queued events: the IDs given, or those --function and --state
select, or every one with --all, a page of a thousand at a time. A ready
or scheduled event is removed; a leased one is removed when its
invocation returns (on a file: a dispatcher that died holding it), and
never retried. Their keys are released unless --keep-key. Asks for
confirmation on stdin unless --yes: then cancels the events counted, not
any that came since. An answer other than y exits 1 and cancels nothing.`

func (c *cli) cmdCancel(args []string) error {
	fs := flag.NewFlagSet("cancel", flag.ContinueOnError)
	all := fs.Bool("all", false, "cancel every queued event")
	function := fs.String("function", "", "only events for `FUNCTION`")
	state := fs.String("state", "", "only events in `STATE`: ready, scheduled or leased")
	keep := fs.Bool("keep-key", false, "keep the cancelled events' keys held until their windows end")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	if err := c.parse(fs, cancelUsage, args); err != nil {
		return err
	}
	path, ids, err := c.operands(fs, 0)
	if err != nil {
		return err
	}
	if err := checkIDs(ids, path == ""); err != nil {
		return err
	}
	switch *state {
	case "", "ready", "scheduled", "leased":
	default:
		return usageErr("unknown state %q: want ready, scheduled or leased", *state)
	}
	q := listQuery{function: *function, state: *state}
	filtered := q != (listQuery{})
	switch {
	case len(ids) > 0 && (filtered || *all):
		return usageErr("give IDs, or --function/--state/--all, not both")
	case len(ids) == 0 && !filtered && !*all:
		return usageErr("nothing selected: give IDs, --function, --state, or --all")
	}
	if err := c.connect(path, true); err != nil {
		return err
	}
	cancel := func(ids []string) (int, error) { return c.api.cancel(ids, *keep) }
	p := c.progress()
	var n int
	if len(ids) == 0 && *yes {
		n, err = c.actOnPages(c.eventIDs(q), cancel, p, "cancelled")
	} else {
		if len(ids) == 0 {
			ids, err = c.allIDs(c.eventIDs(q), p)
			p.done()
			if err != nil {
				return err
			}
		}
		if len(ids) > 0 && !*yes && !c.confirm("cancel %d events?", len(ids)) {
			return &cliError{code: exitFailed, err: errors.New("aborted: nothing cancelled")}
		}
		p = c.progress()
		n, err = c.actOnIDs(ids, cancel, p, "cancelled")
	}
	p.done()
	if err != nil && n == 0 {
		return err
	}
	if err != nil {
		return wrapErr(err, "cancelled %d, then", n)
	}
	if err := c.release(); err != nil {
		return err
	}
	if c.json {
		return c.writeJSON(wire.Cancelled{Cancelled: n})
	}
	_, err = fmt.Fprintf(c.stdout, "cancelled %d events\n", n)
	return err
}
