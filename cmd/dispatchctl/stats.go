package main

import (
	"flag"
	"fmt"
	"os"
)

const statsUsage = `stats [flags] FILE

Prints the queue's counts: ready, scheduled, leased, bytes held, corrupt
records set aside, dead letters and deduplication keys.`

type statsJSON struct {
	Ready       int64  `json:"ready"`
	Scheduled   int64  `json:"scheduled"`
	Leased      int64  `json:"leased"`
	Queued      int64  `json:"queued"`
	Bytes       int64  `json:"bytes"`
	Corrupt     int64  `json:"corrupt"`
	DeadLetters int    `json:"deadLetters"`
	Keys        uint64 `json:"keys"`
	FileSize    int64  `json:"fileSize"`
}

func (c *cli) cmdStats(args []string) error {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	if err := c.parse(fs, statsUsage, args); err != nil {
		return err
	}
	path, err := oneFile(fs)
	if err != nil {
		return err
	}
	d, err := openReader(path)
	if err != nil {
		return err
	}
	s := d.Stats()
	dead, err := d.DeadLetters().Count()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	out := statsJSON{Ready: s.Ready, Scheduled: s.Scheduled, Leased: s.Leased, Queued: s.Queued(), Bytes: s.Bytes,
		Corrupt: s.Corrupt, DeadLetters: dead, Keys: s.Keys}
	if fi, err := os.Stat(path); err == nil {
		out.FileSize = fi.Size()
	}
	if c.json {
		return c.writeJSON(out)
	}
	tw := c.table()
	fmt.Fprintf(tw, "ready\t%d\n", out.Ready)
	fmt.Fprintf(tw, "scheduled\t%d\n", out.Scheduled)
	fmt.Fprintf(tw, "leased\t%d\n", out.Leased)
	fmt.Fprintf(tw, "queued\t%d\n", out.Queued)
	fmt.Fprintf(tw, "bytes\t%d\n", out.Bytes)
	fmt.Fprintf(tw, "corrupt\t%d\n", out.Corrupt)
	fmt.Fprintf(tw, "dead letters\t%d\n", out.DeadLetters)
	fmt.Fprintf(tw, "keys\t%d\n", out.Keys)
	fmt.Fprintf(tw, "file size\t%d\n", out.FileSize)
	return tw.Flush()
}
