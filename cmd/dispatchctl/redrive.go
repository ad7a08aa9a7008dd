package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"

	"github.com/lambdadispatch/dispatcher"
)

const redriveUsage = `redrive [flags] [ID...] FILE

Queues dead letters again as new events (attempts reset, key kept): the
letters with the given ids, or those the filter selects, or every one with
--all. Exits 4 when ids were given and none named a letter.`

func (c *cli) cmdRedrive(args []string) error {
	fs := flag.NewFlagSet("redrive", flag.ContinueOnError)
	all := fs.Bool("all", false, "redrive every letter")
	function := fs.String("function", "", "only letters for `FUNCTION`")
	reason := fs.String("reason", "", "only letters with `REASON`: retries-exhausted, event-age-exceeded or rejected")
	to := fs.String("to", "", "send the events to `FUNCTION` instead of their own")
	qualifier := fs.String("qualifier", "", "with qualifier `Q` instead of their own")
	if err := c.parse(fs, redriveUsage, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageErr("missing FILE")
	}
	path := fs.Arg(fs.NArg() - 1)
	ids := fs.Args()[:fs.NArg()-1]
	for _, id := range ids {
		if _, err := strconv.ParseUint(id, 10, 64); err != nil {
			return usageErr("ID %q: want a number (flags go before the ids)", id)
		}
	}
	r, err := parseReason(*reason)
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
	d, err := openDispatcher(path)
	if err != nil {
		return err
	}
	defer d.Close()
	ctx := context.Background()
	o := dispatcher.RedriveOptions{Function: *to, Qualifier: *qualifier}
	p := c.progress()
	p.printf("redriving…")
	var n int
	if len(ids) > 0 {
		n, err = d.DeadLetters().Redrive(ctx, ids, o)
	} else {
		n, err = d.DeadLetters().RedriveMatching(ctx, dispatcher.LetterFilter{Function: *function, Reason: r}, o)
	}
	p.done()
	if err != nil {
		return fmt.Errorf("redrove %d, then: %w", n, err)
	}
	if c.json {
		if err := c.writeJSON(map[string]int{"redriven": n}); err != nil {
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
