package main

import (
	"flag"
	"fmt"
)

const statsUsage = `stats [flags] FILE
--url URL stats

Prints the queue's counts: ready, scheduled, leased, bytes held, corrupt
records set aside, dead letters and deduplication keys; then, for each
function with events queued or paused, its ready and scheduled events and
whether it is paused. --json prints the admin API's GET /stats, totals
since the dispatcher opened included (zero on a file).`

func (c *cli) cmdStats(args []string) error {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	if err := c.parse(fs, statsUsage, args); err != nil {
		return err
	}
	path, err := c.oneFile(fs)
	if err != nil {
		return err
	}
	if err := c.connect(path, false); err != nil {
		return err
	}
	s, err := c.api.stats()
	if err != nil {
		return err
	}
	if c.json {
		return c.writeJSON(s)
	}
	tw := c.table()
	fmt.Fprintf(tw, "ready\t%d\n", s.Ready)
	fmt.Fprintf(tw, "scheduled\t%d\n", s.Scheduled)
	fmt.Fprintf(tw, "leased\t%d\n", s.Leased)
	fmt.Fprintf(tw, "queued\t%d\n", s.Queued)
	fmt.Fprintf(tw, "bytes\t%d\n", s.Bytes)
	fmt.Fprintf(tw, "corrupt\t%d\n", s.Corrupt)
	fmt.Fprintf(tw, "dead letters\t%d\n", s.DeadLetters)
	fmt.Fprintf(tw, "keys\t%d\n", s.Keys)
	fmt.Fprintf(tw, "file size\t%d\n", s.FileSize)
	if len(s.Functions) > 0 {
		fmt.Fprintf(tw, "\nfunction\tready\tscheduled\tpaused\n")
		for _, f := range s.Functions {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%v\n", f.Function, f.Ready, f.Scheduled, f.Paused)
		}
	}
	return tw.Flush()
}
