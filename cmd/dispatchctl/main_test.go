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
	cmd := exec.Command(bin, args...)
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
		t.Fatalf("run %v: %v", args, err)
	}
	return r
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
	b := deadletter.NewBolt(st.DB())
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

func TestStats(t *testing.T) {
	t.Parallel()
	path := seed(t)

	r := ctl(t, "", "stats", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `(?m)^ready\s+3$`, r.stdout)
	require.Regexp(t, `(?m)^dead letters\s+3$`, r.stdout)
	require.Regexp(t, `(?m)^keys\s+1$`, r.stdout)

	s := stats(t, path)
	require.Equal(t, int64(3), s.Ready)
	require.Equal(t, int64(3), s.Queued)
	require.Equal(t, 3, s.DeadLetters)
	require.Equal(t, uint64(1), s.Keys)
	require.Positive(t, s.Bytes)

	// --json after the command works too.
	r = ctl(t, "", "stats", "--json", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.True(t, json.Valid([]byte(r.stdout)))
}

func TestLs(t *testing.T) {
	t.Parallel()
	path := seed(t)

	t.Run("ReadyTable", func(t *testing.T) {
		r := ctl(t, "", "ls", "--state", "ready", path)
		require.Equal(t, 0, r.code, r.stderr)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		require.Len(t, lines, 4)
		require.Regexp(t, `^ID\s+STATE\s+FUNCTION\s+QUALIFIER\s+KEY\s+ATTEMPTS\s+ENQUEUED\s+SIZE$`, lines[0])
		require.Regexp(t, `^1\s+ready\s+orders\s+-\s+order-1\s+0\s+\S+\s+22$`, lines[1])
		require.Regexp(t, `^3\s+ready\s+billing\s+prod\s+-`, lines[3])
		require.Empty(t, r.stderr)
	})
	t.Run("FunctionJSON", func(t *testing.T) {
		r := ctl(t, "", "--json", "ls", "--function", "orders", path)
		require.Equal(t, 0, r.code, r.stderr)
		rows := jsonLines(t, r.stdout)
		require.Equal(t, []string{"1", "2"}, ids(rows))
		require.Equal(t, "ready", rows[0]["state"])
	})
	t.Run("Paging", func(t *testing.T) {
		r := ctl(t, "", "--json", "ls", "--limit", "2", path)
		require.Equal(t, 0, r.code, r.stderr)
		rows := jsonLines(t, r.stdout)
		require.Len(t, rows, 3)
		require.Equal(t, map[string]any{"next": "2"}, rows[2])
		r = ctl(t, "", "--json", "ls", "--limit", "2", "--after", "2", path)
		rows = jsonLines(t, r.stdout)
		require.Equal(t, []string{"3"}, ids(rows))
		require.Len(t, rows, 1, "no next line on the last page")

		r = ctl(t, "", "ls", "--limit", "1", path)
		require.Equal(t, 0, r.code, r.stderr)
		require.Equal(t, "more: --after 1\n", r.stderr)
	})
	t.Run("Scheduled", func(t *testing.T) {
		r := ctl(t, "", "--json", "ls", "--state", "scheduled", path)
		require.Equal(t, 0, r.code, r.stderr)
		require.Empty(t, r.stdout)
	})
	t.Run("Dead", func(t *testing.T) {
		r := ctl(t, "", "ls", "--state", "dead", path)
		require.Equal(t, 0, r.code, r.stderr)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		require.Len(t, lines, 4)
		require.Regexp(t, `^100\s+retries exhausted\s+orders\s+-\s+-\s+3\s+`, lines[1])

		r = ctl(t, "", "--json", "ls", "--state", "dead", "--function", "orders", path)
		require.Equal(t, []string{"100", "102"}, ids(jsonLines(t, r.stdout)))

		r = ctl(t, "", "--json", "ls", "--reason", "rejected", path)
		require.Equal(t, 0, r.code, r.stderr)
		rows := jsonLines(t, r.stdout)
		require.Equal(t, []string{"101"}, ids(rows))
		require.Equal(t, "rejected", rows[0]["reason"])

		r = ctl(t, "", "--json", "ls", "--state", "dead", "--older-than", "24h", path)
		require.Equal(t, []string{"100"}, ids(jsonLines(t, r.stdout)))

		r = ctl(t, "", "--json", "ls", "--state", "dead", "--limit", "1", "--after", "100", path)
		rows = jsonLines(t, r.stdout)
		require.Equal(t, []string{"101"}, ids(rows))
		require.Equal(t, map[string]any{"next": "101"}, rows[len(rows)-1])
	})
	t.Run("Usage", func(t *testing.T) {
		require.Equal(t, 2, ctl(t, "", "ls", "--state", "bogus", path).code)
		require.Equal(t, 2, ctl(t, "", "ls", "--state", "ready", "--reason", "rejected", path).code)
		require.Equal(t, 2, ctl(t, "", "ls").code)
	})
}

func TestShow(t *testing.T) {
	t.Parallel()
	path := seed(t)

	r := ctl(t, "", "show", "1", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `(?m)^function:\s+orders$`, r.stdout)
	require.Regexp(t, `(?m)^key:\s+order-1$`, r.stdout)
	require.Contains(t, r.stdout, "payload:\n  {\n    \"id\": 1,\n    \"items\": [\n      1,\n      2\n    ]\n  }\n")

	r = ctl(t, "", "show", "100", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `(?m)^reason:\s+retries exhausted$`, r.stdout)
	require.Regexp(t, `(?m)^last error:\s+ServiceException boom \(status 500, request req-1\)$`, r.stdout)
	require.Contains(t, r.stdout, "payload:\n  {\n    \"id\": 100\n  }\n")

	r = ctl(t, "", "--json", "show", "100", path)
	require.Equal(t, 0, r.code, r.stderr)
	var l map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &l))
	require.Equal(t, "dead", l["state"])
	require.Equal(t, map[string]any{"id": float64(100)}, l["payload"])

	r = ctl(t, "", "show", "999", path)
	require.Equal(t, 4, r.code)
	require.Contains(t, r.stderr, "no event or dead letter with id 999")

	require.Equal(t, 2, ctl(t, "", "show", "abc", path).code)
}

