package main

// In the package: progress shows only on a terminal, which a test's
// child process never has, so these tests run the commands in process,
// with progress forced on and a clock of their own.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/store"
)

// ticking returns a clock that moves one second each time it is read,
// so that every rate shown is known.
func ticking() func() time.Time {
	t := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	return func() time.Time {
		t = t.Add(time.Second)
		return t
	}
}

// fiveOfEach writes five queued events (ids 1 to 5) and five dead letters
// (ids 100 to 104) into a new file.
func fiveOfEach(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "q.db")
	d, err := dispatcher.Open(path)
	require.NoError(t, err)
	for i := range 5 {
		_, err := d.Enqueue(context.Background(), dispatcher.Event{Function: "orders", Payload: fmt.Appendf(nil, `{"n":%d}`, i)})
		require.NoError(t, err)
	}
	require.NoError(t, d.Close())
	st, err := store.Open(path, store.Options{})
	require.NoError(t, err)
	b := deadletter.NewBolt(st)
	for i := range 5 {
		require.NoError(t, b.Put(context.Background(), deadletter.Letter{
			ID: fmt.Sprint(100 + i), Function: "orders", Payload: []byte(`{}`), Enqueued: time.Now(),
			Reason: deadletter.Rejected, DeadLettered: time.Now(),
		}))
	}
	require.NoError(t, st.Close())
	return path
}

// runForced runs dispatchctl in process with progress on, two ids a page
// and the ticking clock, and returns its exit code, stdout and stderr.
func runForced(stdin string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	c := newCLI(strings.NewReader(stdin), &out, &errb)
	c.forceProgress, c.now, c.page = true, ticking(), 2
	code := c.run(args)
	return code, out.String(), errb.String()
}

const clear = "\r\033[K"

func TestCountLine(t *testing.T) {
	t.Parallel()
	require.Equal(t, "redriven 1200 (800/s)", countLine("redriven", 1200, 1500*time.Millisecond))
	require.Equal(t, "redriven 3", countLine("redriven", 3, 0), "no rate before time has passed")
}

func TestProgressIsThrottled(t *testing.T) {
	t.Parallel()
	var buf strings.Builder
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	p := &progress{w: &buf, on: true, now: func() time.Time { return now }, start: now}
	now = now.Add(time.Second)
	p.count("x", 1)
	now = now.Add(50 * time.Millisecond)
	p.count("x", 2) // too soon after the last line
	now = now.Add(50 * time.Millisecond)
	p.count("x", 3)
	p.done()
	require.Equal(t, clear+"x 1 (1/s)"+clear+"x 3 (3/s)"+clear, buf.String())
}

func TestProgressOnlyOnATerminal(t *testing.T) {
	t.Parallel()
	c := newCLI(nil, io.Discard, &bytes.Buffer{})
	require.False(t, c.progress().on, "not a file")
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	require.NoError(t, err)
	defer f.Close()
	c.stderr = f
	require.False(t, c.progress().on, "a file, not a terminal")
	c.forceProgress = true
	require.True(t, c.progress().on)
	c.json = true
	require.False(t, c.progress().on, "never with --json")
}

// TestRedriveProgress: a page at a time, the count and rate so far, and
// the line cleared for the result; the same on a file and with --url.
func TestRedriveProgress(t *testing.T) {
	t.Parallel()
	want := clear + "redriven 2 (2/s)" + clear + "redriven 4 (2/s)" + clear + "redriven 5 (2/s)" + clear
	code, out, errs := runForced("", "redrive", "--all", fiveOfEach(t))
	require.Equal(t, 0, code, errs)
	require.Equal(t, "redriven: 5\n", out)
	require.Equal(t, want, errs)

	d, err := dispatcher.Open(fiveOfEach(t))
	require.NoError(t, err)
	defer d.Close()
	srv := httptest.NewServer(http.StripPrefix("/admin", d.AdminHandler()))
	defer srv.Close()
	code, out, errs = runForced("", "--url", srv.URL+"/admin", "redrive", "--all")
	require.Equal(t, 0, code, errs)
	require.Equal(t, "redriven: 5\n", out)
	require.Equal(t, want, errs)

	code, out, errs = runForced("", "--json", "redrive", "--all", fiveOfEach(t))
	require.Equal(t, 0, code, errs)
	require.JSONEq(t, `{"redriven":5}`, out)
	require.Empty(t, errs, "no progress with --json")
}

func TestExportProgress(t *testing.T) {
	t.Parallel()
	code, out, errs := runForced("", "export", fiveOfEach(t))
	require.Equal(t, 0, code, errs)
	require.Equal(t, 5, strings.Count(out, "\n"))
	// The last line stays: export's stdout is the data, so stderr has
	// its only summary.
	require.Equal(t, clear+"exported 2 (2/s)"+clear+"exported 4 (2/s)"+clear+"exported 5 (2/s)"+clear+clear+"exported 5 (1/s)\n", errs)
}

func TestPurgeAndCancelProgress(t *testing.T) {
	t.Parallel()
	path := fiveOfEach(t)
	code, out, errs := runForced("y\n", "purge", "--all", path)
	require.Equal(t, 0, code, errs)
	require.Equal(t, "purged: 5\n", out)
	// Counted, asked, then purged: the question on a line of its own.
	require.Equal(t, clear+"listed 2 (2/s)"+clear+"listed 4 (2/s)"+clear+"listed 5 (2/s)"+clear+
		"purge 5 letters? [y/N] "+clear+"purged 2 (2/s)"+clear+"purged 4 (2/s)"+clear+"purged 5 (2/s)"+clear, errs)

	code, out, errs = runForced("", "cancel", "--yes", "--all", path)
	require.Equal(t, 0, code, errs)
	require.Equal(t, "cancelled 5 events\n", out)
	require.Equal(t, clear+"cancelled 2 (2/s)"+clear+"cancelled 4 (2/s)"+clear+"cancelled 5 (2/s)"+clear, errs)
}

func TestCompactAndSalvageProgress(t *testing.T) {
	t.Parallel()
	path := fiveOfEach(t)
	code, out, errs := runForced("", "compact", path)
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "compacted "+path)
	// A small file: one count, the total, at the end of the copy.
	q := regexp.QuoteMeta(clear)
	require.Regexp(t, `^`+q+`compacting .*…`+q+`compacting: keys copied \d+ \(\d+/s\)`+q+`$`, errs)

	code, out, errs = runForced("", "salvage", path, path+".new")
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "salvaged "+path)
	require.Regexp(t, `^`+q+`salvaging .*…`+q+`salvaging: events and values copied \d+ \(\d+/s\)`+q+`$`, errs)
}
