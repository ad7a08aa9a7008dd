package main

import (
	"flag"
	"fmt"
	"strconv"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/internal/wire"
)

const redriveUsage = `redrive [flags] [ID...] FILE
--url URL redrive [flags] [ID...]

Queues dead letters again as new events (attempts reset, key kept): the
letters with the given ids, or those the filter selects, or every one with
--all, a page of a thousand at a time. Exits 4 when ids were given and
none named a letter.`

func (c *cli) cmdRedrive(args []string) error {
	fs := flag.NewFlagSet("redrive", flag.ContinueOnError)
	all := fs.Bool("all", false, "redrive every letter")
	function := fs.String("function", "", "only letters for `FUNCTION`")
	reason := fs.String("reason", "", "only letters with `REASON`: "+wire.ReasonIDs())
	to := fs.String("to", "", "send the events to `FUNCTION` instead of their own")
	qualifier := fs.String("qualifier", "", "with qualifier `Q` instead of their own")
	if err := c.parse(fs, redriveUsage, args); err != nil {
		return err
	}
	path, ids, err := c.operands(fs, -1)
	if err != nil {
		return err
	}
	if err := checkIDs(ids, path == ""); err != nil {
		return err
	}
	r, err := reasonFlag(*reason)
	if err != nil {
		return err
	}
	filtered := *function != "" || r != ""
	switch {
	case len(ids) > 0 && (filtered || *all):
		return usageErr("give ids or a filter (--function, --reason, --all), not both")
	case len(ids) == 0 && !filtered && !*all:
		return usageErr("nothing selected: give ids, --function or --reason, or --all")
	}
	// Checked here as well as by the service: when no letter matches, the
	// service is never asked, and a typo must not pass for success.
	if *to != "" || *qualifier != "" {
		fn := *to
		if fn == "" {
			fn = "function" // any valid name: only the qualifier is checked
		}
		if err := dispatcher.ValidateEvent(dispatcher.Event{Function: fn, Qualifier: *qualifier}); err != nil {
			return &cliError{code: exitUsage, err: err}
		}
	}
	if err := c.connect(path, true); err != nil {
		return err
	}
	redrive := func(ids []string) (int, error) { return c.api.redrive(ids, *to, *qualifier) }
	p := c.progress()
	var n int
	if len(ids) > 0 {
		n, err = c.actOnIDs(ids, redrive, p, "redriven")
	} else {
		n, err = c.actOnPages(c.letterIDs(listQuery{function: *function, reason: r}), redrive, p, "redriven")
	}
	p.done()
	if err != nil && n == 0 {
		return err
	}
	if err != nil {
		return wrapErr(err, "redrove %d, then", n)
	}
	if err := c.release(); err != nil {
		return err
	}
	if c.json {
		if err := c.writeJSON(wire.Redriven{Redriven: n}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(c.stdout, "redriven: %d\n", n)
	}
	if len(ids) > 0 && n < len(ids) {
		if n == 0 {
			return notFoundErr("no letter has any of the ids given")
		}
		fmt.Fprintf(c.stderr, "%d of the ids named no letter\n", len(ids)-n)
	}
	return nil
}

// checkIDs refuses an operand that is not an id; remote says there is no
// FILE among them to mistake for one.
func checkIDs(ids []string, remote bool) error {
	for _, id := range ids {
		if _, err := strconv.ParseUint(id, 10, 64); err != nil {
			if remote {
				return usageErr("ID %q: want a number (with --url there is no FILE; flags go before the ids)", id)
			}
			return usageErr("ID %q: want a number (flags go before the ids)", id)
		}
	}
	return nil
}
