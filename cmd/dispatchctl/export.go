package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/internal/wire"
)

const exportUsage = `export [flags] FILE
--url URL export [flags]

Writes the queued events as JSON lines in the admin API's shape (GET
/events/{id}: id, state, function, qualifier, key, priority, attempts,
enqueued, due, payload: as JSON when it is valid JSON, else a base64
string with "payloadEncoding":"base64"), or with --dead the dead letters
in the form of Lambda's on-failure destination records. On a running
dispatcher, an event delivered while the export runs is left out.`

func (c *cli) cmdExport(args []string) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	dead := fs.Bool("dead", false, "export dead letters instead of queued events")
	if err := c.parse(fs, exportUsage, args); err != nil {
		return err
	}
	path, err := c.oneFile(fs)
	if err != nil {
		return err
	}
	if err := c.connect(path, false); err != nil {
		return err
	}
	w := bufio.NewWriter(c.stdout)
	p := c.progress()
	var n int64
	if *dead {
		n, err = c.exportLetters(w, p)
	} else {
		n, err = c.exportEvents(w, p)
	}
	p.done()
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	p.total("exported", n)
	return nil
}

// exportPage bounds the items of one export request, payloads included,
// so that a page of the largest payloads stays a few tens of megabytes.
const exportPage = 100

func (c *cli) exportEvents(w io.Writer, p *progress) (int64, error) {
	enc := json.NewEncoder(w)
	q := listQuery{payload: "json"}
	return exportPages(func(after string) ([]wire.Event, string, error) {
		pg, err := c.api.events(q, after, min(c.page, exportPage))
		return pg.Items, pg.Next, err
	}, func(e wire.Event) error { return enc.Encode(e) }, p)
}

func (c *cli) exportLetters(w io.Writer, p *progress) (int64, error) {
	q := listQuery{payload: "json"}
	return exportPages(func(after string) ([]wire.Letter, string, error) {
		pg, err := c.api.letters(q, after, min(c.page, exportPage))
		return pg.Items, pg.Next, err
	}, func(l wire.Letter) error {
		dl, err := letterOf(l)
		if err != nil {
			return fmt.Errorf("letter %s: %w", l.ID, err)
		}
		b, err := dl.MarshalRecord()
		if err != nil {
			return fmt.Errorf("letter %s: %w", l.ID, err)
		}
		_, err = w.Write(append(b, '\n'))
		return err
	}, p)
}

// letterOf is the letter l shows, for deadletter's record of it.
func letterOf(l wire.Letter) (deadletter.Letter, error) {
	r, err := wire.ParseReason(l.Reason)
	if err != nil {
		return deadletter.Letter{}, err
	}
	payload, err := wire.DecodePayload(l.Payload, l.PayloadEncoding)
	if err != nil {
		return deadletter.Letter{}, err
	}
	out := deadletter.Letter{
		ID: l.ID, Function: l.Function, Qualifier: l.Qualifier, Key: l.Key, Payload: payload,
		Enqueued: l.Enqueued, Reason: r, Attempts: l.Attempts, DeadLettered: l.DeadLettered,
	}
	if l.FirstAttempt != nil {
		out.FirstAttempt = *l.FirstAttempt
	}
	if l.LastAttempt != nil {
		out.LastAttempt = *l.LastAttempt
	}
	if l.LastError != nil {
		out.LastError = *l.LastError
	}
	return out, nil
}

// exportPages reads a page at a time, payloads included, and writes
// each item, counting on p. An item gone between two pages (delivered,
// redriven) is not in the later one: it is no longer what is exported.
func exportPages[T any](list func(after string) ([]T, string, error), write func(T) error, p *progress) (int64, error) {
	var n int64
	after := ""
	for {
		items, next, err := list(after)
		if err != nil {
			return n, err
		}
		for _, it := range items {
			if err := write(it); err != nil {
				return n, err
			}
			n++
		}
		p.count("exported", n)
		if next == "" || len(items) == 0 {
			return n, nil
		}
		after = next
	}
}
