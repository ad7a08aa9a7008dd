package main

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/lambdadispatch/dispatcher/internal/wire"
)

const purgeUsage = `purge [flags] FILE
--url URL purge [flags]

Deletes the dead letters the filter selects, or every one with --all, a
page of a thousand at a time. Counts them first and asks for confirmation
on stdin unless --yes: then deletes the letters counted, not any that
came since. An answer other than y exits 1 and deletes nothing.`

func (c *cli) cmdPurge(args []string) error {
	fs := flag.NewFlagSet("purge", flag.ContinueOnError)
	all := fs.Bool("all", false, "purge every letter")
	function := fs.String("function", "", "only letters for `FUNCTION`")
	reason := fs.String("reason", "", "only letters with `REASON`: "+wire.ReasonIDs())
	older := fs.Duration("older-than", 0, "only letters dead-lettered more than `DURATION` ago")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	if err := c.parse(fs, purgeUsage, args); err != nil {
		return err
	}
	path, err := c.oneFile(fs)
	if err != nil {
		return err
	}
	r, err := reasonFlag(*reason)
	if err != nil {
		return err
	}
	if *older < 0 {
		return usageErr("--older-than %v: want a positive duration", *older)
	}
	q := listQuery{function: *function, reason: r}
	if *older > 0 {
		q.until = time.Now().Add(-*older)
	}
	if q == (listQuery{}) && !*all {
		return usageErr("nothing selected: give --function, --reason or --older-than, or --all")
	}
	if err := c.connect(path, true); err != nil {
		return err
	}
	p := c.progress()
	var n int
	if *yes {
		n, err = c.actOnPages(c.letterIDs(q), c.api.purge, p, "purged")
	} else {
		var ids []string
		ids, err = c.allIDs(c.letterIDs(q), p)
		p.done()
		if err != nil {
			return err
		}
		if len(ids) > 0 && !c.confirm("purge %d letters?", len(ids)) {
			return &cliError{code: exitFailed, err: errors.New("aborted: nothing purged")}
		}
		p = c.progress()
		n, err = c.actOnIDs(ids, c.api.purge, p, "purged")
	}
	p.done()
	if err != nil && n == 0 {
		return err
	}
	if err != nil {
		return wrapErr(err, "purged %d, then", n)
	}
	if err := c.release(); err != nil {
		return err
	}
	if c.json {
		return c.writeJSON(wire.Purged{Purged: n})
	}
	_, err = fmt.Fprintf(c.stdout, "purged: %d\n", n)
	return err
}
