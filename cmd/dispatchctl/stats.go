package main

import (
	"flag"
	"fmt"
	"os"
)

const statsUsage = `stats [flags] FILE

Prints the queue's counts: ready, scheduled, leased, bytes held, corrupt
records set aside, dead letters and deduplication keys; then, for each
function with events queued or paused, its ready and scheduled events and
whether it is paused.`

type statsJSON struct {
	Ready       int64          `json:"ready"`
	Scheduled   int64          `json:"scheduled"`
	Leased      int64          `json:"leased"`
	Queued      int64          `json:"queued"`
	Bytes       int64          `json:"bytes"`
	Corrupt     int64          `json:"corrupt"`
	DeadLetters int            `json:"deadLetters"`
	Keys        uint64         `json:"keys"`
	FileSize    int64          `json:"fileSize"`
	Functions   []functionJSON `json:"functions"`
}

type functionJSON struct {
	Function  string `json:"function"`
	Paused    bool   `json:"paused"`
	Ready     int64  `json:"ready"`
	Scheduled int64  `json:"scheduled"`
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
		Corrupt: s.Corrupt, DeadLetters: dead, Keys: s.Keys, Functions: []functionJSON{}}
	for _, f := range s.Functions {
		out.Functions = append(out.Functions, functionJSON{Function: f.Function, Paused: f.Paused, Ready: f.Ready, Scheduled: f.Scheduled})
	}
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
	if len(out.Functions) > 0 {
		fmt.Fprintf(tw, "\nfunction\tready\tscheduled\tpaused\n")
		for _, f := range out.Functions {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%v\n", f.Function, f.Ready, f.Scheduled, f.Paused)
		}
	}
	return tw.Flush()
}
