// Package dynalitetest runs dynalite, a DynamoDB-compatible server on
// Node.js, for tests that drive the real SDK client (service/dynamodb)
// over real HTTP on 127.0.0.1, and puts a [FaultProxy] in front of it to
// throttle, drop or count requests.
//
// dynalite is found at $DYNALITE_CLI, or where .ci/install-dynalite
// installs it: .ci/node/node_modules/dynalite/cli.js under the repository
// root. node must be on PATH. Without them a test is skipped, or fails
// when $CI is set, so that CI cannot pass without running it.
//
// dynalite does not implement UpdateTimeToLive, and ignores
// ReturnValuesOnConditionCheckFailure (it never returns the old item with
// a ConditionalCheckFailedException).
package dynalitetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/lambdadispatch/dispatcher/idempotency/dynamo"
)

// Version is the dynalite that .ci/install-dynalite installs.
const Version = "4.0.0"

// startTimeout bounds how long Start waits for dynalite to answer.
const startTimeout = 30 * time.Second

// tableStateMs is how long, in milliseconds, dynalite keeps a table
// CREATING, UPDATING or DELETING: long enough that a caller sees the
// state, short enough not to slow tests down (its default is 500).
const tableStateMs = "50"

// Start runs dynalite, in memory, on a free port of 127.0.0.1 and returns
// its endpoint, "http://127.0.0.1:port". dynalite is killed when the test
// ends, and its output logged if the test failed.
func Start(t testing.TB) (endpoint string) {
	t.Helper()
	node, cli := find(t)
	var lastErr error
	// The port is free when chosen but may be taken before dynalite binds
	// it: try another a few times.
	for range 3 {
		endpoint, err := start(t, node, cli)
		if err == nil {
			return endpoint
		}
		lastErr = err
	}
	t.Fatalf("dynalitetest: %v", lastErr)
	return ""
}

// find returns node and dynalite's cli.js, or skips or fails the test.
func find(t testing.TB) (node, cli string) {
	t.Helper()
	var problems []string
	node, err := exec.LookPath("node")
	if err != nil {
		problems = append(problems, fmt.Sprintf("node not found on PATH (%v)", err))
	}
	cli = os.Getenv("DYNALITE_CLI")
	if cli == "" {
		root, err := repoRoot()
		if err != nil {
			problems = append(problems, err.Error())
		} else {
			cli = filepath.Join(root, ".ci", "node", "node_modules", "dynalite", "cli.js")
		}
	}
	if cli != "" && os.Getenv("DYNALITE_CLI") == "" && node != "" {
		if _, err := os.Stat(cli); errors.Is(err, fs.ErrNotExist) {
			if err := install(t, filepath.Dir(filepath.Dir(filepath.Dir(cli)))); err != nil {
				problems = append(problems, err.Error())
			}
		}
	}
	if cli != "" {
		if fi, err := os.Stat(cli); err != nil || fi.IsDir() {
			problems = append(problems, fmt.Sprintf("dynalite not found at %s", cli))
		}
	}
	if len(problems) == 0 {
		return node, cli
	}
	msg := fmt.Sprintf("dynalitetest: %s: run .ci/install-dynalite from the repository root (it needs node and npm), or set DYNALITE_CLI to dynalite %s's cli.js",
		strings.Join(problems, "; "), Version)
	if os.Getenv("CI") != "" {
		t.Fatalf("%s", msg)
	}
	t.Skip(msg)
	return "", ""
}

// repoRoot returns the nearest directory at or above the working directory
// that holds a go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod at or above the working directory")
		}
		dir = parent
	}
}

// start runs dynalite once. It returns an error if dynalite exits before it
// answers, and fails the test on anything else.
func start(t testing.TB, node, cli string) (string, error) {
	t.Helper()
	p, err := launch(node, cli)
	if err != nil {
		if errors.Is(err, errExited) {
			return "", err
		}
		t.Fatalf("dynalitetest: %v", err)
	}
	t.Cleanup(func() {
		err := p.kill()
		if t.Failed() {
			t.Logf("dynalite on %s exited: %v; its output:\n%s", p.endpoint, err, p.out.String())
		}
	})
	return p.endpoint, nil
}

// errExited is the error of a dynalite that exited before it answered,
// which is worth another try on another port.
var errExited = errors.New("dynalite exited before answering")

// proc is a dynalite running.
type proc struct {
	endpoint string
	cmd      *exec.Cmd
	out      *lockedBuffer
	exited   chan error
}

// kill stops p and returns how it exited.
func (p *proc) kill() error {
	_ = p.cmd.Process.Kill()
	return <-p.exited
}

