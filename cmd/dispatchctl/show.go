package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/deadletter"
)

const showUsage = `show [flags] ID FILE

Shows the queued event with this id or, if none is queued, the dead letter.
Exits 4 when there is neither.`

func (c *cli) cmdShow(args []string) error {
	fs := flag.NewFlagSet("show", flag.ContinueOnError)
	if err := c.parse(fs, showUsage, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usageErr("want ID FILE, got %d arguments", fs.NArg())
	}
	id, path := fs.Arg(0), fs.Arg(1)
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		return usageErr("ID %q: want a number", id)
	}
	d, err := openReader(path)
	if err != nil {
		return err
	}
	// One open for both looks: the queued event first, then the letter.
	ev, evErr := d.Events().Get(id)
	err = evErr
	var l deadletter.Letter
	if errors.Is(evErr, dispatcher.ErrNotFound) {
		if l, err = d.DeadLetters().Get(id); errors.Is(err, dispatcher.ErrNotFound) {
			err = notFoundErr("%s: no event or dead letter with id %s", path, id)
		}
	}
	if cerr := d.Close(); err == nil && cerr != nil {
		return cerr
	}
	switch {
	case err != nil:
		return err
	case evErr == nil:
		return c.showEvent(ev)
	default:
		return c.showLetter(l)
	}
}

func (c *cli) showEvent(e dispatcher.QueuedEvent) error {
	if c.json {
		return c.writeJSON(toEventJSON(e, true))
	}
	tw := c.table()
	fmt.Fprintf(tw, "id:\t%s\n", e.ID)
	fmt.Fprintf(tw, "state:\t%s\n", e.State)
	fmt.Fprintf(tw, "function:\t%s\n", e.Function)
	fmt.Fprintf(tw, "qualifier:\t%s\n", dash(e.Qualifier))
	fmt.Fprintf(tw, "key:\t%s\n", dash(e.Key))
	fmt.Fprintf(tw, "attempts:\t%d\n", e.Attempts)
	fmt.Fprintf(tw, "enqueued:\t%s\n", fmtTime(e.Enqueued))
	fmt.Fprintf(tw, "due:\t%s\n", fmtTime(e.Due))
	fmt.Fprintf(tw, "first attempt:\t%s\n", fmtTime(e.FirstAttempt))
	fmt.Fprintf(tw, "last attempt:\t%s\n", fmtTime(e.LastAttempt))
	if e.State == dispatcher.StateLeased {
		fmt.Fprintf(tw, "lease until:\t%s\n", fmtTime(e.LeaseUntil))
	}
	if !e.LastError.IsZero() {
		le := e.LastError
		fmt.Fprintf(tw, "last error:\t%s %s (status %d, request %s)\n", dash(le.Code), le.Message, le.StatusCode, dash(le.RequestID))
	}
	fmt.Fprintf(tw, "size:\t%d\n", e.Size)
	if err := tw.Flush(); err != nil {
		return err
	}
	return c.printPayload(e.Payload)
}

func (c *cli) showLetter(l deadletter.Letter) error {
	if c.json {
		return c.writeJSON(toLetterJSON(l, true))
	}
	tw := c.table()
	fmt.Fprintf(tw, "id:\t%s\n", l.ID)
	fmt.Fprintf(tw, "state:\tdead\n")
	fmt.Fprintf(tw, "reason:\t%s\n", l.Reason)
	fmt.Fprintf(tw, "function:\t%s\n", l.Function)
	fmt.Fprintf(tw, "qualifier:\t%s\n", dash(l.Qualifier))
	fmt.Fprintf(tw, "key:\t%s\n", dash(l.Key))
	fmt.Fprintf(tw, "attempts:\t%d\n", l.Attempts)
	fmt.Fprintf(tw, "enqueued:\t%s\n", fmtTime(l.Enqueued))
	fmt.Fprintf(tw, "first attempt:\t%s\n", fmtTime(l.FirstAttempt))
	fmt.Fprintf(tw, "last attempt:\t%s\n", fmtTime(l.LastAttempt))
	fmt.Fprintf(tw, "dead-lettered:\t%s\n", fmtTime(l.DeadLettered))
	if !l.LastError.IsZero() {
		le := l.LastError
		fmt.Fprintf(tw, "last error:\t%s %s (status %d, request %s)\n", dash(le.Code), le.Message, le.StatusCode, dash(le.RequestID))
	}
	fmt.Fprintf(tw, "size:\t%d\n", len(l.Payload))
	if err := tw.Flush(); err != nil {
		return err
	}
	return c.printPayload(l.Payload)
}

// printPayload prints a JSON payload indented, anything else quoted.
func (c *cli) printPayload(p []byte) error {
	fmt.Fprintln(c.stdout, "payload:")
	if len(p) == 0 {
		_, err := fmt.Fprintln(c.stdout, "  (empty)")
		return err
	}
	var buf bytes.Buffer
	if json.Indent(&buf, p, "  ", "  ") == nil {
		_, err := fmt.Fprintf(c.stdout, "  %s\n", buf.Bytes())
		return err
	}
	_, err := fmt.Fprintf(c.stdout, "  (not JSON) %q\n", p)
	return err
}
