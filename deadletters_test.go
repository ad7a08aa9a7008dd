package dispatcher_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/lambdatest"
	"github.com/lambdadispatch/dispatcher/store"
)

// TestRedriveRoundTrip dead-letters events of a failing function, fixes
// it, redrives them, and sees them delivered.
func TestRedriveRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, withServer())
	b.srv.Register("billing", lambdatest.OK())
	b.srv.Fail("billing", lambdatest.Error(0, 500, "ServiceException"))
	b.srv.Register("other", lambdatest.OK())
	for i := range 30 {
		_, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "billing", Key: fmt.Sprint("k", i), Payload: fmt.Appendf(nil, `{"n":%d}`, i)})
		require.NoError(t, err)
	}
	b.enqueue(t, "missing", 5)
	b.start(t)
	waitStats(t, b.d, "all dead-lettered", func(s dispatcher.Stats) bool { return s.DeadLettered == 35 })
	dl := b.d.DeadLetters()

	exhausted, next, err := dl.Find(ctx, dispatcher.LetterFilter{Function: "billing", Reason: deadletter.RetriesExhausted}, "", 100)
	require.NoError(t, err)
	require.Empty(t, next)
	require.Len(t, exhausted, 30)
	rejected, _, err := dl.Find(ctx, dispatcher.LetterFilter{Reason: deadletter.Rejected}, "", 100)
	require.NoError(t, err)
	require.Len(t, rejected, 5)
	page, next, err := dl.Find(ctx, dispatcher.LetterFilter{Function: "billing"}, "", 7)
	require.NoError(t, err)
	require.Len(t, page, 7)
	require.Equal(t, page[6].ID, next)
	none, _, err := dl.Find(ctx, dispatcher.LetterFilter{Until: time.Now().Add(-time.Hour)}, "", 10)
	require.NoError(t, err)
	require.Empty(t, none)

	b.srv.ClearFaults("billing") // the cause is fixed
	n, err := dl.Redrive(ctx, []string{exhausted[0].ID, "999999"}, dispatcher.RedriveOptions{})
	require.NoError(t, err)
	require.Equal(t, 1, n, "an unknown id is skipped")
	n, err = dl.RedriveMatching(ctx, dispatcher.LetterFilter{Function: "billing"}, dispatcher.RedriveOptions{})
	require.NoError(t, err)
	require.Equal(t, 29, n)
	n, err = dl.RedriveMatching(ctx, dispatcher.LetterFilter{Function: "missing"}, dispatcher.RedriveOptions{Function: "other"})
	require.NoError(t, err)
	require.Equal(t, 5, n)

	st := waitStats(t, b.d, "redriven events delivered", func(s dispatcher.Stats) bool { return s.Delivered == 35 })
	require.Zero(t, st.Queued())
	c, err := dl.Count()
	require.NoError(t, err)
	require.Zero(t, c, "every letter left the dead letters")
	require.Equal(t, 5, b.srv.Count("other"), "redriven to another function")
	keys := map[string]bool{}
	for _, inv := range b.srv.Invocations("billing") {
		if inv.Status == 202 {
			var m meta
			require.NoError(t, json.Unmarshal(inv.Payload, &m))
			require.Equal(t, 1, m.Dispatch.Attempt, "attempts reset")
			keys[m.Dispatch.Key] = true
		}
	}
	require.Len(t, keys, 30, "keys kept")
}

func TestRedriveAtomicWhenFull(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, withServer(), with(dispatcher.WithMaxEvents(3)))
	b.enqueue(t, "missing", 3)
	b.start(t)
	waitStats(t, b.d, "dead-lettered", func(s dispatcher.Stats) bool { return s.DeadLettered == 3 })
	b.halt(t)
	b.enqueue(t, "missing", 2) // the queue holds 2 of 3
	n, err := b.d.DeadLetters().RedriveMatching(ctx, dispatcher.LetterFilter{}, dispatcher.RedriveOptions{})
	require.ErrorIs(t, err, dispatcher.ErrQueueFull)
	require.Zero(t, n)
	c, err := b.d.DeadLetters().Count()
	require.NoError(t, err)
	require.Equal(t, 3, c, "a refused redrive leaves every letter in place")
	require.Equal(t, int64(2), b.d.Stats().Queued())
}

