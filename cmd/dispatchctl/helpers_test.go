package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/store"
)

// bin is the dispatchctl binary built once for every test.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dispatchctl-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "dispatchctl")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build dispatchctl:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

// ctl runs the binary with stdin and args.
func ctl(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return ctlEnv(t, nil, stdin, args...)
}

// ctlEnv runs the binary with env added to an environment that has none
// of dispatchctl's own variables, whatever the test's has.
func ctlEnv(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	r, err := runCtl(env, stdin, args...)
	if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return r
}

// runCtl is ctlEnv for a goroutine other than the test's: it returns the
// error of a binary that could not be run rather than fail the test.
func runCtl(env []string, stdin string, args ...string) (result, error) {
	cmd := exec.Command(bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DISPATCHCTL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		return r, err
	}
	return r, nil
}

// seed writes three queued events (ids 1..3: orders, orders, billing) and
// three dead letters (100: orders retries exhausted two days ago; 101:
// billing rejected an hour ago; 102: orders event age exceeded an hour
// ago) into a new file, and returns its path.
func seed(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.db")
	ctx := context.Background()
	d, err := dispatcher.Open(path)
	require.NoError(t, err)
	for _, e := range []dispatcher.Event{
		{Function: "orders", Payload: []byte(`{"id":1,"items":[1,2]}`), Key: "order-1"},
		{Function: "orders", Payload: []byte(`{"id":2}`)},
		{Function: "billing", Qualifier: "prod", Payload: []byte(`{"n":3}`)},
	} {
		_, err := d.Enqueue(ctx, e)
		require.NoError(t, err)
	}
	require.NoError(t, d.Close())

	st, err := store.Open(path, store.Options{})
	require.NoError(t, err)
	b := deadletter.NewBolt(st)
	now := time.Now().UTC()
	for _, l := range []deadletter.Letter{
		{ID: "100", Function: "orders", Payload: []byte(`{"id":100}`), Enqueued: now.Add(-49 * time.Hour), Reason: deadletter.RetriesExhausted,
			Attempts: 3, FirstAttempt: now.Add(-49 * time.Hour), LastAttempt: now.Add(-48 * time.Hour),
			LastError: deadletter.ErrorInfo{Code: "ServiceException", Message: "boom", StatusCode: 500, RequestID: "req-1"}, DeadLettered: now.Add(-48 * time.Hour)},
		{ID: "101", Function: "billing", Payload: []byte(`{"n":101}`), Enqueued: now.Add(-2 * time.Hour), Reason: deadletter.Rejected,
			Attempts: 1, FirstAttempt: now.Add(-2 * time.Hour), LastAttempt: now.Add(-2 * time.Hour),
			LastError: deadletter.ErrorInfo{Code: "ResourceNotFoundException", StatusCode: 404}, DeadLettered: now.Add(-time.Hour)},
		{ID: "102", Function: "orders", Key: "order-102", Payload: []byte(`{"id":102}`), Enqueued: now.Add(-8 * time.Hour),
			Reason: deadletter.EventAgeExceeded, DeadLettered: now.Add(-time.Hour)},
	} {
		require.NoError(t, b.Put(ctx, l))
	}
	require.NoError(t, st.Close())
	return path
}

type statsOut struct {
	Ready, Scheduled, Leased, Queued, Bytes, Corrupt int64
	DeadLetters                                      int
	Keys                                             uint64
}

func stats(t *testing.T, path string) statsOut {
	t.Helper()
	r := ctl(t, "", "--json", "stats", path)
	require.Equal(t, 0, r.code, r.stderr)
	var s statsOut
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &s))
	return s
}

// jsonLines parses JSON lines into maps.
func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), sc.Text())
		out = append(out, m)
	}
	return out
}

func ids(rows []map[string]any) []string {
	var out []string
	for _, r := range rows {
		if id, ok := r["id"].(string); ok {
			out = append(out, id)
		}
	}
	return out
}
