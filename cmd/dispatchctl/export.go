package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/deadletter"
)

const exportUsage = `export [flags] FILE

Writes the queued events as JSON lines (id, function, qualifier, key,
attempts, enqueued, due, leased, payload: as JSON when it is valid JSON,
else a base64 string), or with --dead the dead letters in the form of
Lambda's on-failure destination records.`

func (c *cli) cmdExport(args []string) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	dead := fs.Bool("dead", false, "export dead letters instead of queued events")
	if err := c.parse(fs, exportUsage, args); err != nil {
		return err
	}
	path, err := oneFile(fs)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(c.stdout)
	p := c.progress()
	n := 0
	tick := func() {
		n++
		if n%1000 == 0 {
			p.printf("exported %d…", n)
		}
	}
	if *dead {
		err = exportLetters(path, w, tick)
	} else {
		err = exportEvents(path, w, tick)
	}
	p.done()
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	p.printf("exported %d\n", n)
	return nil
}

func exportEvents(path string, w io.Writer, tick func()) error {
	d, err := openReader(path)
	if err != nil {
		return err
	}
	defer d.Close()
	enc := json.NewEncoder(w)
	for e, err := range d.Events().All(context.Background(), dispatcher.EventFilter{}) {
		if err != nil {
			return err
		}
		tick()
		if err := enc.Encode(toEventJSON(e, true)); err != nil {
			return err
		}
	}
	return nil
}

func exportLetters(path string, w io.Writer, tick func()) error {
	d, err := openReader(path)
	if err != nil {
		return err
	}
	defer d.Close()
	ctx := context.Background()
	after := ""
	for {
		page, next, err := d.DeadLetters().List(ctx, after, deadletter.MaxListLimit)
		if err != nil {
			return err
		}
		for _, l := range page {
			b, err := l.MarshalRecord()
			if err != nil {
				return fmt.Errorf("letter %s: %w", l.ID, err)
			}
			if _, err := w.Write(append(b, '\n')); err != nil {
				return err
			}
			tick()
		}
		if next == "" {
			return nil
		}
		after = next
	}
}