func TestRedrive(t *testing.T) {
	t.Parallel()
	path := seed(t)

	r := ctl(t, "", "redrive", path)
	require.Equal(t, 2, r.code, "no ids, no filter, no --all")
	require.Contains(t, r.stderr, "nothing selected")
	require.Equal(t, 2, ctl(t, "", "redrive", "--function", "orders", "100", path).code)

	r = ctl(t, "", "redrive", "--function", "orders", "--to", "orders-v2", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "redriven: 2\n", r.stdout)

	r = ctl(t, "", "--json", "ls", "--function", "orders-v2", path)
	rows := jsonLines(t, r.stdout)
	require.Len(t, rows, 2)
	require.Equal(t, "ready", rows[0]["state"])
	require.Equal(t, []string{"101"}, ids(jsonLines(t, ctl(t, "", "--json", "ls", "--state", "dead", path).stdout)))

	r = ctl(t, "", "--json", "redrive", "101", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, `{"redriven":1}`, r.stdout)
	require.Equal(t, 4, ctl(t, "", "redrive", "101", path).code, "already redriven")

	s := stats(t, path)
	require.Equal(t, int64(6), s.Ready)
	require.Equal(t, 0, s.DeadLetters)
}

func TestPurge(t *testing.T) {
	t.Parallel()
	path := seed(t)

	require.Equal(t, 2, ctl(t, "", "purge", path).code, "no filter and no --all")

	r := ctl(t, "n\n", "purge", "--all", path)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "purge 3 letters? [y/N]")
	require.Equal(t, 3, stats(t, path).DeadLetters, "answered n: nothing purged")

	r = ctl(t, "", "purge", "--all", path)
	require.Equal(t, 1, r.code, "no answer is no")
	require.Equal(t, 3, stats(t, path).DeadLetters)

	r = ctl(t, "", "purge", "--older-than", "24h", "--yes", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "purged: 1\n", r.stdout)
	require.Equal(t, 2, stats(t, path).DeadLetters)

	r = ctl(t, "y\n", "--json", "purge", "--reason", "rejected", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, `{"purged":1}`, r.stdout)
	require.Equal(t, []string{"102"}, ids(jsonLines(t, ctl(t, "", "--json", "ls", "--state", "dead", path).stdout)))
	require.Equal(t, int64(3), stats(t, path).Ready, "queued events untouched")
}

func TestExport(t *testing.T) {
	t.Parallel()
	path := seed(t)

	r := ctl(t, "", "export", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, r.stderr, "no progress when stderr is not a terminal")
	rows := jsonLines(t, r.stdout)
	require.Equal(t, []string{"1", "2", "3"}, ids(rows))
	require.Equal(t, map[string]any{"id": float64(1), "items": []any{float64(1), float64(2)}}, rows[0]["payload"])
	require.Equal(t, "order-1", rows[0]["key"])
	require.Equal(t, "prod", rows[2]["qualifier"])
	for _, f := range []string{"function", "attempts", "enqueued", "due", "leased"} {
		require.Contains(t, rows[0], f)
	}

	r = ctl(t, "", "export", "--dead", path)
	require.Equal(t, 0, r.code, r.stderr)
	rows = jsonLines(t, r.stdout)
	require.Len(t, rows, 3)
	rc := rows[0]["requestContext"].(map[string]any)
	require.Equal(t, "RetriesExhausted", rc["condition"])
	require.Equal(t, "req-1", rc["requestId"])
	require.Equal(t, map[string]any{"id": float64(100)}, rows[0]["requestPayload"])
}

