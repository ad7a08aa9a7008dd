package main_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
)

// copyOf copies the file at path into a new one and returns its path.
func copyOf(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	dst := filepath.Join(t.TempDir(), "live.db")
	require.NoError(t, os.WriteFile(dst, b, 0o600))
	return dst
}

// live is a dispatcher running in the test process, its admin handler
// served over HTTP at url, as an application would mount it.
type live struct {
	d   *dispatcher.Dispatcher
	url string
}

// serve opens a dispatcher on path and serves its admin handler under
// /admin; wrap, when set, stands between (the application's auth).
func serve(t *testing.T, path string, wrap func(http.Handler) http.Handler, opts ...dispatcher.AdminOption) *live {
	t.Helper()
	d, err := dispatcher.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	var h http.Handler = http.StripPrefix("/admin", d.AdminHandler(opts...))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &live{d: d, url: srv.URL + "/admin"}
}

// statsHeld are the figures of GET /stats that say what the file holds:
// the rest are totals since the dispatcher opened (a file run opens one
// per command) and the file's size, which the running dispatcher's own
// writes change.
var statsHeld = []string{"ready", "scheduled", "leased", "queued", "bytes", "corrupt", "deadLetters", "keys", "functions"}

// TestSameOnFileAndURL runs each command on a file and, with --url, on a
// running dispatcher over an identical copy, in the same order, and wants
// the same output and exit code from both: both modes are one admin API.
func TestSameOnFileAndURL(t *testing.T) {
	t.Parallel()
	file := seed(t)
	// Events the steps create (redriven letters) are enqueued at a
	// different instant in each mode: their times are compared as "new".
	start := time.Now()
	copied := copyOf(t, file)
	svc := serve(t, copied, nil)

	// FILE stands where a file run takes its file; a --url run drops it.
	steps := []struct {
		stdin string
		args  []string
		code  int
	}{
		{"", []string{"stats", "FILE"}, 0},
		{"", []string{"--json", "stats", "FILE"}, 0},
		{"", []string{"ls", "FILE"}, 0},
		{"", []string{"--json", "ls", "FILE"}, 0},
		{"", []string{"ls", "--state", "ready", "FILE"}, 0},
		{"", []string{"ls", "--state", "dead", "FILE"}, 0},
		{"", []string{"--json", "ls", "--state", "dead", "FILE"}, 0},
		{"", []string{"ls", "--reason", "rejected", "FILE"}, 0},
		{"", []string{"--json", "ls", "--reason", "retries-exhausted", "FILE"}, 0},
		{"", []string{"ls", "--function", "orders", "FILE"}, 0},
		{"", []string{"--json", "ls", "--state", "dead", "--function", "orders", "FILE"}, 0},
		{"", []string{"ls", "--state", "dead", "--older-than", "24h", "FILE"}, 0},
		{"", []string{"ls", "--limit", "1", "FILE"}, 0},
		{"", []string{"--json", "ls", "--limit", "2", "FILE"}, 0},
		{"", []string{"--json", "ls", "--limit", "2", "--after", "2", "FILE"}, 0},
		{"", []string{"--json", "ls", "--state", "dead", "--limit", "1", "--after", "100", "FILE"}, 0},
		{"", []string{"ls", "--state", "evicted", "FILE"}, 0},
		{"", []string{"ls", "--reason", "bogus", "FILE"}, 2},
		{"", []string{"show", "1", "FILE"}, 0},
		{"", []string{"show", "100", "FILE"}, 0},
		{"", []string{"--json", "show", "3", "FILE"}, 0},
		{"", []string{"--json", "show", "101", "FILE"}, 0},
		{"", []string{"show", "999", "FILE"}, 4},
		{"", []string{"export", "FILE"}, 0},
		{"", []string{"export", "--dead", "FILE"}, 0},
		{"", []string{"redrive", "101", "FILE"}, 0},
		{"", []string{"redrive", "101", "FILE"}, 4},
		{"n\n", []string{"purge", "--all", "FILE"}, 1},
		{"", []string{"purge", "--yes", "--older-than", "24h", "FILE"}, 0},
		{"", []string{"--json", "redrive", "--reason", "event-age-exceeded", "FILE"}, 0},
		{"", []string{"redrive", "--to", "not a function!", "--all", "FILE"}, 2},
		{"", []string{"--json", "ls", "FILE"}, 0},
		{"", []string{"cancel", "--yes", "FILE", "2"}, 0},
		{"n\n", []string{"cancel", "--function", "orders", "FILE"}, 1},
		{"y\n", []string{"--json", "cancel", "--function", "billing", "FILE"}, 0},
		{"", []string{"pause", "FILE", "orders"}, 0},
		{"", []string{"stats", "FILE"}, 0},
		{"", []string{"--json", "resume", "FILE", "orders"}, 0},
		{"", []string{"--json", "purge", "--yes", "--all", "FILE"}, 0},
		{"", []string{"--json", "stats", "FILE"}, 0},
		{"", []string{"ls", "FILE"}, 0},
	}
	for _, s := range steps {
		var onFile, onURL []string
		for _, a := range s.args {
			if a == "FILE" {
				onFile = append(onFile, file)
				continue
			}
			onFile, onURL = append(onFile, a), append(onURL, a)
		}
		f := ctl(t, s.stdin, onFile...)
		u := ctl(t, s.stdin, append([]string{"--url", svc.url}, onURL...)...)
		name := strings.Join(s.args, " ")
		require.Equal(t, s.code, f.code, "%s on the file: %s", name, f.stderr)
		require.Equal(t, f.code, u.code, "%s: exit codes differ; with --url: %s", name, u.stderr)
		if f.code == 0 {
			require.NotEmpty(t, f.stdout, name)
		}
		if slices.Equal(onURL, []string{"--json", "stats"}) {
			requireSameStats(t, f.stdout, u.stdout)
			continue
		}
		if s.args[0] == "stats" {
			f.stdout, u.stdout = dropLine(f.stdout, "file size"), dropLine(u.stdout, "file size")
		}
		require.Equal(t, sinceAs(f.stdout, start), sinceAs(u.stdout, start), "%s: outputs differ", name)
	}

	// What the library reads back agrees too.
	require.NoError(t, svc.d.Close())
	for _, path := range []string{file, copied} {
		d, err := dispatcher.Open(path, dispatcher.WithReadOnly())
		require.NoError(t, err)
		n, err := d.DeadLetters().Count()
		require.NoError(t, err)
		require.Zero(t, n, "%s: every letter redriven or purged", path)
		s := d.Stats()
		// 2 cancelled by id; 3 and 101's redrive, billing's, by filter; 102's
		// redrive stays.
		require.EqualValues(t, 2, s.Queued(), path)
		require.NoError(t, d.Close())
	}
}

