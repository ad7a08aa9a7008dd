package main

import (
	"flag"
	"fmt"

	"github.com/lambdadispatch/dispatcher/store"
)

const compactUsage = `compact [flags] FILE

Works on a file only, while no dispatcher runs on it.

Copies the file into FILE.compact without its free pages, with the same
owner, group and mode, syncs it, and renames it over FILE. Refuses a file
held by a running dispatcher, and a file that is not a queue. A dispatcher
that opens the file meanwhile waits, then opens the compacted file.`

type compactJSON struct {
	Before int64 `json:"before"`
	After  int64 `json:"after"`
}

func (c *cli) cmdCompact(args []string) error {
	fs := flag.NewFlagSet("compact", flag.ContinueOnError)
	if err := c.parse(fs, compactUsage, args); err != nil {
		return err
	}
	path, err := c.oneFile(fs)
	if err != nil {
		return err
	}
	if _, err := mustExist(path); err != nil {
		return err
	}
	p := c.progress()
	p.printf("compacting %s…", path)
	before, after, err := store.CompactWith(path, store.CompactOptions{
		LockTimeout: lockTimeout,
		Progress:    func(n int64) { p.count("compacting: keys copied", n) },
	})
	p.done()
	if err != nil {
		return openErr(path, err, true)
	}
	out := compactJSON{Before: before, After: after}
	if c.json {
		return c.writeJSON(out)
	}
	_, err = fmt.Fprintf(c.stdout, "compacted %s: %d bytes before, %d after\n", path, out.Before, out.After)
	return err
}
