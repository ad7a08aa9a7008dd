package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/lambdadispatch/dispatcher"
)

const cancelUsage = `cancel [flags] FILE [ID ...]

Cancels queued events: the IDs given, or those --function and --state
select, or every one with --all. A ready or scheduled event is removed; a
leased one (a dispatcher that died holding it) is removed too, and never
retried. Their keys are released unless --keep-key. Asks for confirmation
on stdin unless --yes; an answer other than y exits 1 and cancels nothing.`

type cancelJSON struct {
	Cancelled int `json:"cancelled"`
}

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
	if fs.NArg() < 1 {
		return usageErr("want FILE, then optional IDs")
	}
	path, ids := fs.Arg(0), fs.Args()[1:]
	for _, id := range ids {
		if _, err := strconv.ParseUint(id, 10, 64); err != nil {
			return usageErr("%q is not an event id", id)
		}
	}
	switch *state {
	case "", "ready", "scheduled", "leased":
	default:
		return usageErr("unknown state %q: want ready, scheduled or leased", *state)
	}
	f := dispatcher.EventFilter{Function: *function, State: dispatcher.EventState(*state)}
	filtered := f != (dispatcher.EventFilter{})
	switch {
	case len(ids) > 0 && (filtered || *all):
		return usageErr("give IDs, or --function/--state/--all, not both")
	case len(ids) == 0 && !filtered && !*all:
		return usageErr("nothing selected: give IDs, --function, --state, or --all")
	}
	d, err := openDispatcher(path)
	if err != nil {
		return err
	}
	defer d.Close()
	ctx := context.Background()
	if len(ids) == 0 {
		for e, err := range d.Events().All(ctx, f) {
			if err != nil {
				return err
			}
			ids = append(ids, e.ID)
		}
	}
	if len(ids) > 0 && !*yes {
		fmt.Fprintf(c.stderr, "cancel %d events? [y/N] ", len(ids))
		line, _ := bufio.NewReader(c.stdin).ReadString('\n')
		switch strings.ToLower(strings.TrimSpace(line)) {
		case "y", "yes":
		default:
			return &cliError{code: exitFailed, err: errors.New("aborted: nothing cancelled")}
		}
	}
	n, err := d.Events().Cancel(ctx, ids, dispatcher.CancelOptions{KeepKey: *keep})
	if err != nil {
		return err
	}
	if err := d.Close(); err != nil {
		return err
	}
	if c.json {
		return c.writeJSON(cancelJSON{Cancelled: n})
	}
	_, err = fmt.Fprintf(c.stdout, "cancelled %d events\n", n)
	return err
}
