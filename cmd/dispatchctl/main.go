// Command dispatchctl inspects and repairs a dispatcher's queue file while
// no dispatcher runs on it: counts, queued events, dead letters, redrive,
// purge, export, compaction, checking and salvage.
//
// Usage:
//
//	dispatchctl [--json] <command> [flags] FILE
//
// Commands:
//
//	stats    counts by state, bytes, corrupt records, dead letters, keys
//	ls       list queued events or dead letters
//	show     show one event or dead letter, payload included
//	redrive  queue dead letters again
//	purge    delete dead letters
//	export   write queued events or dead letters as JSON lines
//	compact  rewrite the file without its free pages
//	check    verify the whole file, even one the other commands refuse
//	salvage  copy what can be read of a damaged file into a new one
//	pause    stop sending to one function, durably
//	cancel   cancel queued events
//	resume   send to a paused function again
//
// Run "dispatchctl <command> --help" for each one's flags.
//
// Exit codes: 0 ok, 1 the operation failed, 2 usage error, 3 the file is
// held by a running dispatcher, 4 not found.
//
// The read-only commands (stats, ls, show, export) open the file read-only
// and never change a byte of it, so they work on a read-only mount; on an
// empty or missing file they fail rather than make it a queue. compact
// refuses a file that is not a queue.
//
// A dispatcher holds the file's lock while it runs, and even the read-only
// commands wait for it: use its AdminHandler (d.AdminHandler()) instead.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
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

func inUseErr(path string) error {
	return &cliError{code: exitInUse, err: fmt.Errorf(
		"%s is held by a running dispatcher; use its AdminHandler (d.AdminHandler()) to inspect it live", path)}
}

// cli is one run of the tool: its streams and global flags.
type cli struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	json   bool
}

type command struct {
	summary string
	run     func(c *cli, args []string) error
}

// commands is the command table. Each command lives in the file of its name
// (check and salvage share check.go), with its usage text and the helpers
// only it uses; output.go holds what several commands share.
var commands = map[string]command{
	"stats":   {"counts by state, bytes, corrupt records, dead letters, keys", (*cli).cmdStats},
	"ls":      {"list queued events or dead letters", (*cli).cmdLs},
	"show":    {"show one event or dead letter, payload included", (*cli).cmdShow},
	"redrive": {"queue dead letters again", (*cli).cmdRedrive},
	"purge":   {"delete dead letters", (*cli).cmdPurge},
	"export":  {"write queued events or dead letters as JSON lines", (*cli).cmdExport},
	"compact": {"rewrite the file without its free pages", (*cli).cmdCompact},
	"check":   {"verify the whole file, even one the other commands refuse", (*cli).cmdCheck},
	"salvage": {"copy what can be read of a damaged file into a new one", (*cli).cmdSalvage},
	"pause":   {"stop sending to one function, durably", (*cli).cmdPause},
	"cancel":  {"cancel queued events", (*cli).cmdCancel},
	"resume":  {"send to a paused function again", (*cli).cmdResume},
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr}
	global := flag.NewFlagSet("dispatchctl", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	global.Usage = func() {}
	global.BoolVar(&c.json, "json", false, "machine output: JSON (JSON lines for lists)")
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.mainUsage(stdout, global)
			return exitOK
		}
		fmt.Fprintf(stderr, "dispatchctl: %v\n", err)
		c.mainUsage(stderr, global)
		return exitUsage
	}
	if global.NArg() == 0 {
		fmt.Fprintln(stderr, "dispatchctl: no command")
		c.mainUsage(stderr, global)
		return exitUsage
	}
	name := global.Arg(0)
	if name == "help" {
		c.mainUsage(stdout, global)
		return exitOK
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "dispatchctl: unknown command %q\n", name)
		c.mainUsage(stderr, global)
		return exitUsage
	}
	err := cmd.run(c, global.Args()[1:])
	if err == nil {
		return exitOK
	}
	var ce *cliError
	if errors.As(err, &ce) {
		if ce.err != nil {
			fmt.Fprintf(stderr, "dispatchctl %s: %v\n", name, ce.err)
		}
		if ce.code == exitUsage {
			fmt.Fprintf(stderr, "run 'dispatchctl %s --help' for usage\n", name)
		}
		return ce.code
	}
	fmt.Fprintf(stderr, "dispatchctl %s: %v\n", name, err)
	return exitFailed
}

func (c *cli) mainUsage(w io.Writer, global *flag.FlagSet) {
	fmt.Fprintln(w, "usage: dispatchctl [--json] <command> [flags] FILE")
	fmt.Fprintln(w, "\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nGlobal flags:")
	global.SetOutput(w)
	global.PrintDefaults()
	global.SetOutput(io.Discard)
	fmt.Fprintln(w, "\nExit codes: 0 ok, 1 failed, 2 usage error, 3 file held by a running dispatcher, 4 not found.")
	fmt.Fprintln(w, "Run 'dispatchctl <command> --help' for a command's flags.")
}

// parse parses a command's flags, adding --json to them. On --help it
// prints usage on stdout and returns errHelp.
func (c *cli) parse(fs *flag.FlagSet, usage string, args []string) error {
	fs.BoolVar(&c.json, "json", c.json, "machine output: JSON (JSON lines for lists)")
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(c.stdout, "usage: dispatchctl %s\n", strings.TrimSpace(usage))
		fmt.Fprintln(c.stdout, "\nFlags:")
		fs.SetOutput(c.stdout)
		fs.PrintDefaults()
		return errHelp
	}
	if err != nil {
		return usageErr("%v", err)
	}
	return nil
}

// oneFile returns the only positional argument, FILE.
func oneFile(fs *flag.FlagSet) (string, error) {
	switch fs.NArg() {
	case 0:
		return "", usageErr("missing FILE")
	case 1:
		return fs.Arg(0), nil
	default:
		return "", usageErr("unexpected arguments after FILE: %s (flags go before FILE)", strings.Join(fs.Args()[1:], " "))
	}
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

func lockedErr(path string, err error) error {
	if errors.Is(err, dispatcher.ErrFileInUse) || errors.Is(err, store.ErrLocked) {
		return inUseErr(path)
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
		return nil, openErr(path, err)
	}
	return d, nil
}

// openErr explains why a file could not be opened.
func openErr(path string, err error) error {
	var ce *store.CorruptError // store.Compact's, which has no dispatcher between
	if errors.Is(err, dispatcher.ErrCorruptFile) || errors.As(err, &ce) {
		return &cliError{code: exitFailed, err: fmt.Errorf("%s is not a dispatcher queue, or not a readable one (left as it was): %w", path, err)}
	}
	return lockedErr(path, err)
}

// progress reports on stderr, only when it is a terminal.
type progress struct {
	w  io.Writer
	on bool
}

func (c *cli) progress() *progress {
	f, ok := c.stderr.(*os.File)
	if !ok {
		return &progress{}
	}
	fi, err := f.Stat()
	return &progress{w: f, on: err == nil && fi.Mode()&os.ModeCharDevice != 0}
}

func (p *progress) printf(format string, a ...any) {
	if p.on {
		fmt.Fprintf(p.w, "\r\033[K"+format, a...)
	}
}

func (p *progress) done() {
	if p.on {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
