package dispatcher_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/lambdatest"
)

// apiClient calls an admin handler over real HTTP and decodes answers
// into generic JSON, so that the tests see the names on the wire, not
// what a case-insensitive decoder would forgive.
type apiClient struct {
	t   *testing.T
	srv *httptest.Server
}

func newAPI(t *testing.T, h http.Handler) *apiClient {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &apiClient{t: t, srv: srv}
}

func (c *apiClient) do(method, path, body string, header ...string) (int, http.Header, map[string]any) {
	c.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.srv.URL+path, r)
	require.NoError(c.t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.srv.Client().Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	require.Equal(c.t, "application/json", resp.Header.Get("Content-Type"), "%s %s: %s", method, path, raw)
	var v map[string]any
	require.NoError(c.t, json.Unmarshal(raw, &v), "%s %s: %s", method, path, raw)
	return resp.StatusCode, resp.Header, v
}

func (c *apiClient) get(path string) (int, map[string]any) {
	c.t.Helper()
	code, _, v := c.do(http.MethodGet, path, "")
	return code, v
}

func (c *apiClient) post(path, body string) (int, map[string]any) {
	c.t.Helper()
	code, _, v := c.do(http.MethodPost, path, body)
	return code, v
}

func keysOf(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func TestAdminAPIShapes(t *testing.T) {
	t.Parallel()
	b := setup(t, withServer(), with(dispatcher.WithFunctionLimit("orders", dispatcher.FunctionLimit{MaxInFlight: 4, PerSecond: 2.5})))
	dead := b.enqueue(t, "missing", 2)
	b.start(t)
	waitStats(t, b.d, "dead-lettered", func(s dispatcher.Stats) bool { return s.DeadLettered == 2 })
	b.halt(t)
	queued := b.enqueue(t, "orders", 3)
	api := newAPI(t, b.d.AdminHandler())

	code, st := api.get("/stats")
	require.Equal(t, 200, code)
	for _, k := range []string{"ready", "scheduled", "leased", "queued", "deadLetters", "deadLettered", "deadLetteredBy", "inFlightLimit", "duplicatesRefused", "fileSize", "functions", "shared"} {
		require.Contains(t, st, k)
	}
	for _, k := range keysOf(st) {
		require.Regexp(t, `^[a-z][A-Za-z]*$`, k, "camelCase names only")
	}
	require.EqualValues(t, 3, st["ready"])
	require.EqualValues(t, 2, st["deadLetters"])
	require.Equal(t, map[string]any{"rejected": 2.0}, st["deadLetteredBy"])
	require.Positive(t, st["fileSize"])

	code, l := api.get("/deadletters/" + dead[0])
	require.Equal(t, 200, code)
	require.Equal(t, "dead", l["state"])
	require.Equal(t, "rejected", l["reason"])
	require.Equal(t, "json", l["payloadEncoding"])
	require.Equal(t, map[string]any{"n": 0.0}, l["payload"])
	require.Contains(t, l["lastError"], "code")

	code, l = api.get("/deadletters/" + dead[0] + "?payload=base64")
	require.Equal(t, 200, code)
	require.Equal(t, "base64", l["payloadEncoding"])
	raw, err := base64.StdEncoding.DecodeString(l["payload"].(string))
	require.NoError(t, err)
	require.JSONEq(t, `{"n":0}`, string(raw))

	code, e := api.get("/events/" + queued[1])
	require.Equal(t, 200, code)
	require.Equal(t, "ready", e["state"])
	require.Equal(t, map[string]any{"n": 1.0}, e["payload"])
	require.NotContains(t, e, "leased", "one way to say a state")

	// Reasons are matched by identifier, and the library's spelling is
	// still understood; anything else is refused, not an empty list.
	for _, r := range []string{"rejected", "retries-exhausted", "retries%20exhausted", "EVENT_AGE_EXCEEDED"} {
		code, page := api.get("/deadletters?reason=" + r)
		require.Equal(t, 200, code, r)
		require.Contains(t, page, "next")
	}
	_, page := api.get("/deadletters?reason=rejected")
	require.Len(t, page["items"], 2)
	require.NotContains(t, page["items"].([]any)[0], "payload", "lists carry no payloads")

	// Lists carry payloads only when asked, in either encoding.
	_, page = api.get("/events?function=orders&payload=json&limit=1")
	require.Equal(t, map[string]any{"n": 0.0}, page["items"].([]any)[0].(map[string]any)["payload"])
	_, page = api.get("/deadletters?payload=base64&limit=1")
	require.Equal(t, "base64", page["items"].([]any)[0].(map[string]any)["payloadEncoding"])
	code, _ = api.get("/events?payload=yaml")
	require.Equal(t, 400, code)

	code, f := api.get("/functions/orders")
	require.Equal(t, 200, code)
	require.EqualValues(t, 3, f["ready"])
	require.Contains(t, f, "inFlight")
	require.EqualValues(t, 4, f["maxInFlight"], "the configured limits are shown")
	require.Equal(t, 2.5, f["perSecond"])
	code, _ = api.get("/functions/nobody")
	require.Equal(t, 404, code)

	code, page = api.get("/events?key=nope")
	require.Equal(t, 200, code)
	require.Empty(t, page["items"])
	code, page = api.get("/events?since=2000-01-01T00:00:00Z&function=orders")
	require.Equal(t, 200, code)
	require.Len(t, page["items"], 3)
	code, page = api.get("/events?until=2000-01-01T00:00:00Z")
	require.Equal(t, 200, code)
	require.Empty(t, page["items"])

	code, r := api.get("/rates")
	require.Equal(t, 200, code)
	var enq float64
	for _, p := range r["points"].([]any) {
		enq += p.(map[string]any)["enqueued"].(float64)
	}
	require.Equal(t, 5.0, enq, "every enqueue since Open is in some interval")

	code, out := api.post("/deadletters/purge", `{"ids":["`+dead[1]+`","999999"]}`)
	require.Equal(t, 200, code)
	require.EqualValues(t, 1, out["purged"])
	n, err := b.d.DeadLetters().Count()
	require.NoError(t, err)
	require.Equal(t, 1, n)
}

// TestAdminAPIRefusals checks that every kind of bad request gets its own
// status and a JSON error, and changes nothing.
func TestAdminAPIRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.enqueue(t, "orders", 2)
	api := newAPI(t, b.d.AdminHandler())
	before := b.d.Stats()

	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/deadletters?reason=bogus", ""},
		{"GET", "/deadletters?function=a&fn=b", ""},
		{"GET", "/events?state=gone", ""},
		{"GET", "/events?stat=ready", ""},
		{"GET", "/events?limit=0", ""},
		{"GET", "/events?limit=1001", ""},
		{"GET", "/events?after=x", ""},
		{"GET", "/events?since=yesterday", ""},
		{"GET", "/events?function=a&function=b", ""},
		{"GET", "/stats?verbose=1", ""},
		{"GET", "/events/x", ""},
		{"GET", "/events/1?payload=hex", ""},
		{"POST", "/deadletters/purge", `{"filter":{"reason":"bogus"}}`},
		{"POST", "/deadletters/purge", `{"filter":{}}`},
		{"POST", "/deadletters/redrive", `{"ids":["1"],"all":true}`},
		{"POST", "/deadletters/redrive", `{"all":true} {"all":true}`},
		{"POST", "/events/cancel", `{"filter":{"state":"dead"}}`},
		{"POST", "/events/cancel", `{"ids":["` + ids[0] + `"],"bogus":1}`},
		{"POST", "/events/cancel", `not json`},
	} {
		code, _, v := api.do(tc.method, tc.path, tc.body)
		require.Equal(t, 400, code, "%s %s %s", tc.method, tc.path, tc.body)
		require.NotEmpty(t, v["error"])
	}

	for _, tc := range []struct{ method, path, allow string }{
		{"POST", "/stats", "GET"},
		{"DELETE", "/events", "GET"},
		{"GET", "/deadletters/redrive", "POST"},
		{"GET", "/deadletters/purge", "POST"},
		{"GET", "/events/cancel", "POST"},
		{"PUT", "/functions/orders/pause", "POST"},
		{"DELETE", "/events/" + ids[0], "GET"},
	} {
		code, h, v := api.do(tc.method, tc.path, "")
		require.Equal(t, 405, code, "%s %s", tc.method, tc.path)
		require.Equal(t, tc.allow, h.Get("Allow"), "%s %s", tc.method, tc.path)
		require.Contains(t, v["error"], "not allowed")
	}
	code, _ := api.get("/nothing/here")
	require.Equal(t, 404, code)

	after := b.d.Stats()
	require.Equal(t, before.Queued(), after.Queued())
	require.Zero(t, after.Cancelled)
}

