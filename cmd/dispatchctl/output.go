package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lambdadispatch/dispatcher/internal/wire"
)

// What several commands share: table and JSON output, times, and the
// loops over pages. The shapes are package wire's, as the admin API
// answers them: JSON output prints them as they are, text output reads
// them, and neither knows which mode it runs in. A helper only one
// command uses lives in that command's file.

func (c *cli) table() *tabwriter.Writer {
	return tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
}

func (c *cli) writeJSON(v any) error {
	return json.NewEncoder(c.stdout).Encode(v)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// fmtTimeP prints an optional time of the wire shapes.
func fmtTimeP(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return fmtTime(*t)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// reasonFlag reads a --reason value; the service would refuse it too,
// but a typo is reported without a request.
func reasonFlag(s string) (string, error) {
	r, err := wire.ParseReason(s)
	if err != nil {
		return "", &cliError{code: exitUsage, err: err}
	}
	if r == "" {
		return "", nil
	}
	return wire.ReasonID(r), nil
}

// idsPage reads one page of the ids a filter selects: up to limit after
// the cursor after, and the cursor of the next page, "" at the end.
type idsPage func(after string, limit int) (ids []string, next string, err error)

// allIDs reads every id list selects, page by page, counting on p.
func (c *cli) allIDs(list idsPage, p *progress) ([]string, error) {
	var all []string
	after := ""
	for {
		ids, next, err := list(after, c.page)
		if err != nil {
			return all, err
		}
		all = append(all, ids...)
		p.count("listed", int64(len(all)))
		if next == "" || len(ids) == 0 {
			return all, nil
		}
		after = next
	}
}

// actOnIDs hands ids to act a page at a time, counting on p, and returns
// the sum act returned.
func (c *cli) actOnIDs(ids []string, act func([]string) (int, error), p *progress, verb string) (int, error) {
	total := 0
	for len(ids) > 0 {
		page := ids[:min(len(ids), c.page)]
		ids = ids[len(page):]
		n, err := act(page)
		total += n
		if err != nil {
			return total, err
		}
		p.count(verb, int64(total))
	}
	return total, nil
}

// actOnPages lists what a filter selects a page at a time, and acts on
// each page by its ids before reading the next: no id list is held
// whole, and each request stays short. act removes what it takes (a
// redriven letter is no longer a letter), so the cursor of a page still
// leads to the next.
func (c *cli) actOnPages(list idsPage, act func([]string) (int, error), p *progress, verb string) (int, error) {
	total, after := 0, ""
	for {
		ids, next, err := list(after, c.page)
		if err != nil {
			return total, err
		}
		if len(ids) > 0 {
			n, err := act(ids)
			total += n
			if err != nil {
				return total, err
			}
			p.count(verb, int64(total))
		}
		if next == "" || len(ids) == 0 {
			return total, nil
		}
		after = next
	}
}

// letterIDs lists the ids of the letters q selects.
func (c *cli) letterIDs(q listQuery) idsPage {
	return func(after string, limit int) ([]string, string, error) {
		pg, err := c.api.letters(q, after, limit)
		ids := make([]string, len(pg.Items))
		for i, l := range pg.Items {
			ids[i] = l.ID
		}
		return ids, pg.Next, err
	}
}

// eventIDs lists the ids of the queued events q selects.
func (c *cli) eventIDs(q listQuery) idsPage {
	return func(after string, limit int) ([]string, string, error) {
		pg, err := c.api.events(q, after, limit)
		ids := make([]string, len(pg.Items))
		for i, e := range pg.Items {
			ids[i] = e.ID
		}
		return ids, pg.Next, err
	}
}

// confirm asks on stderr and reads the answer on stdin: anything but y
// or yes, no answer included, is no.
func (c *cli) confirm(format string, a ...any) bool {
	fmt.Fprintf(c.stderr, format+" [y/N] ", a...)
	line, _ := bufio.NewReader(c.stdin).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	return false
}
