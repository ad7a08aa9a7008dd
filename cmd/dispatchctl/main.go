// Command dispatchctl inspects and repairs a dispatcher's queue: counts,
// queued events, dead letters, redrive, purge, cancel, pause, export; and,
// on a file only, compaction, checking and salvage.
//
// Usage:
//
//	dispatchctl [--json] [--url URL] <command> [flags] [FILE]
//
// Commands:
//
//	stats    counts by state, bytes, corrupt records, dead letters, keys
//	ls       list queued events or dead letters
//	show     show one event or dead letter, payload included
//	redrive  queue dead letters again
//	purge    delete dead letters
//	export   write queued events or dead letters as JSON lines
//	compact  rewrite the file without its free pages (file only)
//	check    verify the whole file, even one the other commands refuse (file only)
//	salvage  copy what can be read of a damaged file into a new one (file only)
//	pause    stop sending to one function, durably
//	cancel   cancel queued events
//	resume   send to a paused function again
//
// Run "dispatchctl <command> --help" for each one's flags.
//
// # Two modes, one behaviour
//
// On a file (FILE given, no --url) dispatchctl opens the queue file while
// no dispatcher runs on it. With --url (or DISPATCHCTL_URL) it works on a
// running dispatcher through its admin API, at the URL where the
// application mounts d.AdminHandler(), and takes no FILE. Either way the
// commands go through the same admin API — on a file, the handler of a
// dispatcher dispatchctl opened, called in process — so output and exit
// codes are the same. check, salvage and compact read or rewrite the file
// itself and work on a file only: --url with them is a usage error, and
// they ignore DISPATCHCTL_URL. An empty --url sets DISPATCHCTL_URL aside.
// --timeout (default 30s) bounds each request to the service. The global
// flags may come before or after the command.
//
// The read-only commands (stats, ls, show, export) open a file read-only
// and never change a byte of it, so they work on a read-only mount; on an
// empty or missing file they fail rather than make it a queue. compact
// refuses a file that is not a queue. A dispatcher holds its file's lock
// while it runs, and even the read-only commands refuse a held file: use
// --url then.
//
// # Authentication
//
// The admin handler sits behind the application's own authentication.
// --header 'Name: value' (repeatable) adds a header to every request, and
// DISPATCHCTL_AUTHORIZATION is sent as the Authorization header, so that a
// token need not appear in ps or the shell's history. URL userinfo is sent
// as basic authentication. dispatchctl never prints a header's value or
// the URL's userinfo.
//
// # Exit codes
//
//	0  ok
//	1  the operation failed: also a refusal (403: a read-only handler or
//	   dispatcher), a server error, or a service that cannot be reached
//	2  usage error, or input the service refused (400)
//	3  the file is held by a running dispatcher
//	4  not found (404)
//
// --json prints the admin API's JSON shapes (package internal/wire): lists
// as JSON lines, then {"next":"CURSOR"} when there is a next page. Long
// work (redrive, purge, cancel, export, compact, salvage) shows a count
// and a rate on stderr when it is a terminal, and never with --json.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/store"
)

// Exit codes.
const (
	exitOK       = 0
	exitFailed   = 1
	exitUsage    = 2
	exitInUse    = 3
	exitNotFound = 4
)

// lockTimeout bounds the wait for the file lock: a held file is reported,
// not waited for.
const lockTimeout = 500 * time.Millisecond

// defaultTimeout bounds each request to a live service.
const defaultTimeout = 30 * time.Second

// The environment: a URL and a token kept out of the command line.
const (
	envURL           = "DISPATCHCTL_URL"
	envAuthorization = "DISPATCHCTL_AUTHORIZATION"
)

// pageSize is how many ids a list reads, and an action takes, per request:
// the admin API's largest page.
const pageSize = 1000

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// cliError carries an exit code. A nil err means nothing more to say.
type cliError struct {
	code int
	err  error
}

