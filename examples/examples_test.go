package examples_test

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// soak reports whether DISPATCH_SOAK=1 asks for the examples at the
// figures they run with by default; .ci/run does so after the README's
// test command.
func soak() bool { return os.Getenv("DISPATCH_SOAK") == "1" }

// runExample runs `go run ./examples/<name>` from the module root with the
// given flags and returns its output; it fails the test unless the example
// exits 0.
func runExample(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append([]string{"run", "./examples/" + name}, args...)...)
	cmd.Dir = ".." // the tests run in examples/
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go run ./examples/%s:\n%s", name, out)
	return string(out)
}

// figure returns the number that follows label at the start of a line of
// the example's summary, such as "  delivered   1544".
func figure(t *testing.T, out, label string) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(label) + `\s+(\d+)`).FindStringSubmatch(out)
	require.NotNil(t, m, "no %q line in output:\n%s", label, out)
	n, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	return n
}

// TestEdgeOffline runs the edge-offline example with each full policy.
//
// It runs a third of the example's outage: 600 readings (a tenth of them
// alarms), offline from the 100th for 400, on a cap of 300. The outage
// still outlasts the cap, so telemetry is evicted or refused, in about
// half the time of the example's 1,800 readings: each is an fsync paced
// by a ticker. DISPATCH_SOAK=1 runs the example's own figures.
func TestEdgeOffline(t *testing.T) {
	t.Parallel()
	readings, alarms, maxEvents := 600, 60, 300
	args := []string{"-readings", "600", "-offline-at", "100", "-offline-for", "400", "-max-events", "300"}
	if soak() {
		readings, alarms, maxEvents = 1800, 180, 1000 // the example's defaults
		args = nil
	}
	t.Run("DropOldest", func(t *testing.T) {
		t.Parallel()
		out := runExample(t, "edge-offline", args...)
		require.Equal(t, readings, figure(t, out, "readings"))
		require.Zero(t, figure(t, out, "refused (queue full)"), out)
		require.Equal(t, readings, figure(t, out, "enqueued"), out)
		evicted := figure(t, out, "evicted (drop oldest)")
		require.Positive(t, evicted, "the outage outlasts the cap, so some telemetry is dropped:\n%s", out)
		require.Equal(t, evicted, figure(t, out, "eviction ledger"), "every drop on record:\n%s", out)
		require.Equal(t, readings-evicted, figure(t, out, "delivered"), out)
		require.Equal(t, alarms, figure(t, out, "alarms enqueued"), out)
		require.Equal(t, alarms, figure(t, out, "alarms delivered"), "every alarm survives the outage:\n%s", out)
		require.Zero(t, figure(t, out, "dead-lettered"), out)
		require.Equal(t, maxEvents, figure(t, out, "peak buffered offline"), out)
		require.Regexp(t, `(?m)^\s*paused while offline\s+true$`, out)
	})
	t.Run("Reject", func(t *testing.T) {
		t.Parallel()
		out := runExample(t, "edge-offline", append([]string{"-policy", "reject"}, args...)...)
		require.Equal(t, readings, figure(t, out, "readings"))
		refused := figure(t, out, "refused (queue full)")
		require.Positive(t, refused, "the outage outlasts the cap, so some readings are refused:\n%s", out)
		require.Zero(t, figure(t, out, "evicted (drop oldest)"), out)
		require.Equal(t, readings-refused, figure(t, out, "enqueued"), out)
		require.Equal(t, readings-refused, figure(t, out, "delivered"), out)
		require.Less(t, figure(t, out, "alarms delivered"), alarms, "alarms are refused too:\n%s", out)
		require.Positive(t, figure(t, out, "drained after reconnect"), out)
	})
}

func TestRedrive(t *testing.T) {
	t.Parallel()
	out := runExample(t, "redrive", "-n", "25")
	dead := figure(t, out, "dead-lettered")
	require.Equal(t, 25, dead, out)
	require.Equal(t, dead, figure(t, out, "redriven"), out)
	require.Equal(t, dead, figure(t, out, "delivered"), out)
	require.Zero(t, figure(t, out, "letters left"), out)
	require.Regexp(t, `(?m)^\s+\d+\s+retries exhausted\s+3\s+500 ServiceException$`, out)
}