func TestAdminReadOnlyAndCrossOrigin(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.enqueue(t, "orders", 3)

	viewer := newAPI(t, b.d.AdminHandler(dispatcher.AdminReadOnly()))
	code, _ := viewer.get("/stats")
	require.Equal(t, 200, code)
	for _, p := range []string{"/events/cancel", "/deadletters/purge", "/deadletters/redrive", "/functions/orders/pause"} {
		code, v := viewer.post(p, `{"all":true}`)
		require.Equal(t, 403, code, p)
		require.Contains(t, v["error"], "read-only")
	}

	api := newAPI(t, b.d.AdminHandler())
	cancel := `{"ids":["` + ids[0] + `"]}`
	// A page of another site posting through the operator's browser.
	code, _, v := api.do(http.MethodPost, "/events/cancel", cancel, "Sec-Fetch-Site", "cross-site")
	require.Equal(t, 403, code)
	require.Contains(t, v["error"], "cross-origin")
	code, _, _ = api.do(http.MethodPost, "/events/cancel", cancel, "Origin", "http://attacker.example")
	require.Equal(t, 403, code)
	require.Zero(t, b.d.Stats().Cancelled, "refused requests change nothing")

	code, _, v = api.do(http.MethodPost, "/events/cancel", cancel, "Sec-Fetch-Site", "same-origin")
	require.Equal(t, 200, code)
	require.EqualValues(t, 1, v["cancelled"])
	code, _, v = api.do(http.MethodPost, "/functions/orders/pause", "") // curl, dispatchctl: no browser headers
	require.Equal(t, 200, code)
	require.Equal(t, true, v["paused"])
}

// TestAdminRedriveByReasonID is the bug the issue names: a reason spelled
// the CLI's way matched nothing.
func TestAdminRedriveByReasonID(t *testing.T) {
	t.Parallel()
	b := setup(t, withServer())
	b.srv.Register("ok", lambdatest.OK())
	b.enqueue(t, "missing", 2)
	b.start(t)
	waitStats(t, b.d, "dead-lettered", func(s dispatcher.Stats) bool { return s.DeadLettered == 2 })
	b.halt(t)
	api := newAPI(t, b.d.AdminHandler())
	resp, err := http.Post(api.srv.URL+"/deadletters/redrive", "application/json", bytes.NewBufferString(`{"filter":{"reason":"rejected"},"to":"ok"}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	var out struct{ Redriven int }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	require.Equal(t, 2, out.Redriven)
	require.EqualValues(t, 2, b.d.Stats().Ready)
}