func (e *cliError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func (e *cliError) Unwrap() error { return e.err }

// errHelp ends a command after its usage was printed on request.
var errHelp = &cliError{code: exitOK}

func usageErr(format string, a ...any) error {
	return &cliError{code: exitUsage, err: fmt.Errorf(format, a...)}
}

func notFoundErr(format string, a ...any) error {
	return &cliError{code: exitNotFound, err: fmt.Errorf(format, a...)}
}

// wrapErr prefixes err's message, keeping its exit code.
func wrapErr(err error, format string, a ...any) error {
	code := exitFailed
	var ce *cliError
	if errors.As(err, &ce) {
		code, err = ce.code, ce.err
	}
	return &cliError{code: code, err: fmt.Errorf(format+": %w", append(a, err)...)}
}

func inUseErr(path string, fileOnly bool) error {
	if fileOnly {
		return &cliError{code: exitInUse, err: fmt.Errorf("%s is held by a running dispatcher; stop it first", path)}
	}
	return &cliError{code: exitInUse, err: fmt.Errorf(
		"%s is held by a running dispatcher; use --url with the service's admin URL (where it mounts d.AdminHandler()) to work on it live", path)}
}

// cli is one run of the tool: its streams, global flags and connection.
type cli struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string

	json    bool
	url     secret     // --url
	headers headerList // --header
	timeout time.Duration
	set     map[string]bool // the flags given, global or the command's
	// fileOnly names the command running when it works on a file only.
	fileOnly string

	// api is the admin API this run talks to, once connect has chosen;
	// closer closes what connect opened (the file's dispatcher).
	api    *client
	closer func() error

	// Tests in the package set these: progress shown whatever stderr is,
	// and a clock to show its rate by.
	forceProgress bool
	now           func() time.Time
	page          int // ids per request; pageSize
}

type command struct {
	summary string
	run     func(c *cli, args []string) error
	// fileOnly commands read or write the file itself, not through the
	// admin API: --url does not apply.
	fileOnly bool
}

// commands is the command table. Each command lives in the file of its name
// (check and salvage share check.go), with its usage text and the helpers
// only it uses; output.go holds what several commands share, client.go the
// admin API.
var commands = map[string]command{
	"stats":   {"counts by state, bytes, corrupt records, dead letters, keys", (*cli).cmdStats, false},
	"ls":      {"list queued events or dead letters", (*cli).cmdLs, false},
	"show":    {"show one event or dead letter, payload included", (*cli).cmdShow, false},
	"redrive": {"queue dead letters again", (*cli).cmdRedrive, false},
	"purge":   {"delete dead letters", (*cli).cmdPurge, false},
	"export":  {"write queued events or dead letters as JSON lines", (*cli).cmdExport, false},
	"compact": {"rewrite the file without its free pages (file only)", (*cli).cmdCompact, true},
	"check":   {"verify the whole file, even one the other commands refuse (file only)", (*cli).cmdCheck, true},
	"salvage": {"copy what can be read of a damaged file into a new one (file only)", (*cli).cmdSalvage, true},
	"pause":   {"stop sending to one function, durably", (*cli).cmdPause, false},
	"cancel":  {"cancel queued events", (*cli).cmdCancel, false},
	"resume":  {"send to a paused function again", (*cli).cmdResume, false},
}

func newCLI(stdin io.Reader, stdout, stderr io.Writer) *cli {
	return &cli{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv, timeout: defaultTimeout,
		set: map[string]bool{}, now: time.Now, page: pageSize}
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return newCLI(stdin, stdout, stderr).run(args)
}

func (c *cli) run(args []string) int {
	global := flag.NewFlagSet("dispatchctl", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	global.Usage = func() {}
	c.sharedFlags(global)
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.mainUsage(c.stdout, global)
			return exitOK
		}
		fmt.Fprintf(c.stderr, "dispatchctl: %v\n", err)
		c.mainUsage(c.stderr, global)
		return exitUsage
	}
	global.Visit(func(f *flag.Flag) { c.set[f.Name] = true })
	if global.NArg() == 0 {
		fmt.Fprintln(c.stderr, "dispatchctl: no command")
		c.mainUsage(c.stderr, global)
		return exitUsage
	}
	name := global.Arg(0)
	if name == "help" {
		c.mainUsage(c.stdout, global)
		return exitOK
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(c.stderr, "dispatchctl: unknown command %q\n", name)
		c.mainUsage(c.stderr, global)
		return exitUsage
	}
	err := c.runCommand(name, cmd, global.Args()[1:])
	if err == nil {
		return exitOK
	}
	var ce *cliError
	if errors.As(err, &ce) {
		if ce.err != nil {
			fmt.Fprintf(c.stderr, "dispatchctl %s: %v\n", name, ce.err)
		}
		if ce.code == exitUsage && !isAPIError(ce.err) {
			fmt.Fprintf(c.stderr, "run 'dispatchctl %s --help' for usage\n", name)
		}
		return ce.code
	}
	fmt.Fprintf(c.stderr, "dispatchctl %s: %v\n", name, err)
	return exitFailed
}

// runCommand runs cmd and closes what it opened; a failure to close a
// file that was written is the command's failure.
func (c *cli) runCommand(name string, cmd command, args []string) error {
	if cmd.fileOnly {
		c.fileOnly = name
	}
	err := cmd.run(c, args)
	if cerr := c.release(); err == nil {
		err = cerr
	}
	return err
}

