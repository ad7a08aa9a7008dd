package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"

	"github.com/lambdadispatch/dispatcher/internal/wire"
	"github.com/lambdadispatch/dispatcher/store"
)

const showUsage = `show [flags] ID FILE
--url URL show ID

Shows the queued event with this id or, if none is queued, the dead letter.
Exits 4 when there is neither.`

func (c *cli) cmdShow(args []string) error {
	fs := flag.NewFlagSet("show", flag.ContinueOnError)
	if err := c.parse(fs, showUsage, args); err != nil {
		return err
	}
	path, rest, err := c.operands(fs, -1)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		if path == "" {
			return usageErr("want ID (and with --url no FILE), got %d arguments", len(rest))
		}
		return usageErr("want ID FILE, got %d arguments", fs.NArg())
	}
	id := rest[0]
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		return usageErr("ID %q: want a number", id)
	}
	if err := c.connect(path, false); err != nil {
		return err
	}
	// The queued event first, then the letter.
	e, err := c.api.event(id)
	if err == nil {
		return c.showEvent(e)
	}
	if !notFound(err) {
		return err
	}
	l, err := c.api.letter(id)
	if notFound(err) {
		return notFoundErr("%s: no event or dead letter with id %s", c.api.where, id)
	}
	if err != nil {
		return err
	}
	return c.showLetter(l)
}

func (c *cli) showEvent(e wire.Event) error {
	if c.json {
		return c.writeJSON(e)
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
	fmt.Fprintf(tw, "first attempt:\t%s\n", fmtTimeP(e.FirstAttempt))
	fmt.Fprintf(tw, "last attempt:\t%s\n", fmtTimeP(e.LastAttempt))
	if e.State == "leased" {
		fmt.Fprintf(tw, "lease until:\t%s\n", fmtTimeP(e.LeaseUntil))
	}
	printLastError(tw, e.LastError)
	fmt.Fprintf(tw, "size:\t%d\n", e.Size)
	if err := tw.Flush(); err != nil {
		return err
	}
	return c.printPayload(e.Payload, e.PayloadEncoding)
}

func (c *cli) showLetter(l wire.Letter) error {
	if c.json {
		return c.writeJSON(l)
	}
	tw := c.table()
	fmt.Fprintf(tw, "id:\t%s\n", l.ID)
	fmt.Fprintf(tw, "state:\t%s\n", l.State)
	fmt.Fprintf(tw, "reason:\t%s\n", l.Reason)
	fmt.Fprintf(tw, "function:\t%s\n", l.Function)
	fmt.Fprintf(tw, "qualifier:\t%s\n", dash(l.Qualifier))
	fmt.Fprintf(tw, "key:\t%s\n", dash(l.Key))
	fmt.Fprintf(tw, "attempts:\t%d\n", l.Attempts)
	fmt.Fprintf(tw, "enqueued:\t%s\n", fmtTime(l.Enqueued))
	fmt.Fprintf(tw, "first attempt:\t%s\n", fmtTimeP(l.FirstAttempt))
	fmt.Fprintf(tw, "last attempt:\t%s\n", fmtTimeP(l.LastAttempt))
	fmt.Fprintf(tw, "dead-lettered:\t%s\n", fmtTime(l.DeadLettered))
	printLastError(tw, l.LastError)
	fmt.Fprintf(tw, "size:\t%d\n", l.Size)
	if err := tw.Flush(); err != nil {
		return err
	}
	return c.printPayload(l.Payload, l.PayloadEncoding)
}

func printLastError(tw io.Writer, le *store.ErrorInfo) {
	if le != nil {
		fmt.Fprintf(tw, "last error:\t%s %s (status %d, request %s)\n", dash(le.Code), le.Message, le.StatusCode, dash(le.RequestID))
	}
}

// printPayload prints a JSON payload indented, anything else quoted.
func (c *cli) printPayload(raw json.RawMessage, encoding string) error {
	fmt.Fprintln(c.stdout, "payload:")
	p, err := wire.DecodePayload(raw, encoding)
	if err != nil {
		return err
	}
	if len(p) == 0 {
		_, err := fmt.Fprintln(c.stdout, "  (empty)")
		return err
	}
	var buf bytes.Buffer
	if json.Indent(&buf, p, "  ", "  ") == nil {
		_, err := fmt.Fprintf(c.stdout, "  %s\n", buf.Bytes())
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "  (not JSON) %q\n", p)
	return err
}
