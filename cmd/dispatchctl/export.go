package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

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

// fetchers bounds the requests export has in flight: lists carry no
// payloads, so each event or letter is one request of its own.
const fetchers = 8

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

func (c *cli) exportEvents(w io.Writer, p *progress) (int64, error) {
	enc := json.NewEncoder(w)
	return exportPages(c.eventIDs(listQuery{}), c.page, c.api.event, func(e wire.Event) error { return enc.Encode(e) }, p)
}

func (c *cli) exportLetters(w io.Writer, p *progress) (int64, error) {
	return exportPages(c.letterIDs(listQuery{}), c.page, c.api.letter, func(l wire.Letter) error {
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

// exportPages lists ids a page at a time, gets each one's whole item
// (fetchers at a time), and writes them in id order, counting on p. An
// item gone between the list and the get (delivered, redriven) is left
// out: it is no longer what is exported.
func exportPages[T any](list idsPage, page int, get func(id string) (T, error), write func(T) error, p *progress) (int64, error) {
	var n int64
	after := ""
	for {
		ids, next, err := list(after, page)
		if err != nil {
			return n, err
		}
		items, found, err := fetchAll(ids, get)
		if err != nil {
			return n, err
		}
		for i, it := range items {
			if !found[i] {
				continue
			}
			if err := write(it); err != nil {
				return n, err
			}
			n++
		}
		p.count("exported", n)
		if next == "" || len(ids) == 0 {
			return n, nil
		}
		after = next
	}
}

// fetchAll gets every id, fetchers at a time, and returns the items in
// the order of ids; found is false for an id that names nothing now.
func fetchAll[T any](ids []string, get func(id string) (T, error)) (items []T, found []bool, err error) {
	items, found = make([]T, len(ids)), make([]bool, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	var failed atomic.Bool // the rest need not wait for their timeouts
	next := make(chan int)
	for range min(fetchers, len(ids)) {
		wg.Go(func() {
			for i := range next {
				if failed.Load() {
					continue
				}
				it, err := get(ids[i])
				switch {
				case err == nil:
					items[i], found[i] = it, true
				case !notFound(err):
					errs[i] = err
					failed.Store(true)
				}
			}
		})
	}
	for i := range ids {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, nil, err
		}
	}
	return items, found, nil
}