// release closes the file connect opened, if any, once: commands that
// change it call it before they report, so that a failure to close is
// not reported after a success.
func (c *cli) release() error {
	f := c.closer
	c.closer = nil
	if f == nil {
		return nil
	}
	return f()
}

func isAPIError(err error) bool {
	var ae *apiError
	return errors.As(err, &ae)
}

func (c *cli) mainUsage(w io.Writer, global *flag.FlagSet) {
	fmt.Fprintln(w, "usage: dispatchctl [--json] [--url URL] <command> [flags] [FILE]")
	fmt.Fprintln(w, "\nOn FILE while no dispatcher runs on it; with --url (or $"+envURL+"), on a running")
	fmt.Fprintln(w, "dispatcher through its admin API (d.AdminHandler()), with no FILE. The same")
	fmt.Fprintln(w, "commands, output and exit codes either way; compact, check and salvage work on")
	fmt.Fprintln(w, "a file only.")
	fmt.Fprintln(w, "\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nGlobal flags (also accepted after the command):")
	global.SetOutput(w)
	global.PrintDefaults()
	global.SetOutput(io.Discard)
	fmt.Fprintln(w, "\nAuthentication: --header 'Name: value', repeatable; $"+envAuthorization+" is sent as")
	fmt.Fprintln(w, "the Authorization header, out of ps and the shell's history. Values are never printed.")
	fmt.Fprintln(w, "\nExit codes: 0 ok; 1 failed (also 403 refused, 5xx, service unreachable); 2 usage error")
	fmt.Fprintln(w, "or input refused (400); 3 file held by a running dispatcher; 4 not found (404).")
	fmt.Fprintln(w, "Run 'dispatchctl <command> --help' for a command's flags.")
}

// sharedFlags defines the flags every command takes, before or after its
// name.
func (c *cli) sharedFlags(fs *flag.FlagSet) {
	fs.BoolVar(&c.json, "json", c.json, "machine output: the admin API's JSON (JSON lines for lists)")
	fs.Var(&c.url, "url", "work on a running dispatcher through its admin API at `URL` (default $"+envURL+"), not on FILE")
	fs.Var(&c.headers, "header", "with --url: send the header `'Name: value'` (repeatable; $"+envAuthorization+" sends Authorization)")
	fs.DurationVar(&c.timeout, "timeout", c.timeout, "with --url: give up on a request after `DURATION`")
}

// parse parses a command's flags, adding the shared ones to them. On
// --help it prints usage on stdout and returns errHelp.
func (c *cli) parse(fs *flag.FlagSet, usage string, args []string) error {
	c.sharedFlags(fs)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		// The forms first, one a line, until the first blank line.
		forms, text, _ := strings.Cut(strings.TrimSpace(usage), "\n\n")
		for i, f := range strings.Split(forms, "\n") {
			lead := "usage:"
			if i > 0 {
				lead = "   or:"
			}
			fmt.Fprintf(c.stdout, "%s dispatchctl %s\n", lead, f)
		}
		if text != "" {
			fmt.Fprintf(c.stdout, "\n%s\n", text)
		}
		fmt.Fprintln(c.stdout, "\nFlags:")
		fs.SetOutput(c.stdout)
		fs.PrintDefaults()
		return errHelp
	}
	if err != nil {
		return usageErr("%v", err)
	}
	fs.Visit(func(f *flag.Flag) { c.set[f.Name] = true })
	if c.fileOnly != "" && (c.set["url"] || c.set["header"] || c.set["timeout"]) {
		return usageErr("%s works on a file only: --url, --header and --timeout do not apply", c.fileOnly)
	}
	return nil
}

// secret is a flag value that is never printed, not even as a default
// in --help: a URL can carry a password.
type secret struct{ v string }

func (s *secret) String() string     { return "" }
func (s *secret) Set(v string) error { s.v = v; return nil }

// headerList is --header's values. Set never fails: the flag package
// would print the value in its error. They are checked by connect.
type headerList []string

func (h *headerList) String() string     { return "" }
func (h *headerList) Set(v string) error { *h = append(*h, v); return nil }

// remoteURL is the URL of the admin API this run talks to, "" for a file:
// --url, else DISPATCHCTL_URL (an empty --url sets it aside).
func (c *cli) remoteURL() string {
	if c.fileOnly != "" {
		return "" // DISPATCHCTL_URL is a session's default, not a refusal
	}
	if c.set["url"] {
		return c.url.v
	}
	return c.getenv(envURL)
}

// operands splits a command's operands into FILE, at index fileAt (-1 for
// the last), and the rest; with --url there is no FILE, and path is "".
func (c *cli) operands(fs *flag.FlagSet, fileAt int) (path string, rest []string, err error) {
	args := fs.Args()
	if c.remoteURL() != "" {
		return "", args, nil
	}
	if len(args) == 0 {
		return "", nil, usageErr("missing FILE (or --url URL for a running dispatcher)")
	}
	if fileAt < 0 {
		fileAt = len(args) - 1
	}
	rest = append(append([]string{}, args[:fileAt]...), args[fileAt+1:]...)
	return args[fileAt], rest, nil
}