func TestCompact(t *testing.T) {
	t.Parallel()
	path := seed(t)
	// Churn leaves free pages behind: enqueue and dead-letter-purge a lot.
	d, err := dispatcher.Open(path)
	require.NoError(t, err)
	big := []byte(`{"pad":"` + strings.Repeat("x", 4000) + `"}`)
	var evs []dispatcher.Event
	for range 200 {
		evs = append(evs, dispatcher.Event{Function: "churn", Payload: big})
	}
	_, err = d.EnqueueBatch(context.Background(), evs)
	require.NoError(t, err)
	require.NoError(t, d.Close())
	st, err := store.Open(path, store.Options{})
	require.NoError(t, err)
	var seqs []uint64
	require.NoError(t, st.Scan(func(e store.Event) error {
		if e.Function == "churn" {
			seqs = append(seqs, e.Seq)
		}
		return nil
	}))
	leased, err := st.Lease(context.Background(), len(seqs)+3, time.Minute)
	require.NoError(t, err)
	var back []uint64
	for _, e := range leased {
		if e.Function != "churn" {
			back = append(back, e.Seq)
		}
	}
	require.NoError(t, st.Ack(context.Background(), seqs...))
	require.NoError(t, st.Release(context.Background(), true, back...))
	require.NoError(t, st.Close())

	before := stats(t, path)
	fiBefore, err := os.Stat(path)
	require.NoError(t, err)

	r := ctl(t, "", "compact", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, fmt.Sprintf("%d bytes before", fiBefore.Size()))
	fiAfter, err := os.Stat(path)
	require.NoError(t, err)
	require.LessOrEqual(t, fiAfter.Size(), fiBefore.Size())
	require.Less(t, fiAfter.Size(), fiBefore.Size(), "churned file shrinks")
	_, err = os.Stat(path + ".compact")
	require.ErrorIs(t, err, os.ErrNotExist)

	require.Equal(t, before, stats(t, path))
	rows := jsonLines(t, ctl(t, "", "export", path).stdout)
	require.Equal(t, []string{"1", "2", "3"}, ids(rows))

	r = ctl(t, "", "--json", "compact", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, fmt.Sprintf(`{"before":%d,"after":%d}`, fiAfter.Size(), fiAfter.Size()), r.stdout)
}

func TestFileInUse(t *testing.T) {
	t.Parallel()
	path := seed(t)
	d, err := dispatcher.Open(path)
	require.NoError(t, err)
	defer d.Close()

	for _, args := range [][]string{
		{"stats", path}, {"ls", path}, {"ls", "--state", "dead", path}, {"show", "1", path},
		{"redrive", "--all", path}, {"purge", "--all", "--yes", path}, {"export", path}, {"compact", path},
	} {
		r := ctl(t, "", args...)
		require.Equal(t, 3, r.code, "%v: %s", args, r.stderr)
		require.Contains(t, r.stderr, path+" is held by a running dispatcher; use its AdminHandler (d.AdminHandler()) to inspect it live")
	}
}

func TestMissingFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "nope.db")
	for _, args := range [][]string{{"stats", path}, {"ls", path}, {"show", "1", path}, {"compact", path}, {"export", "--dead", path}} {
		r := ctl(t, "", args...)
		require.Equal(t, 1, r.code, "%v", args)
		require.Contains(t, r.stderr, "no such file")
	}
	_, err := os.Stat(path)
	require.ErrorIs(t, err, os.ErrNotExist, "not created")
}

func TestUsage(t *testing.T) {
	t.Parallel()
	for _, c := range []string{"stats", "ls", "show", "redrive", "purge", "export", "compact"} {
		r := ctl(t, "", c, "--help")
		require.Equal(t, 0, r.code, c)
		require.Contains(t, r.stdout, "usage: dispatchctl "+c)
		require.Contains(t, r.stdout, "-json")
	}
	r := ctl(t, "", "--help")
	require.Equal(t, 0, r.code)
	require.Contains(t, r.stdout, "Commands:")

	r = ctl(t, "", "frobnicate")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, `unknown command "frobnicate"`)
	require.Equal(t, 2, ctl(t, "").code, "no command")
	require.Equal(t, 2, ctl(t, "", "stats", "--bogus", "x").code, "unknown flag")
	require.Equal(t, 2, ctl(t, "", "stats", "a", "b").code, "two files")
}
