package dispatcher_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/lambdatest"
)

func TestAdminHandler(t *testing.T) {
	t.Parallel()
	b := setup(t, withServer())
	b.srv.Register("ok", lambdatest.OK())
	ids := b.enqueue(t, "missing", 3)
	b.start(t)
	waitStats(t, b.d, "dead-lettered", func(s dispatcher.Stats) bool { return s.DeadLettered == 3 })
	b.halt(t)
	queued := b.enqueue(t, "ok", 5)

	h := httptest.NewServer(b.d.AdminHandler())
	t.Cleanup(h.Close)
	get := func(path string, v any) int {
		t.Helper()
		resp, err := h.Client().Get(h.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
		return resp.StatusCode
	}
	post := func(path, body string, v any) int {
		t.Helper()
		resp, err := h.Client().Post(h.URL+path, "application/json", bytes.NewBufferString(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
		return resp.StatusCode
	}

	var st dispatcher.Stats
	require.Equal(t, 200, get("/stats", &st))
	require.Equal(t, int64(5), st.Ready)
	require.Equal(t, uint64(3), st.DeadLettered)

	var events struct {
		Items []dispatcher.EventInfo
		Next  string
	}
	require.Equal(t, 200, get("/events?state=ready&limit=2", &events))
	require.Len(t, events.Items, 2)
	require.Equal(t, queued[0], events.Items[0].ID)
	require.Equal(t, queued[1], events.Next)
	require.Equal(t, 200, get("/events?after="+events.Next+"&limit=10", &events))
	require.Len(t, events.Items, 3)
	require.Empty(t, events.Next)

	var one dispatcher.EventInfo
	require.Equal(t, 200, get("/events/"+queued[2], &one))
	require.JSONEq(t, `{"n":2}`, string(one.Payload))
	var e struct{ Error string }
	require.Equal(t, 404, get("/events/999999", &e))
	require.NotEmpty(t, e.Error)
	require.Equal(t, 400, get("/events/x", &e))
	require.Equal(t, 400, get("/events?state=gone", &e))

	var letters struct {
		Items []struct{ ID, Function, Reason string }
		Next  string
	}
	require.Equal(t, 200, get("/deadletters?reason=rejected", &letters))
	require.Len(t, letters.Items, 3)
	require.Equal(t, ids[0], letters.Items[0].ID)
	require.Equal(t, 200, get("/deadletters?function=nope", &letters))
	require.Empty(t, letters.Items)
	var letter struct{ ID, Reason string }
	require.Equal(t, 200, get("/deadletters/"+ids[1], &letter))
	require.Equal(t, "rejected", letter.Reason)

	var out map[string]int
	require.Equal(t, 400, post("/deadletters/redrive", `{}`, &e), "nothing selected")
	require.Equal(t, 400, post("/deadletters/redrive", `{"bogus":1}`, &e))
	require.Equal(t, 200, post("/deadletters/redrive", `{"ids":["`+ids[0]+`"],"to":"ok"}`, &out))
	require.Equal(t, 1, out["redriven"])
	require.Equal(t, 400, post("/deadletters/purge", `{}`, &e))
	require.Equal(t, 200, post("/deadletters/purge", `{"filter":{"reason":"rejected"}}`, &out))
	require.Equal(t, 2, out["purged"])
	c, err := b.d.DeadLetters().Count()
	require.NoError(t, err)
	require.Zero(t, c)
	require.Equal(t, int64(6), b.d.Stats().Queued())
}

func TestAdminFunctions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.enqueue(t, "orders", 3)
	h := httptest.NewServer(b.d.AdminHandler())
	t.Cleanup(h.Close)
	do := func(method, path string, v any) int {
		t.Helper()
		req, err := http.NewRequest(method, h.URL+path, nil)
		require.NoError(t, err)
		resp, err := h.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
		return resp.StatusCode
	}
	var got struct{ Paused bool }
	require.Equal(t, 200, do(http.MethodPost, "/functions/orders/pause", &got))
	require.True(t, got.Paused)
	var list struct{ Items []dispatcher.FunctionStats }
	require.Equal(t, 200, do(http.MethodGet, "/functions", &list))
	require.Len(t, list.Items, 1)
	require.Equal(t, "orders", list.Items[0].Function)
	require.True(t, list.Items[0].Paused)
	require.Equal(t, int64(3), list.Items[0].Ready)

	var e struct{ Error string }
	require.Equal(t, 400, do(http.MethodPost, "/functions/bad%20name/pause", &e))
	require.Contains(t, e.Error, "Function")
	require.Equal(t, 200, do(http.MethodPost, "/functions/orders/resume", &got))
	require.False(t, got.Paused)
	fs, err := b.d.Functions().Get("orders")
	require.NoError(t, err)
	require.False(t, fs.Paused)
}

func TestAdminCancelAndEvictions(t *testing.T) {
	t.Parallel()
	b := setup(t, with(dispatcher.WithMaxEvents(2), dispatcher.WithFullPolicy(dispatcher.DropOldest)))
	ids := b.enqueue(t, "orders", 3) // the first is evicted
	h := httptest.NewServer(b.d.AdminHandler())
	t.Cleanup(h.Close)
	post := func(body string, v any) int {
		t.Helper()
		resp, err := h.Client().Post(h.URL+"/events/cancel", "application/json", bytes.NewBufferString(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
		return resp.StatusCode
	}
	var ev struct {
		Items []dispatcher.Eviction
		Next  string
	}
	resp, err := h.Client().Get(h.URL + "/evictions")
	require.NoError(t, err)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&ev))
	resp.Body.Close()
	require.Len(t, ev.Items, 1)
	require.Equal(t, ids[0], ev.Items[0].ID)

	var e struct{ Error string }
	require.Equal(t, 400, post(`{}`, &e), "nothing selected")
	require.Equal(t, 400, post(`{"ids":["`+ids[1]+`"],"all":true}`, &e))
	require.Equal(t, 400, post(`{"filter":{"state":"gone"}}`, &e))
	var got struct{ Cancelled int }
	require.Equal(t, 200, post(`{"ids":["`+ids[1]+`"]}`, &got))
	require.Equal(t, 1, got.Cancelled)
	require.Equal(t, 200, post(`{"all":true}`, &got))
	require.Equal(t, 1, got.Cancelled)
	require.Zero(t, b.d.Stats().Queued())
	require.Equal(t, uint64(2), b.d.Stats().Cancelled)
}
