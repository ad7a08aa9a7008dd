package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/lambdadispatch/dispatcher"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is an io.Writer that run writes to while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out syncBuffer
	require.NoError(t, run(ctx, []string{"-demo", "200"}, &out), out.String())

	m := regexp.MustCompile(`accepted (\d+) duplicates (\d+) delivered (\d+)`).FindStringSubmatch(out.String())
	require.NotNil(t, m, out.String())
	require.Equal(t, "160", m[1], "accepted")
	require.Equal(t, "40", m[2], "duplicates")
	require.Equal(t, m[1], m[3], "delivered == accepted")
}

func TestServe(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	db := filepath.Join(t.TempDir(), "events.db")
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-db", db}, &out) }()

	var api, admin string
	re := regexp.MustCompile(`(?m)^listening on (http://\S+)\nadmin on (http://\S+)$`)
	require.Eventually(t, func() bool {
		m := re.FindStringSubmatch(out.String())
		if m == nil {
			return false
		}
		api, admin = m[1], m[2]
		return true
	}, 10*time.Second, 5*time.Millisecond, "addresses not printed: %q", out.String())
	require.True(t, strings.HasPrefix(admin, "http://127.0.0.1:"), admin)

	tr := &http.Transport{}
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	post := func(body string) (int, map[string]any) {
		resp, err := hc.Post(api+"/orders", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		var v map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&v))
		return resp.StatusCode, v
	}

	code, first := post(`{"id":"42","total":9.5}`)
	require.Equal(t, http.StatusAccepted, code, first)
	require.Equal(t, false, first["duplicate"])
	require.NotEmpty(t, first["id"])
	code, second := post(`{"id":"42","total":9.5}`)
	require.Equal(t, http.StatusAccepted, code, second)
	require.Equal(t, true, second["duplicate"])
	require.Equal(t, first["id"], second["id"])

	code, _ = post(`{"id":`)
	require.Equal(t, http.StatusBadRequest, code)
	code, _ = post(`{"total":1}`)
	require.Equal(t, http.StatusBadRequest, code)
	code, verr := post(`{"id":"` + strings.Repeat("x", 2000) + `"}`) // the key passes 1024 bytes
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, "Key", verr["field"])

	var st dispatcher.Stats
	require.Eventually(t, func() bool {
		// No require here: the condition runs on another goroutine.
		resp, err := hc.Get(admin + "/stats")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		st = dispatcher.Stats{}
		return resp.StatusCode == http.StatusOK &&
			json.NewDecoder(resp.Body).Decode(&st) == nil &&
			st.Delivered == 1
	}, 10*time.Second, 5*time.Millisecond, "stats: %+v", st)
	require.Equal(t, uint64(1), st.Enqueued)
	require.Equal(t, uint64(1), st.DuplicatesRefused)
	require.True(t, st.Running)

	// The same port serves the metrics to Prometheus.
	resp, err := hc.Get(admin + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Regexp(t, `(?m)^dispatcher_enqueued\S* 1$`, string(body))
	require.Regexp(t, `(?m)^dispatcher_async_received\S*\{[^}]*function="orders"[^}]*\} 1$`, string(body))

	// And the dashboard, at its root.
	resp, err = hc.Get(admin + "/")
	require.NoError(t, err)
	body, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Type"), "text/html")
	require.Contains(t, string(body), "assets/app.js")
	tr.CloseIdleConnections()

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	require.Contains(t, out.String(), "shutting down")
}

func TestQueueFull(t *testing.T) {
	d, err := dispatcher.Open(filepath.Join(t.TempDir(), "events.db"), dispatcher.WithMaxEvents(1))
	require.NoError(t, err)
	defer d.Close()
	h := ordersAPI(d, "orders")
	for i, want := range []int{http.StatusAccepted, http.StatusServiceUnavailable} {
		rec := httptest.NewRecorder()
		body := `{"id":"` + string(rune('a'+i)) + `"}`
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(body)))
		require.Equal(t, want, rec.Code, rec.Body.String())
	}
}

func TestAdminLoopbackOnly(t *testing.T) {
	err := run(context.Background(), []string{"-admin", "0.0.0.0:0"}, &syncBuffer{})
	require.ErrorContains(t, err, "loopback")
}