// oneFile returns the only operand, FILE, or none with --url.
func (c *cli) oneFile(fs *flag.FlagSet) (string, error) {
	path, rest, err := c.operands(fs, 0)
	switch {
	case err != nil:
		return "", err
	case len(rest) > 0 && path == "":
		return "", usageErr("unexpected argument %q: with --url there is no FILE", rest[0])
	case len(rest) > 0:
		return "", usageErr("unexpected arguments after FILE: %s (flags go before FILE)", strings.Join(rest, " "))
	}
	return path, nil
}

// connect chooses this run's admin API: the service at --url, or the
// handler of a dispatcher opened on path, read-only unless write. Every
// command but check, salvage and compact goes through it.
func (c *cli) connect(path string, write bool) error {
	if raw := c.remoteURL(); raw != "" {
		return c.connectRemote(raw)
	}
	if c.set["header"] || c.set["timeout"] {
		return usageErr("--header and --timeout apply with --url only")
	}
	var d *dispatcher.Dispatcher
	var err error
	if write {
		d, err = openDispatcher(path)
	} else {
		d, err = openReader(path)
	}
	if err != nil {
		return err
	}
	var opts []dispatcher.AdminOption
	if !write {
		opts = append(opts, dispatcher.AdminReadOnly())
	}
	c.api = newInProcess(d.AdminHandler(opts...), path)
	c.closer = d.Close
	return nil
}

func (c *cli) connectRemote(raw string) error {
	// Neither message quotes the URL: it can carry a password.
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageErr("--url: want http://HOST[:PORT]/PATH or https://…, where the service mounts d.AdminHandler()")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return usageErr("--url: want the admin handler's root, without a query or fragment")
	}
	if c.timeout <= 0 {
		return usageErr("--timeout %v: want a positive duration", c.timeout)
	}
	h := http.Header{}
	if tok := c.getenv(envAuthorization); tok != "" {
		h.Set("Authorization", tok)
	}
	for i, kv := range c.headers {
		name, value, ok := strings.Cut(kv, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t\r\n") || strings.ContainsAny(value, "\r\n") {
			return usageErr("--header number %d: want 'Name: value'", i+1)
		}
		if textproto.CanonicalMIMEHeaderKey(name) == "Authorization" {
			h.Del("Authorization") // --header wins over the environment
		}
		h.Add(name, strings.TrimSpace(value))
	}
	c.api = newRemote(u, h, c.timeout)
	return nil
}

// mustExist refuses a missing file, which Open would create.
func mustExist(path string) (os.FileInfo, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, &cliError{code: exitFailed, err: fmt.Errorf("%s: no such file", path)}
	}
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, &cliError{code: exitFailed, err: fmt.Errorf("%s: is a directory", path)}
	}
	return fi, nil
}

// lockedErr explains a held file; fileOnly is for the commands --url
// cannot replace.
func lockedErr(path string, err error, fileOnly bool) error {
	if errors.Is(err, dispatcher.ErrFileInUse) || errors.Is(err, store.ErrLocked) {
		return inUseErr(path, fileOnly)
	}
	return err
}

// openDispatcher opens an existing queue file for commands that change it.
func openDispatcher(path string) (*dispatcher.Dispatcher, error) {
	return openDispatcherWith(path)
}

// openReader opens an existing queue file read-only, for commands that
// only look: not a byte of the file changes.
func openReader(path string) (*dispatcher.Dispatcher, error) {
	return openDispatcherWith(path, dispatcher.WithReadOnly())
}

func openDispatcherWith(path string, opts ...dispatcher.Option) (*dispatcher.Dispatcher, error) {
	if _, err := mustExist(path); err != nil {
		return nil, err
	}
	d, err := dispatcher.Open(path, append([]dispatcher.Option{dispatcher.WithLockTimeout(lockTimeout)}, opts...)...)
	if err != nil {
		return nil, openErr(path, err, false)
	}
	return d, nil
}

// openErr explains why a file could not be opened.
func openErr(path string, err error, fileOnly bool) error {
	var ce *store.CorruptError // store.Compact's, which has no dispatcher between
	if errors.Is(err, dispatcher.ErrCorruptFile) || errors.As(err, &ce) {
		return &cliError{code: exitFailed, err: fmt.Errorf("%s is not a dispatcher queue, or not a readable one (left as it was): %w", path, err)}
	}
	return lockedErr(path, err, fileOnly)
}
