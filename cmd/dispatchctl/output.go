package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/store"
)

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

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// payloadValue is a payload for JSON output: itself when it is valid JSON,
// else its base64 string; nil when empty.
func payloadValue(p []byte) any {
	if len(p) == 0 {
		return nil
	}
	if json.Valid(p) {
		return json.RawMessage(p)
	}
	return base64.StdEncoding.EncodeToString(p)
}

// parseReason accepts a reason as the library spells it ("retries
// exhausted") or with dashes or underscores ("retries-exhausted").
func parseReason(s string) (deadletter.Reason, error) {
	if s == "" {
		return "", nil
	}
	norm := strings.ToLower(strings.NewReplacer("-", " ", "_", " ").Replace(s))
	for _, r := range []deadletter.Reason{deadletter.RetriesExhausted, deadletter.EventAgeExceeded, deadletter.Rejected} {
		if norm == string(r) {
			return r, nil
		}
	}
	return "", usageErr("unknown reason %q: want retries-exhausted, event-age-exceeded or rejected", s)
}

func stateOf(e store.Event, now time.Time) string {
	switch {
	case e.Leased:
		return "leased"
	case e.Due.After(now):
		return "scheduled"
	default:
		return "ready"
	}
}

// eventJSON is a queued event in JSON output.
type eventJSON struct {
	ID         string     `json:"id"`
	State      string     `json:"state"`
	Function   string     `json:"function"`
	Qualifier  string     `json:"qualifier,omitempty"`
	Key        string     `json:"key,omitempty"`
	Attempts   int        `json:"attempts"`
	Enqueued   time.Time  `json:"enqueued"`
	Due        time.Time  `json:"due"`
	Leased     bool       `json:"leased"`
	LeaseUntil *time.Time `json:"leaseUntil,omitempty"`
	LastError  *errorJSON `json:"lastError,omitempty"`
	Size       int        `json:"size"`
	Payload    any        `json:"payload,omitempty"`
}

type errorJSON struct {
	Code       string `json:"code,omitempty"`
	Message    string `json:"message,omitempty"`
	StatusCode int    `json:"statusCode,omitempty"`
	RequestID  string `json:"requestId,omitempty"`
}

func toEventJSON(e store.Event, now time.Time, withPayload bool) eventJSON {
	j := eventJSON{
		ID: strconv.FormatUint(e.Seq, 10), State: stateOf(e, now), Function: e.Function, Qualifier: e.Qualifier,
		Key: e.Key, Attempts: e.Attempts, Enqueued: e.Enqueued.UTC(), Due: e.Due.UTC(), Leased: e.Leased, Size: len(e.Payload),
	}
	if e.Leased {
		t := e.LeaseUntil.UTC()
		j.LeaseUntil = &t
	}
	if !e.LastError.IsZero() {
		j.LastError = &errorJSON{Code: e.LastError.Code, Message: e.LastError.Message, StatusCode: e.LastError.Status, RequestID: e.LastError.RequestID}
	}
	if withPayload {
		j.Payload = payloadValue(e.Payload)
	}
	return j
}

