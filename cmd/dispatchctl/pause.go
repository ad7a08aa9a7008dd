package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/lambdadispatch/dispatcher"
)

const pauseUsage = `pause [flags] FILE FUNCTION

Pauses sending to FUNCTION (named as its events name it), durably: its
events stay queued and spend no attempt until "dispatchctl resume". The
next dispatcher to open the file keeps the pause.`

const resumeUsage = `resume [flags] FILE FUNCTION

Resumes sending to a paused FUNCTION.`

type pauseJSON struct {
	Function string `json:"function"`
	Paused   bool   `json:"paused"`
}

func (c *cli) cmdPause(args []string) error  { return c.setPaused("pause", pauseUsage, args, true) }
func (c *cli) cmdResume(args []string) error { return c.setPaused("resume", resumeUsage, args, false) }

func (c *cli) setPaused(name, usage string, args []string, paused bool) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	if err := c.parse(fs, usage, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usageErr("want FILE FUNCTION, got %d arguments", fs.NArg())
	}
	path, function := fs.Arg(0), fs.Arg(1)
	// Checked before the file is opened: opening it to write recovers
	// leases, and bad input must change nothing.
	if err := dispatcher.ValidateEvent(dispatcher.Event{Function: function}); err != nil {
		return &cliError{code: exitUsage, err: err}
	}
	d, err := openDispatcher(path)
	if err != nil {
		return err
	}
	defer d.Close()
	fns := d.Functions()
	if paused {
		err = fns.Pause(context.Background(), function)
	} else {
		err = fns.Resume(context.Background(), function)
	}
	if err != nil {
		return err
	}
	if err := d.Close(); err != nil {
		return err
	}
	if c.json {
		return c.writeJSON(pauseJSON{Function: function, Paused: paused})
	}
	verb := "paused"
	if !paused {
		verb = "resumed"
	}
	_, err = fmt.Fprintf(c.stdout, "%s %s\n", verb, function)
	return err
}
