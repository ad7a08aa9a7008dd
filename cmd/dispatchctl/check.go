package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/lambdadispatch/dispatcher/store"
)

// ---- check

const checkUsage = `check [flags] FILE

Reads the whole file without opening it as a queue (so it works on a file
the other commands refuse) and checks the page tree, every record's and
payload's checksum, the indexes, and the counters against the contents.
Exits 0 when the file is sound, 1 with the problems found when it is not.`

type checkJSON struct {
	OK bool `json:"ok"`
	store.Report
}

func (c *cli) cmdCheck(args []string) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	if err := c.parse(fs, checkUsage, args); err != nil {
		return err
	}
	path, err := c.oneFile(fs)
	if err != nil {
		return err
	}
	if _, err := mustExist(path); err != nil {
		return err
	}
	rep, err := store.Check(path)
	if err != nil {
		return lockedErr(path, err, true)
	}
	if c.json {
		if err := c.writeJSON(checkJSON{OK: rep.OK(), Report: rep}); err != nil {
			return err
		}
	} else {
		tw := c.table()
		fmt.Fprintf(tw, "pages\t%d\n", rep.Pages)
		fmt.Fprintf(tw, "events\t%d\n", rep.Events)
		fmt.Fprintf(tw, "leased\t%d\n", rep.Leased)
		fmt.Fprintf(tw, "corrupt\t%d\n", rep.Corrupt)
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if rep.OK() {
		if !c.json {
			_, err = fmt.Fprintln(c.stdout, "ok")
		}
		return err
	}
	return &cliError{code: exitFailed, err: problemsErr(path, rep.Problems)}
}

// problemsErr lists problems for stderr, the first few in full: a file
// with a lost subtree can have thousands.
func problemsErr(path string, ps []store.Problem) error {
	const shown = 20
	var b strings.Builder
	fmt.Fprintf(&b, "%s is damaged: %d problems", path, len(ps))
	for i, p := range ps {
		if i == shown {
			fmt.Fprintf(&b, "\n  ... and %d more (--json lists them all)", len(ps)-shown)
			break
		}
		fmt.Fprintf(&b, "\n  %s", p)
	}
	return errors.New(b.String())
}

// ---- salvage

const salvageUsage = `salvage [flags] FILE NEW

Copies every event, dead letter and key that can be read from FILE into a
new queue file NEW (which must not exist), and reports what could not be
read. FILE is only read, never written, and need not open: use it on a
file that check finds damaged. Leased events are ready in NEW. Exits 0
when NEW was written, even if some of FILE was lost.

--scan-pages also reads the pages the file's tree no longer reaches (a
truncated file loses its roots) and takes the events whose record and
payload checksums hold. A freed page can still hold events delivered and
acked long ago: those come back and will be sent again. Dead letters and
keys are not recovered from such pages.`

func (c *cli) cmdSalvage(args []string) error {
	fs := flag.NewFlagSet("salvage", flag.ContinueOnError)
	scan := fs.Bool("scan-pages", false, "also take checked events from pages no tree reaches (may resend delivered events)")
	if err := c.parse(fs, salvageUsage, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usageErr("want FILE NEW, got %d arguments", fs.NArg())
	}
	src, dst := fs.Arg(0), fs.Arg(1)
	if _, err := mustExist(src); err != nil {
		return err
	}
	p := c.progress()
	p.printf("salvaging %s…", src)
	rep, err := store.SalvageWith(src, dst, store.SalvageOptions{
		ScanPages: *scan,
		Progress:  func(n int64) { p.count("salvaging: events and values copied", n) },
	})
	p.done()
	if err != nil {
		return lockedErr(src, err, true)
	}
	if c.json {
		return c.writeJSON(rep)
	}
	if len(rep.Problems) > 0 {
		fmt.Fprintln(c.stderr, problemsErr(src, rep.Problems))
	}
	if _, err := fmt.Fprintf(c.stdout, "salvaged %s into %s: %d events and %d other values copied; %d events and %d pages could not be read\n",
		src, dst, rep.Events, rep.Values, rep.LostEvents, rep.LostPages); err != nil {
		return err
	}
	if rep.OlderMeta {
		if _, err := fmt.Fprintln(c.stdout, "read from the older meta page's tree, one transaction behind: events acked in the last one may be back"); err != nil {
			return err
		}
	}
	if *scan {
		_, err = fmt.Fprintf(c.stdout, "%d events came from %d orphan pages: a freed page can hold events already delivered, and these will be sent again (dead letters and keys are not recovered from orphan pages)\n",
			rep.FromOrphanPages, rep.OrphanPages)
	}
	return err
}