func TestPurge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, withServer())
	b.srv.Register("fn", lambdatest.OK())
	b.srv.Fail("fn", lambdatest.Error(0, 500, "ServiceException"))
	b.enqueue(t, "fn", 4)
	b.enqueue(t, "missing", 3)
	b.start(t)
	waitStats(t, b.d, "dead-lettered", func(s dispatcher.Stats) bool { return s.DeadLettered == 7 })
	dl := b.d.DeadLetters()
	n, err := dl.Purge(ctx, dispatcher.LetterFilter{Reason: deadletter.Rejected})
	require.NoError(t, err)
	require.Equal(t, 3, n)
	c, err := dl.Count()
	require.NoError(t, err)
	require.Equal(t, 4, c)
	n, err = dl.Purge(ctx, dispatcher.LetterFilter{})
	require.NoError(t, err)
	require.Equal(t, 4, n)
	c, err = dl.Count()
	require.NoError(t, err)
	require.Zero(t, c)
}

// TestRedriveInBoundedBatches redrives more letters than one transaction
// takes.
func TestRedriveInBoundedBatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	d, err := dispatcher.Open(path)
	require.NoError(t, err)
	defer d.Close()
	letters := deadletter.NewBolt(dispatcher.StoreForTest(d))
	// One transaction, not 1,200 fsync'd ones: only the redrive's commits
	// are counted.
	require.NoError(t, dispatcher.StoreForTest(d).Update(context.Background(), func(tx *store.Tx) error {
		for i := 1; i <= 1200; i++ {
			if err := letters.PutTx(tx, deadletter.Letter{ID: fmt.Sprint(i), Function: "fn", Reason: deadletter.Rejected, Payload: []byte(`{}`)}); err != nil {
				return err
			}
		}
		return nil
	}))
	before := d.Stats().Commits
	n, err := d.DeadLetters().RedriveMatching(ctx, dispatcher.LetterFilter{}, dispatcher.RedriveOptions{})
	require.NoError(t, err)
	require.Equal(t, 1200, n)
	require.Equal(t, int64(1200), d.Stats().Queued())
	require.Equal(t, uint64(3), d.Stats().Commits-before, "500 + 500 + 200")
}

// withLetters returns a stopped dispatcher holding one dead letter (reason
// rejected: no such function) for each of functions, and their ids.
func withLetters(t *testing.T, functions ...string) (*testBundle, []string) {
	t.Helper()
	b := setup(t, withServer())
	var ids []string
	for _, fn := range functions {
		ids = append(ids, b.enqueue(t, fn, 1)...)
	}
	b.start(t)
	waitStats(t, b.d, "dead-lettered", func(s dispatcher.Stats) bool { return s.DeadLettered == uint64(len(functions)) })
	b.halt(t)
	return b, ids
}

// adminPost posts body to the admin handler h and returns the status and
// the decoded answer.
func adminPost(t *testing.T, h http.Handler, path, body string) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, bytes.NewBufferString(body)))
	var out map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out), "body %q", rec.Body.String())
	return rec.Code, out
}

