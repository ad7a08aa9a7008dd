package dispatcher_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
)

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