// requireSameStats compares two --json stats on what the file holds, and
// wants the same shape.
func requireSameStats(t *testing.T, a, b string) {
	t.Helper()
	var ma, mb map[string]any
	require.NoError(t, json.Unmarshal([]byte(a), &ma), a)
	require.NoError(t, json.Unmarshal([]byte(b), &mb), b)
	require.ElementsMatch(t, keys(ma), keys(mb), "the same fields")
	for _, k := range statsHeld {
		require.Equal(t, ma[k], mb[k], "stats %s", k)
	}
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

var timeRE = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`)

// sinceAs writes the times of s at or after start as NEW.
func sinceAs(s string, start time.Time) string {
	return timeRE.ReplaceAllStringFunc(s, func(m string) string {
		if t, err := time.Parse(time.RFC3339, m); err == nil && !t.Before(start.Truncate(time.Second)) {
			return "NEW"
		}
		return m
	})
}

func dropLine(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestURLUsage: --url takes no FILE, and the commands that work on the
// file itself refuse it.
func TestURLUsage(t *testing.T) {
	t.Parallel()
	path := seed(t)
	svc := serve(t, copyOf(t, path), nil)
	for _, args := range [][]string{
		{"compact", path}, {"check", path}, {"salvage", path, path + ".new"},
		{"compact", "--url", svc.url, path},
	} {
		r := ctl(t, "", append([]string{"--url", svc.url}, args...)...)
		require.Equal(t, 2, r.code, "%v: %s", args, r.stderr)
		require.Contains(t, r.stderr, "works on a file only", "%v", args)
	}
	for _, args := range [][]string{
		{"stats", path}, {"ls", path}, {"show", "1", path}, {"redrive", "100", path}, {"cancel", path, "1"},
		{"pause", path, "orders"}, {"export", path}, {"purge", "--all", path},
	} {
		r := ctl(t, "", append([]string{"--url", svc.url}, args...)...)
		require.Equal(t, 2, r.code, "%v: %s", args, r.stderr)
		require.Contains(t, r.stderr, "no FILE", "%v", args)
	}
	r := ctl(t, "", "stats")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "missing FILE (or --url URL")
	r = ctl(t, "", "--header", "X-A: b", "stats", path)
	require.Equal(t, 2, r.code, "--header without --url")
	r = ctl(t, "", "--url", "ftp://example.com/admin", "stats")
	require.Equal(t, 2, r.code)

	// The environment stands for --url, but not for the file-only
	// commands, which it cannot serve; an empty --url sets it aside.
	env := []string{"DISPATCHCTL_URL=" + svc.url}
	r = ctlEnv(t, env, "", "--json", "stats")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, 3, stats(t, path).DeadLetters)
	r = ctlEnv(t, env, "", "check", path)
	require.Equal(t, 0, r.code, r.stderr)
	r = ctlEnv(t, env, "", "--url", "", "stats", path)
	require.Equal(t, 0, r.code, r.stderr)
	// Flags after the command work as before it.
	r = ctl(t, "", "stats", "--url", svc.url, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.True(t, json.Valid([]byte(r.stdout)))
}

const token = "Bearer s3cret-token"

// requireNoSecret fails if r printed any of the secrets.
func requireNoSecret(t *testing.T, r result, what string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		require.NotContains(t, r.stdout, s, what)
		require.NotContains(t, r.stderr, s, what)
	}
}

// TestURLAuth: the token reaches the service from --header and from the
// environment, and no output of any failing command shows it.
func TestURLAuth(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	auth := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got := r.Header.Get("Authorization")
			mu.Lock()
			seen = append(seen, got+"|"+r.Header.Get("X-Tenant"))
			mu.Unlock()
			if got != token {
				// As an application's auth might answer: the request's
				// own credentials echoed, which must not be printed.
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				json.NewEncoder(w).Encode(map[string]string{"error": "bad credentials: " + got + ", and " + strings.TrimPrefix(got, "Bearer ")})
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	svc := serve(t, seed(t), auth)
	ro := serve(t, seed(t), auth, dispatcher.AdminReadOnly())

	r := ctl(t, "", "--url", svc.url, "--header", "Authorization: "+token, "--header", "X-Tenant: acme", "stats")
	require.Equal(t, 0, r.code, r.stderr)
	r = ctlEnv(t, []string{"DISPATCHCTL_AUTHORIZATION=" + token}, "", "--url", svc.url, "stats")
	require.Equal(t, 0, r.code, r.stderr)
	mu.Lock()
	require.Equal(t, []string{token + "|acme", token + "|"}, seen)
	mu.Unlock()

	withToken := []string{"DISPATCHCTL_AUTHORIZATION=" + token}
	for _, tc := range []struct {
		env  []string
		args []string
		code int
	}{
		{withToken, []string{"--url", svc.url, "show", "999"}, 4},
		{withToken, []string{"--url", svc.url, "redrive", "999"}, 4},
		{withToken, []string{"--url", svc.url, "ls", "--state", "nope"}, 2},
		{withToken, []string{"--url", ro.url, "redrive", "--all"}, 1},
		{withToken, []string{"--url", ro.url, "--json", "pause", "orders"}, 1},
		{withToken, []string{"--url", svc.url + "/nowhere", "stats"}, 4},
		{nil, []string{"--url", svc.url, "--header", "Authorization: Bearer s3cret-token-but-wrong", "stats"}, 1},
		{nil, []string{"--url", "http://user:s3cret-pass@" + strings.TrimPrefix(svc.url, "http://"), "stats"}, 1},
		{nil, []string{"--url", svc.url, "--header", token, "stats"}, 2}, // no "Name:"
		{nil, []string{"--url", svc.url, "--header", "Authorization: " + token, "--timeout", "-1s", "stats"}, 2},
		{withToken, []string{"--url", "http://user:s3cret-pass@" + strings.TrimPrefix(svc.url, "http://"), "show", "999"}, 4},
		{withToken, []string{"--url", closedPort(t) + "/admin", "stats"}, 1},
		{withToken, []string{"--url", "http://user:s3cret-pass@" + strings.TrimPrefix(closedPort(t), "http://") + "/admin", "stats"}, 1},
	} {
		r := ctlEnv(t, tc.env, "", tc.args...)
		what := strings.Join(tc.args[2:], " ")
		require.Equal(t, tc.code, r.code, "%s: %s", what, r.stderr)
		require.NotEmpty(t, r.stderr, what)
		requireNoSecret(t, r, what, "s3cret", "user:")
	}
}

// TestURLAuthEchoRedacted: an application's JSON error is printed, but
// not the credentials it echoes.
func TestURLAuthEchoRedacted(t *testing.T) {
	t.Parallel()
	echo := func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			u, p, _ := r.BasicAuth()
			json.NewEncoder(w).Encode(map[string]string{"error": "refused " + r.Header.Get("Authorization") + " " + u + ":" + p})
		})
	}
	svc := serve(t, seed(t), echo)
	r := ctl(t, "", "--url", svc.url, "--header", "Authorization: "+token, "stats")
	require.Equal(t, 1, r.code)
	require.Equal(t, "dispatchctl stats: refused [redacted] :\n", r.stderr)
	r = ctl(t, "", "--url", "http://someone:s3cret-pass@"+strings.TrimPrefix(svc.url, "http://"), "stats")
	require.Equal(t, 1, r.code)
	require.Equal(t, "dispatchctl stats: refused Basic [redacted] [redacted]:[redacted]\n", r.stderr)
}

func TestURLUnreachable(t *testing.T) {
	t.Parallel()
	u := closedPort(t)
	r := ctl(t, "", "--url", u+"/admin", "stats")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "cannot reach "+u+"/admin: ")
	require.Empty(t, r.stdout)
}

// TestURLReadOnly: a viewer's handler refuses every change, and nothing
// changes.
func TestURLReadOnly(t *testing.T) {
	t.Parallel()
	ro := serve(t, seed(t), nil, dispatcher.AdminReadOnly())
	for _, args := range [][]string{
		{"redrive", "--all"}, {"redrive", "100"}, {"purge", "--yes", "--all"}, {"cancel", "--yes", "1"}, {"pause", "orders"},
	} {
		r := ctl(t, "", append([]string{"--url", ro.url}, args...)...)
		require.Equal(t, 1, r.code, "%v: %s", args, r.stderr)
		require.Contains(t, r.stderr, "read-only", "%v", args)
		require.Empty(t, r.stdout, "%v", args)
	}
	n, err := ro.d.DeadLetters().Count()
	require.NoError(t, err)
	require.Equal(t, 3, n)
	s := ro.d.Stats()
	require.EqualValues(t, 3, s.Queued())
	require.False(t, slices.ContainsFunc(s.Functions, func(f dispatcher.FunctionStats) bool { return f.Paused }))
	r := ctl(t, "", "--url", ro.url, "ls", "--state", "dead")
	require.Equal(t, 0, r.code, "looking is allowed: %s", r.stderr)
}

// TestURLOtherServers: answers that are not the admin API's — an error
// page, a page where JSON was expected, no answer in time — fail with the
// status or the wait, never with the body.
func TestURLOtherServers(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("/broken/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "<html><body>stack trace: internals</body></html>")
	})
	mux.HandleFunc("/html/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<html><body>login page: internals</body></html>")
	})
	mux.HandleFunc("/slow/", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // until the client gives up
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	r := ctl(t, "", "--url", srv.URL+"/broken", "ls")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "GET "+srv.URL+"/broken/events: 500 Internal Server Error")
	requireNoSecret(t, r, "500", "internals", "<html")

	r = ctl(t, "", "--url", srv.URL+"/broken", "redrive", "1")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "POST "+srv.URL+"/broken/deadletters/redrive: 500 Internal Server Error")

	r = ctl(t, "", "--url", srv.URL+"/html", "stats")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "not an answer of the admin API")
	requireNoSecret(t, r, "html", "internals", "<html")

	r = ctl(t, "", "--url", srv.URL+"/slow", "--timeout", "100ms", "stats")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "no answer within 100ms")
}

// TestURLClosedDispatcher: a service whose dispatcher was closed answers
// 503; dispatchctl fails with its message.
func TestURLClosedDispatcher(t *testing.T) {
	t.Parallel()
	svc := serve(t, seed(t), nil)
	require.NoError(t, svc.d.Close())
	r := ctl(t, "", "--url", svc.url, "stats")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "closed")
}
