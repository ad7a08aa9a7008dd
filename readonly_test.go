package dispatcher_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/store"
)

type fingerprint struct {
	sum   [32]byte
	mtime time.Time
}

func fingerprintOf(t *testing.T, path string) fingerprint {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	return fingerprint{sha256.Sum256(b), fi.ModTime()}
}

// sweeping says whether a key sweep goroutine is running in this process.
func sweeping() bool {
	buf := make([]byte, 1<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), "dispatcher.(*Dispatcher).sweep")
}

// refuseInvoke fails the test if an invoke is made.
type refuseInvoke struct{ t *testing.T }

func (r refuseInvoke) Invoke(context.Context, *lambda.InvokeInput, ...func(*lambda.Options)) (*lambda.InvokeOutput, error) {
	r.t.Error("a read-only dispatcher invoked Lambda")
	return nil, errors.New("refused")
}

func TestReadOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	d, err := dispatcher.Open(path)
	require.NoError(t, err)
	_, err = d.EnqueueBatch(ctx, []dispatcher.Event{
		{Function: "orders", Payload: []byte(`{"id":1}`), Key: "order-1"},
		{Function: "orders", Payload: []byte(`{"id":2}`)},
	})
	require.NoError(t, err)
	require.NoError(t, deadletter.NewBolt(dispatcher.StoreForTest(d)).Put(ctx, deadletter.Letter{
		ID: "100", Function: "orders", Payload: []byte(`{"id":100}`), Reason: deadletter.Rejected, DeadLettered: time.Now()}))
	require.NoError(t, d.Close())
	// Close has waited for the sweep to finish, but its goroutine can
	// still be on its way out when the stacks are read: wait for that.
	deadline := time.Now().Add(10 * time.Second)
	for sweeping() && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	require.False(t, sweeping(), "no sweep left from the writer")
	was := fingerprintOf(t, path)

	d, err = dispatcher.Open(path, dispatcher.WithReadOnly(), dispatcher.WithLambda(refuseInvoke{t}))
	require.NoError(t, err)
	require.False(t, sweeping(), "a read-only dispatcher starts no sweep")
	s := d.Stats()
	require.Equal(t, int64(2), s.Queued())
	require.Equal(t, uint64(1), s.Keys)
	n, err := d.DeadLetters().Count()
	require.NoError(t, err)
	require.Equal(t, 1, n)
	l, err := d.DeadLetters().Get("100")
	require.NoError(t, err)
	require.Equal(t, "orders", l.Function)

	_, err = d.Enqueue(ctx, dispatcher.Event{Function: "orders"})
	require.ErrorIs(t, err, dispatcher.ErrReadOnly)
	_, err = d.EnqueueBatch(ctx, []dispatcher.Event{{Function: "orders"}})
	require.ErrorIs(t, err, dispatcher.ErrReadOnly)
	require.ErrorIs(t, d.Run(ctx), dispatcher.ErrReadOnly)
	_, err = d.DeadLetters().Redrive(ctx, []string{"100"}, dispatcher.RedriveOptions{})
	require.ErrorIs(t, err, dispatcher.ErrReadOnly)
	_, err = d.DeadLetters().RedriveMatching(ctx, dispatcher.LetterFilter{Function: "orders"}, dispatcher.RedriveOptions{})
	require.ErrorIs(t, err, dispatcher.ErrReadOnly)
	_, err = d.DeadLetters().Purge(ctx, dispatcher.LetterFilter{Function: "nobody"})
	require.ErrorIs(t, err, dispatcher.ErrReadOnly, "refused even when nothing matches")
	srv := httptest.NewServer(d.AdminHandler())
	for _, path := range []string{"/deadletters/redrive", "/deadletters/purge"} {
		resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(`{"all":true}`))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusForbidden, resp.StatusCode, "%s on a read-only dispatcher", path)
	}
	srv.Close()
	require.NoError(t, d.Close())
	require.Equal(t, was, fingerprintOf(t, path), "not a byte written")

	for _, other := range []error{dispatcher.ErrClosed, dispatcher.ErrQueueFull, dispatcher.ErrInvalidEvent, dispatcher.ErrFileInUse} {
		require.NotErrorIs(t, other, dispatcher.ErrReadOnly)
	}
}

// TestReadOnlyNeverMakesAQueue: read-only, a missing file stays missing
// and an empty one stays empty.
func TestReadOnlyNeverMakesAQueue(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.db")
	_, err := dispatcher.Open(missing, dispatcher.WithReadOnly())
	require.ErrorIs(t, err, os.ErrNotExist)
	require.NoFileExists(t, missing)

	empty := filepath.Join(dir, "empty.db")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	_, err = dispatcher.Open(empty, dispatcher.WithReadOnly())
	var ce *store.CorruptError
	require.ErrorAs(t, err, &ce)
	require.ErrorIs(t, err, dispatcher.ErrCorruptFile)
	fi, err := os.Stat(empty)
	require.NoError(t, err)
	require.Zero(t, fi.Size())
}