// TestRedriveValidatesQualifier: a Qualifier that Enqueue refuses is
// refused by a redrive too, with the same *ValidationError, even without a
// Function beside it; through the API and the admin handler, and no
// letter moves.
func TestRedriveValidatesQualifier(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, ids := withLetters(t, "missing", "missing", "gone:v1")
	dl := b.d.DeadLetters()
	h := b.d.AdminHandler()
	before := take(t, b.d)

	for _, q := range []string{"a/b", strings.Repeat("q", 300)} {
		_, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "missing", Qualifier: q})
		var want *dispatcher.ValidationError
		require.ErrorAs(t, err, &want, "Enqueue refuses qualifier %q", q)
		require.Equal(t, "Qualifier", want.Field)

		for name, redrive := range map[string]func(o dispatcher.RedriveOptions) (int, error){
			"Redrive": func(o dispatcher.RedriveOptions) (int, error) { return dl.Redrive(ctx, ids, o) },
			"RedriveMatching": func(o dispatcher.RedriveOptions) (int, error) {
				return dl.RedriveMatching(ctx, dispatcher.LetterFilter{}, o)
			},
			"NoMatch": func(o dispatcher.RedriveOptions) (int, error) {
				return dl.RedriveMatching(ctx, dispatcher.LetterFilter{Function: "none"}, o)
			},
		} {
			for _, o := range []dispatcher.RedriveOptions{{Qualifier: q}, {Function: "other", Qualifier: q}} {
				n, err := redrive(o)
				require.ErrorIs(t, err, dispatcher.ErrInvalidEvent, "%s %+v", name, o)
				var got *dispatcher.ValidationError
				require.ErrorAs(t, err, &got)
				require.Equal(t, want.Field, got.Field)
				require.Equal(t, want.Reason, got.Reason)
				require.Zero(t, n)
			}
		}
		qj, _ := json.Marshal(q)
		for _, body := range []string{
			`{"ids":["` + ids[0] + `"],"qualifier":` + string(qj) + `}`,
			`{"all":true,"qualifier":` + string(qj) + `}`,
			`{"filter":{"function":"missing"},"to":"other","qualifier":` + string(qj) + `}`,
		} {
			code, out := adminPost(t, h, "/deadletters/redrive", body)
			require.Equal(t, http.StatusBadRequest, code, "%s: %v", body, out)
			require.Contains(t, out["error"], "Qualifier")
		}
	}

	// A qualifier that contradicts the one in a letter's function.
	_, err := dl.Redrive(ctx, ids[2:], dispatcher.RedriveOptions{Qualifier: "v2"})
	var ve *dispatcher.ValidationError
	require.ErrorAs(t, err, &ve)
	require.Equal(t, "Qualifier", ve.Field)
	require.Contains(t, err.Error(), ids[2])

	require.Equal(t, before, take(t, b.d), "the queue did not change")
	c, err := dl.Count()
	require.NoError(t, err)
	require.Equal(t, 3, c, "no letter moved")

	n, err := dl.Redrive(ctx, ids[2:], dispatcher.RedriveOptions{Qualifier: "v1"})
	require.NoError(t, err, "the qualifier the function already names is fine")
	require.Equal(t, 1, n)
}

// TestAdminEmptyFilterSelectsNothing: as with dispatchctl, a filter with no
// field set selects no letter; every letter takes {"all":true}.
func TestAdminEmptyFilterSelectsNothing(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"/deadletters/purge", "/deadletters/redrive"} {
		t.Run(strings.TrimPrefix(path, "/deadletters/"), func(t *testing.T) {
			t.Parallel()
			b, ids := withLetters(t, "missing", "missing", "missing")
			h := b.d.AdminHandler()
			before := take(t, b.d)
			for _, body := range []string{
				`{}`,
				`{"filter":{}}`,
				`{"filter":null}`,
				`{"filter":{"function":"","reason":""}}`,
				`{"filter":{},"all":false}`,
				`{"ids":["` + ids[0] + `"],"all":true}`,
				`{"ids":["` + ids[0] + `"],"filter":{"function":"missing"}}`,
			} {
				if strings.Contains(body, "ids") && strings.HasSuffix(path, "purge") {
					continue // purge takes no ids
				}
				code, out := adminPost(t, h, path, body)
				require.Equal(t, http.StatusBadRequest, code, "%s %s: %v", path, body, out)
			}
			require.Equal(t, before, take(t, b.d), "the queue did not change")
			c, err := b.d.DeadLetters().Count()
			require.NoError(t, err)
			require.Equal(t, 3, c, "no letter moved")

			code, out := adminPost(t, h, path, `{"all":true}`)
			require.Equal(t, http.StatusOK, code, "%v", out)
			require.Len(t, out, 1)
			for _, n := range out {
				require.EqualValues(t, 3, n)
			}
			c, err = b.d.DeadLetters().Count()
			require.NoError(t, err)
			require.Zero(t, c)
		})
	}
}