// launch runs dynalite on a free port and waits until it answers.
func launch(node, cli string) (*proc, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("find a free port: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		return nil, err
	}

	out := new(lockedBuffer)
	cmd := exec.Command(node, cli,
		"--host", "127.0.0.1", "--port", strconv.Itoa(port),
		"--createTableMs", tableStateMs, "--deleteTableMs", tableStateMs, "--updateTableMs", tableStateMs)
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s %s: %v", node, cli, err)
	}
	p := &proc{
		endpoint: "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		cmd:      cmd,
		out:      out,
		exited:   make(chan error, 1),
	}
	go func() { p.exited <- cmd.Wait() }()

	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	for {
		// dynalite answers a GET with "healthy: dynamodb...".
		resp, err := hc.Get(p.endpoint + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
			err = fmt.Errorf("GET / answered %s", resp.Status)
		}
		select {
		case werr := <-p.exited:
			return nil, fmt.Errorf("%w on %s: %v; its output:\n%s", errExited, p.endpoint, werr, out.String())
		case <-deadline.C:
			werr := p.kill()
			return nil, fmt.Errorf("dynalite not answering on %s after %v: %v (exit: %v); its output:\n%s",
				p.endpoint, startTimeout, err, werr, out.String())
		case <-tick.C:
		}
	}
}

// Server is one dynalite that the tests of a package share, each on tables
// of its own (see [Table]), so that a package starts node once rather than
// once a test. The first [Server.Endpoint] starts it; TestMain stops it
// with [Server.Stop] after m.Run, before it looks for leaked goroutines.
// The zero Server is ready to use; its methods may be called from several
// goroutines at once.
type Server struct {
	mu sync.Mutex
	p  *proc
}

// Endpoint returns the shared dynalite's endpoint, starting it if need be.
// It skips or fails t as [Start] does when dynalite or node is missing.
func (s *Server) Endpoint(t testing.TB) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p != nil {
		return s.p.endpoint
	}
	node, cli := find(t)
	var err error
	for range 3 {
		if s.p, err = launch(node, cli); !errors.Is(err, errExited) {
			break
		}
	}
	if err != nil {
		t.Fatalf("dynalitetest: %v", err)
	}
	return s.p.endpoint
}

// Stop kills the shared dynalite, if it was started, and writes its output
// to w when verbose (as a test that failed would log it). After Stop the
// next Endpoint starts another.
func (s *Server) Stop(w io.Writer, verbose bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return
	}
	err := s.p.kill()
	if verbose {
		fmt.Fprintf(w, "dynalite on %s exited: %v; its output:\n%s", s.p.endpoint, err, s.p.out.String())
	}
	s.p = nil
}

// Client returns an SDK client for endpoint with static credentials,
// region us-east-1 and no retries (RetryMaxAttempts 1), so that a test
// sees each error as the server sent it. optFns change its options after
// those. Its idle connections are closed when the test ends.
func Client(t testing.TB, endpoint string, optFns ...func(*dynamodb.Options)) *dynamodb.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections) // for goleak
	opts := dynamodb.Options{
		BaseEndpoint:     aws.String(endpoint),
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		RetryMaxAttempts: 1,
		HTTPClient:       &http.Client{Transport: tr},
	}
	return dynamodb.New(opts, optFns...)
}

var tables atomic.Int64

// Table creates a table for a dynamo.Window with dynamo.CreateTable,
// named after the test and unique in the process, and returns its name.
// It tolerates dynamo.ErrTTLNotEnabled, which dynalite always causes.
func Table(t testing.TB, client dynamo.TableAPI, opts ...dynamo.Option) string {
	t.Helper()
	name := TableName(t)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := dynamo.CreateTable(ctx, client, name, opts...); err != nil && !errors.Is(err, dynamo.ErrTTLNotEnabled) {
		t.Fatalf("dynalitetest: %v", err)
	}
	return name
}

// TableName returns a table name made of the test's name and a number
// unique in the process.
func TableName(t testing.TB) string {
	var b strings.Builder
	for _, r := range t.Name() {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	name := b.String()
	if len(name) > 200 {
		name = name[:200]
	}
	return fmt.Sprintf("%s-%d", name, tables.Add(1))
}

// lockedBuffer collects a process's output from the goroutines os/exec
// copies it with.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// installOnce makes the packages of one test binary share one attempt.
var installOnce struct {
	sync.Once
	err error
}

// install puts dynalite under dir (.ci/node) with npm, as
// .ci/install-dynalite does, so that a plain go test on a machine with
// Node.js runs the tests that need it. Several test binaries may race: each
// installs into a directory of its own and renames it into place, and the
// losers discard theirs.
func install(t testing.TB, dir string) error {
	installOnce.Do(func() {
		npm, err := exec.LookPath("npm")
		if err != nil {
			installOnce.err = fmt.Errorf("npm not found on PATH to install dynalite (%v)", err)
			return
		}
		t.Logf("dynalitetest: installing dynalite %s under %s with npm", Version, dir)
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			installOnce.err = err
			return
		}
		tmp, err := os.MkdirTemp(filepath.Dir(dir), "node.tmp.")
		if err != nil {
			installOnce.err = err
			return
		}
		defer os.RemoveAll(tmp) // after a successful rename, nothing is left there
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, npm, "install", "--prefix", tmp, "--no-audit", "--no-fund", "--no-save", "dynalite@"+Version)
		if out, err := cmd.CombinedOutput(); err != nil {
			installOnce.err = fmt.Errorf("npm install dynalite@%s: %v\n%s", Version, err, out)
			return
		}
		if err := os.Rename(tmp, dir); err != nil {
			if _, serr := os.Stat(dir); serr != nil {
				installOnce.err = err
			}
		}
	})
	return installOnce.err
}