// letterJSON is a dead letter in JSON output.
type letterJSON struct {
	ID           string               `json:"id"`
	State        string               `json:"state"`
	Reason       deadletter.Reason    `json:"reason"`
	Function     string               `json:"function"`
	Qualifier    string               `json:"qualifier,omitempty"`
	Key          string               `json:"key,omitempty"`
	Attempts     int                  `json:"attempts"`
	Enqueued     time.Time            `json:"enqueued"`
	FirstAttempt *time.Time           `json:"firstAttempt,omitempty"`
	LastAttempt  *time.Time           `json:"lastAttempt,omitempty"`
	DeadLettered time.Time            `json:"deadLettered"`
	LastError    deadletter.ErrorInfo `json:"lastError"`
	Size         int                  `json:"size"`
	Payload      any                  `json:"payload,omitempty"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func toLetterJSON(l deadletter.Letter, withPayload bool) letterJSON {
	j := letterJSON{
		ID: l.ID, State: "dead", Reason: l.Reason, Function: l.Function, Qualifier: l.Qualifier, Key: l.Key,
		Attempts: l.Attempts, Enqueued: l.Enqueued.UTC(), FirstAttempt: optTime(l.FirstAttempt), LastAttempt: optTime(l.LastAttempt),
		DeadLettered: l.DeadLettered.UTC(), LastError: l.LastError, Size: len(l.Payload),
	}
	if withPayload {
		j.Payload = payloadValue(l.Payload)
	}
	return j
}

// ---- stats

const statsUsage = `stats [flags] FILE

Prints the queue's counts: ready, scheduled, leased, bytes held, corrupt
records set aside, dead letters and deduplication keys.`

type statsJSON struct {
	Ready       int64  `json:"ready"`
	Scheduled   int64  `json:"scheduled"`
	Leased      int64  `json:"leased"`
	Queued      int64  `json:"queued"`
	Bytes       int64  `json:"bytes"`
	Corrupt     int64  `json:"corrupt"`
	DeadLetters int    `json:"deadLetters"`
	Keys        uint64 `json:"keys"`
	FileSize    int64  `json:"fileSize"`
}

func (c *cli) cmdStats(args []string) error {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	if err := c.parse(fs, statsUsage, args); err != nil {
		return err
	}
	path, err := oneFile(fs)
	if err != nil {
		return err
	}
	d, err := openReader(path)
	if err != nil {
		return err
	}
	s := d.Stats()
	dead, err := d.DeadLetters().Count()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	out := statsJSON{Ready: s.Ready, Scheduled: s.Scheduled, Leased: s.Leased, Queued: s.Queued(), Bytes: s.Bytes,
		Corrupt: s.Corrupt, DeadLetters: dead, Keys: s.Keys}
	if fi, err := os.Stat(path); err == nil {
		out.FileSize = fi.Size()
	}
	if c.json {
		return c.writeJSON(out)
	}
	tw := c.table()
	fmt.Fprintf(tw, "ready\t%d\n", out.Ready)
	fmt.Fprintf(tw, "scheduled\t%d\n", out.Scheduled)
	fmt.Fprintf(tw, "leased\t%d\n", out.Leased)
	fmt.Fprintf(tw, "queued\t%d\n", out.Queued)
	fmt.Fprintf(tw, "bytes\t%d\n", out.Bytes)
	fmt.Fprintf(tw, "corrupt\t%d\n", out.Corrupt)
	fmt.Fprintf(tw, "dead letters\t%d\n", out.DeadLetters)
	fmt.Fprintf(tw, "keys\t%d\n", out.Keys)
	fmt.Fprintf(tw, "file size\t%d\n", out.FileSize)
	return tw.Flush()
}

// ---- ls

const lsUsage = `ls [flags] FILE

Lists queued events (every queued state unless --state says which), or
dead letters with --state dead (implied by --reason). One page of --limit
rows at a time: the next page's cursor is printed on stderr as
"more: --after ID", or with --json as a last line {"next":"ID"}.`

var errStop = errors.New("stop")

func (c *cli) cmdLs(args []string) error {
	fs := flag.NewFlagSet("ls", flag.ContinueOnError)
	state := fs.String("state", "", "only those in `STATE`: ready, scheduled, leased or dead (default: every queued state)")
	function := fs.String("function", "", "only events or letters for `FUNCTION`")
	reason := fs.String("reason", "", "only letters with `REASON`: retries-exhausted, event-age-exceeded or rejected (implies --state dead)")
	older := fs.Duration("older-than", 0, "only those enqueued (letters: dead-lettered) more than `DURATION` ago")
	limit := fs.Int("limit", 100, "at most `N` rows; 0 for all")
	after := fs.String("after", "", "start after the id `CURSOR` (from a previous page)")
	if err := c.parse(fs, lsUsage, args); err != nil {
		return err
	}
	path, err := oneFile(fs)
	if err != nil {
		return err
	}
	switch *state {
	case "", "ready", "scheduled", "leased", "dead":
	default:
		return usageErr("unknown state %q: want ready, scheduled, leased or dead", *state)
	}
	r, err := parseReason(*reason)
	if err != nil {
		return err
	}
	if r != "" {
		if *state != "" && *state != "dead" {
			return usageErr("--reason applies to dead letters only")
		}
		*state = "dead"
	}
	if *limit < 0 {
		return usageErr("--limit %d: want 0 or more", *limit)
	}
	if *older < 0 {
		return usageErr("--older-than %v: want a positive duration", *older)
	}
	var afterSeq uint64
	if *after != "" {
		if afterSeq, err = strconv.ParseUint(*after, 10, 64); err != nil {
			return usageErr("--after %q: want an id", *after)
		}
	}
	now := time.Now()
	if *state == "dead" {
		f := dispatcher.LetterFilter{Function: *function, Reason: r}
		if *older > 0 {
			f.Until = now.Add(-*older)
		}
		return c.lsDead(path, f, *after, *limit)
	}
	var cutoff time.Time
	if *older > 0 {
		cutoff = now.Add(-*older)
	}
	// Due times are on the queue's clock (store.Store.Now), not this
	// machine's: lsQueued passes it in.
	keep := func(e store.Event, queueNow time.Time) bool {
		return (*state == "" || stateOf(e, queueNow) == *state) &&
			(*function == "" || e.Function == *function) &&
			(cutoff.IsZero() || e.Enqueued.Before(cutoff))
	}
	return c.lsQueued(path, keep, *after != "", afterSeq, *limit)
}

func (c *cli) lsQueued(path string, keep func(store.Event, time.Time) bool, hasAfter bool, after uint64, limit int) error {
	st, err := openStore(path)
	if err != nil {
		return err
	}
	defer st.Close()
	now := st.Now()
	tw := c.table()
	if !c.json {
		fmt.Fprintln(tw, "ID\tSTATE\tFUNCTION\tQUALIFIER\tKEY\tATTEMPTS\tENQUEUED\tSIZE")
	}
	var n int
	var last, next string
	fn := func(e store.Event) error {
		if !keep(e, now) {
			return nil
		}
		if limit > 0 && n == limit {
			next = last
			return errStop
		}
		n++
		last = strconv.FormatUint(e.Seq, 10)
		if c.json {
			return c.writeJSON(toEventJSON(e, now, false))
		}
		_, err := fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%d\n", e.Seq, stateOf(e, now), e.Function,
			dash(e.Qualifier), dash(e.Key), e.Attempts, fmtTime(e.Enqueued), len(e.Payload))
		return err
	}
	if hasAfter {
		err = st.ScanAfter(after, fn)
	} else {
		err = st.Scan(fn)
	}
	if err != nil && !errors.Is(err, errStop) {
		return err
	}
	return c.endPage(tw, next)
}

func (c *cli) endPage(tw *tabwriter.Writer, next string) error {
	if c.json {
		if next != "" {
			return c.writeJSON(map[string]string{"next": next})
		}
		return nil
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if next != "" {
		fmt.Fprintf(c.stderr, "more: --after %s\n", next)
	}
	return nil
}

func (c *cli) lsDead(path string, f dispatcher.LetterFilter, after string, limit int) error {
	d, err := openReader(path)
	if err != nil {
		return err
	}
	defer d.Close()
	ctx := context.Background()
	dl := d.DeadLetters()
	tw := c.table()
	if !c.json {
		fmt.Fprintln(tw, "ID\tREASON\tFUNCTION\tQUALIFIER\tKEY\tATTEMPTS\tDEAD-LETTERED\tSIZE")
	}
	emit := func(l deadletter.Letter) error {
		if c.json {
			return c.writeJSON(toLetterJSON(l, false))
		}
		_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\n", l.ID, l.Reason, l.Function,
			dash(l.Qualifier), dash(l.Key), l.Attempts, fmtTime(l.DeadLettered), len(l.Payload))
		return err
	}
	var next string
	if limit == 0 {
		for {
			page, cursor, err := dl.Find(ctx, f, after, deadletter.MaxListLimit)
			if err != nil {
				return err
			}
			for _, l := range page {
				if err := emit(l); err != nil {
					return err
				}
			}
			if cursor == "" {
				break
			}
			after = cursor
		}
	} else {
		// One more than asked says whether another page exists.
		page, _, err := dl.Find(ctx, f, after, limit+1)
		if err != nil {
			return err
		}
		if len(page) > limit {
			page = page[:limit]
			next = page[limit-1].ID
		}
		for _, l := range page {
			if err := emit(l); err != nil {
				return err
			}
		}
	}
	return c.endPage(tw, next)
}

// ---- show

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
	seq, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return usageErr("ID %q: want a number", id)
	}
	st, err := openStore(path)
	if err != nil {
		return err
	}
	ev, err := st.Get(seq)
	now := st.Now()
	if cerr := st.Close(); err == nil && cerr != nil {
		return cerr
	}
	if err == nil {
		return c.showEvent(ev, now)
	}
	if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	d, err := openReader(path)
	if err != nil {
		return err
	}
	l, err := d.DeadLetters().Get(id)
	if cerr := d.Close(); err == nil && cerr != nil {
		return cerr
	}
	if errors.Is(err, deadletter.ErrNotFound) {
		return notFoundErr("%s: no event or dead letter with id %s", path, id)
	}
	if err != nil {
		return err
	}
	return c.showLetter(l)
}

func (c *cli) showEvent(e store.Event, now time.Time) error {
	if c.json {
		return c.writeJSON(toEventJSON(e, now, true))
	}
	tw := c.table()
	fmt.Fprintf(tw, "id:\t%d\n", e.Seq)
	fmt.Fprintf(tw, "state:\t%s\n", stateOf(e, now))
	fmt.Fprintf(tw, "function:\t%s\n", e.Function)
	fmt.Fprintf(tw, "qualifier:\t%s\n", dash(e.Qualifier))
	fmt.Fprintf(tw, "key:\t%s\n", dash(e.Key))
	fmt.Fprintf(tw, "attempts:\t%d\n", e.Attempts)
	fmt.Fprintf(tw, "enqueued:\t%s\n", fmtTime(e.Enqueued))
	fmt.Fprintf(tw, "due:\t%s\n", fmtTime(e.Due))
	fmt.Fprintf(tw, "first attempt:\t%s\n", fmtTime(e.FirstAttempt))
	fmt.Fprintf(tw, "last attempt:\t%s\n", fmtTime(e.LastAttempt))
	if e.Leased {
		fmt.Fprintf(tw, "lease until:\t%s\n", fmtTime(e.LeaseUntil))
	}
	if !e.LastError.IsZero() {
		le := e.LastError
		fmt.Fprintf(tw, "last error:\t%s %s (status %d, request %s)\n", dash(le.Code), le.Message, le.Status, dash(le.RequestID))
	}
	fmt.Fprintf(tw, "size:\t%d\n", len(e.Payload))
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

// ---- redrive

const redriveUsage = `redrive [flags] [ID...] FILE

Queues dead letters again as new events (attempts reset, key kept): the
letters with the given ids, or those the filter selects, or every one with
--all. Exits 4 when ids were given and none named a letter.`

func (c *cli) cmdRedrive(args []string) error {
	fs := flag.NewFlagSet("redrive", flag.ContinueOnError)
	all := fs.Bool("all", false, "redrive every letter")
	function := fs.String("function", "", "only letters for `FUNCTION`")
	reason := fs.String("reason", "", "only letters with `REASON`: retries-exhausted, event-age-exceeded or rejected")
	to := fs.String("to", "", "send the events to `FUNCTION` instead of their own")
	qualifier := fs.String("qualifier", "", "with qualifier `Q` instead of their own")
	if err := c.parse(fs, redriveUsage, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageErr("missing FILE")
	}
	path := fs.Arg(fs.NArg() - 1)
	ids := fs.Args()[:fs.NArg()-1]
	for _, id := range ids {
		if _, err := strconv.ParseUint(id, 10, 64); err != nil {
			return usageErr("ID %q: want a number (flags go before the ids)", id)
		}
	}
	r, err := parseReason(*reason)
	if err != nil {
		return err
	}
	filtered := *function != "" || r != ""
	switch {
	case len(ids) > 0 && (filtered || *all):
		return usageErr("give ids or a filter (--function, --reason, --all), not both")
	case len(ids) == 0 && !filtered && !*all:
		return usageErr("nothing selected: give ids, --function or --reason, or --all")
	}
	d, err := openDispatcher(path)
	if err != nil {
		return err
	}
	defer d.Close()
	ctx := context.Background()
	o := dispatcher.RedriveOptions{Function: *to, Qualifier: *qualifier}
	p := c.progress()
	p.printf("redriving…")
	var n int
	if len(ids) > 0 {
		n, err = d.DeadLetters().Redrive(ctx, ids, o)
	} else {
		n, err = d.DeadLetters().RedriveMatching(ctx, dispatcher.LetterFilter{Function: *function, Reason: r}, o)
	}
	p.done()
	if err != nil {
		return fmt.Errorf("redrove %d, then: %w", n, err)
	}
	if c.json {
		if err := c.writeJSON(map[string]int{"redriven": n}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(c.stdout, "redriven: %d\n", n)
	}
	if len(ids) > 0 && n < len(ids) {
		if n == 0 {
			return notFoundErr("no letter has any of the ids given")
		}
		fmt.Fprintf(c.stderr, "%d of the ids named no letter\n", len(ids)-n)
	}
	return nil
}

// ---- purge

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

// ---- export

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
	st, err := openStore(path)
	if err != nil {
		return err
	}
	defer st.Close()
	now := st.Now()
	enc := json.NewEncoder(w)
	return st.Scan(func(e store.Event) error {
		tick()
		return enc.Encode(toEventJSON(e, now, true))
	})
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

// ---- compact

const compactUsage = `compact [flags] FILE

Copies the file into FILE.compact without its free pages, with the same
owner, group and mode, syncs it, and renames it over FILE. Refuses a file
held by a running dispatcher, and a file that is not a queue. A dispatcher
that opens the file meanwhile waits, then opens the compacted file.`

type compactJSON struct {
	Before int64 `json:"before"`
	After  int64 `json:"after"`
}

func (c *cli) cmdCompact(args []string) error {
	fs := flag.NewFlagSet("compact", flag.ContinueOnError)
	if err := c.parse(fs, compactUsage, args); err != nil {
		return err
	}
	path, err := oneFile(fs)
	if err != nil {
		return err
	}
	if _, err := mustExist(path); err != nil {
		return err
	}
	p := c.progress()
	p.printf("compacting %s…", path)
	before, after, err := store.Compact(path, lockTimeout)
	p.done()
	if err != nil {
		return openErr(path, err)
	}
	out := compactJSON{Before: before, After: after}
	if c.json {
		return c.writeJSON(out)
	}
	_, err = fmt.Fprintf(c.stdout, "compacted %s: %d bytes before, %d after\n", path, out.Before, out.After)
	return err
}
