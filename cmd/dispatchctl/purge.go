package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/deadletter"
)

const purgeUsage = `purge [flags] FILE

Deletes the dead letters the filter selects, or every one with --all. Asks
for confirmation on stdin unless --yes; an answer other than y exits 1 and
deletes nothing.`

func (c *cli) cmdPurge(args []string) error {
	fs := flag.NewFlagSet("purge", flag.ContinueOnError)
	all := fs.Bool("all", false, "purge every letter")
	function := fs.String("function", "", "only letters for `FUNCTION`")
	reason := fs.String("reason", "", "only letters with `REASON`: retries-exhausted, event-age-exceeded or rejected")
	older := fs.Duration("older-than", 0, "only letters dead-lettered more than `DURATION` ago")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	if err := c.parse(fs, purgeUsage, args); err != nil {
		return err
	}
	path, err := oneFile(fs)
	if err != nil {
		return err
	}
	r, err := parseReason(*reason)
	if err != nil {
		return err
	}
	if *older < 0 {
		return usageErr("--older-than %v: want a positive duration", *older)
	}
	f := dispatcher.LetterFilter{Function: *function, Reason: r}
	if *older > 0 {
		f.Until = time.Now().Add(-*older)
	}
	if f == (dispatcher.LetterFilter{}) && !*all {
		return usageErr("nothing selected: give --function, --reason or --older-than, or --all")
	}
	d, err := openDispatcher(path)
	if err != nil {
		return err
	}
	defer d.Close()
	ctx := context.Background()
	dl := d.DeadLetters()
	count, after := 0, ""
	for {
		page, next, err := dl.Find(ctx, f, after, deadletter.MaxListLimit)
		if err != nil {
			return err
		}
		count += len(page)
		if next == "" {
			break
		}
		after = next
	}
	if count > 0 && !*yes {
		fmt.Fprintf(c.stderr, "purge %d letters? [y/N] ", count)
		line, _ := bufio.NewReader(c.stdin).ReadString('\n')
		switch strings.ToLower(strings.TrimSpace(line)) {
		case "y", "yes":
		default:
			return &cliError{code: exitFailed, err: errors.New("aborted: nothing purged")}
		}
	}
	n := 0
	if count > 0 {
		if n, err = dl.Purge(ctx, f); err != nil {
			return fmt.Errorf("purged %d, then: %w", n, err)
		}
	}
	if c.json {
		return c.writeJSON(map[string]int{"purged": n})
	}
	_, err = fmt.Fprintf(c.stdout, "purged: %d\n", n)
	return err
}
