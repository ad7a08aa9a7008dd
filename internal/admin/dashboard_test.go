package admin

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// dashboard serves the dashboard's routes alone; the browser test in the
// root package drives them mounted in the whole handler.
func dashboard(readOnly bool) http.Handler {
	mux := http.NewServeMux()
	for _, rt := range dashboardRoutes(readOnly) {
		mux.HandleFunc(rt.pattern, rt.handle)
	}
	return mux
}

func get(t *testing.T, h http.Handler, path string, header ...string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	resp := rec.Result()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

func TestDashboardPage(t *testing.T) {
	t.Parallel()
	resp, body := get(t, dashboard(false), "/")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	require.Equal(t, pageCSP, resp.Header.Get("Content-Security-Policy"))
	require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
	require.Equal(t, "no-referrer", resp.Header.Get("Referrer-Policy"))
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	require.Contains(t, body, `<body data-readonly="false">`)
	require.Contains(t, body, `id="letters-redrive-selected"`)
	require.Contains(t, body, `id="confirm-ok"`)
	require.NotContains(t, body, `id="badge-readonly"`)

	_, body = get(t, dashboard(true), "/")
	require.Contains(t, body, `<body data-readonly="true">`)
	require.Contains(t, body, `id="badge-readonly"`)
	for _, action := range []string{"letters-redrive-selected", "letters-purge-matching", "events-cancel-selected", "confirm-ok"} {
		require.NotContains(t, body, `id="`+action+`"`, "a viewer's page has no %s", action)
	}

	resp, _ = get(t, dashboard(false), "/other")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func TestDashboardAssets(t *testing.T) {
	t.Parallel()
	h := dashboard(false)
	for file, ct := range map[string]string{"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"} {
		resp, body := get(t, h, "/assets/"+file)
		require.Equal(t, http.StatusOK, resp.StatusCode, file)
		require.Equal(t, ct, resp.Header.Get("Content-Type"), file)
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), file)
		require.NotEmpty(t, body, file)
		etag := resp.Header.Get("ETag")
		require.NotEmpty(t, etag, file)
		resp, _ = get(t, h, "/assets/"+file, "If-None-Match", etag)
		require.Equal(t, http.StatusNotModified, resp.StatusCode, file)
	}
	for _, path := range []string{"/assets/index.html", "/assets/nope.js", "/assets/", "/assets/..%2fdashboard.go"} {
		resp, _ := get(t, h, path)
		require.Equal(t, http.StatusNotFound, resp.StatusCode, path)
	}
}

// TestDashboardAssetsSafe reads the embedded files for what the CSP would
// refuse and for markup built from data: the browser test proves the page
// works, these keep it from drifting into what works only without the CSP.
func TestDashboardAssetsSafe(t *testing.T) {
	t.Parallel()
	page, err := ui.ReadFile("ui/index.html")
	require.NoError(t, err)
	require.NotRegexp(t, `(?i)<script(\s[^>]*)?>[^<]`, string(page), "no inline script")
	require.NotRegexp(t, `(?i)\sstyle=|<style`, string(page), "no inline style")
	require.NotRegexp(t, `(?i)\son[a-z]+=`, string(page), "no inline event handler")
	require.NotRegexp(t, `(?i)(src|href)="(https?:)?//`, string(page), "nothing fetched from elsewhere")

	js, err := ui.ReadFile("ui/app.js")
	require.NoError(t, err)
	for _, sink := range []string{".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setAttribute('style"} {
		require.False(t, strings.Contains(string(js), sink), "app.js uses %s: data reaches the DOM as text only", sink)
	}
	for _, url := range regexp.MustCompile(`https?://[^'"\s]*`).FindAllString(string(js), -1) {
		require.Equal(t, "http://www.w3.org/2000/svg", url, "no URL but the SVG namespace")
	}

	// Small enough to read, and to serve from a device on a slow link.
	total := 0
	require.NoError(t, fs.WalkDir(ui, "ui", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := ui.ReadFile(path)
		total += len(b)
		return err
	}))
	require.Less(t, total, 40<<10, "the dashboard's assets grew past 40 KiB")
}
