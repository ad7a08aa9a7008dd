package main

import (
	"flag"
	"fmt"

	"github.com/lambdadispatch/dispatcher"
)

const pauseUsage = `pause [flags] FILE FUNCTION
--url URL pause FUNCTION

Pauses sending to FUNCTION (named as its events name it), durably: its
events stay queued and spend no attempt until "dispatchctl resume". The
next dispatcher to open the file keeps the pause.`

const resumeUsage = `resume [flags] FILE FUNCTION
--url URL resume FUNCTION

Resumes sending to a paused FUNCTION.`

func (c *cli) cmdPause(args []string) error  { return c.setPaused("pause", pauseUsage, args, true) }
func (c *cli) cmdResume(args []string) error { return c.setPaused("resume", resumeUsage, args, false) }

func (c *cli) setPaused(name, usage string, args []string, paused bool) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	if err := c.parse(fs, usage, args); err != nil {
		return err
	}
	path, rest, err := c.operands(fs, 0)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		if path == "" {
			return usageErr("want FUNCTION (and with --url no FILE), got %d arguments", len(rest))
		}
		return usageErr("want FILE FUNCTION, got %d arguments", fs.NArg())
	}
	function := rest[0]
	// Checked before the file is opened: opening it to write recovers
	// leases, and bad input must change nothing.
	if err := dispatcher.ValidateEvent(dispatcher.Event{Function: function}); err != nil {
		return &cliError{code: exitUsage, err: err}
	}
	if err := c.connect(path, true); err != nil {
		return err
	}
	out, err := c.api.setPaused(function, paused)
	if err != nil {
		return err
	}
	if err := c.release(); err != nil {
		return err
	}
	if c.json {
		return c.writeJSON(out)
	}
	verb := "paused"
	if !paused {
		verb = "resumed"
	}
	_, err = fmt.Fprintf(c.stdout, "%s %s\n", verb, out.Function)
	return err
}
