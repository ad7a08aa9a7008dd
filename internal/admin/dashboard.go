package admin

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"html/template"
	"net/http"
	"time"
)

// The dashboard is one server-rendered page (ui/index.html) and two
// assets (ui/app.js, ui/app.css), embedded so that the handler works
// offline and needs no build step: the script is plain JavaScript over the
// JSON endpoints of this handler.

//go:embed ui/index.html ui/app.js ui/app.css
var ui embed.FS

// pageCSP is the Content-Security-Policy of the page: its own script and
// style only, requests to its own origin only, and no framing. Payloads,
// keys and error texts are whatever callers enqueued; should one ever reach
// the DOM as markup, this keeps it from running.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// asset is an embedded file served at /assets/{name}.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// assets are the files the page loads, by name. Only these are served:
// anything else under /assets/ is a 404, index.html included.
var assets = map[string]asset{
	"app.js":  loadAsset("ui/app.js", "text/javascript; charset=utf-8"),
	"app.css": loadAsset("ui/app.css", "text/css; charset=utf-8"),
}

func loadAsset(name, contentType string) asset {
	b, err := ui.ReadFile(name)
	if err != nil {
		panic(err) // embedded at build time: cannot happen
	}
	sum := sha256.Sum256(b)
	return asset{body: b, contentType: contentType, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
}

var pageTemplate = template.Must(template.ParseFS(ui, "ui/index.html"))

// renderPage is the page as served: the template takes only whether the
// handler is read-only, so it is rendered once.
func renderPage(readOnly bool) []byte {
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, struct{ ReadOnly bool }{readOnly}); err != nil {
		panic(err) // a fixed template and fixed data: a bug, seen by any test
	}
	return buf.Bytes()
}

// dashboardRoutes are the routes of the dashboard: the page at the
// handler's root and its assets. readOnly renders the page for viewers:
// it leaves out every action (the handler refuses them anyway) and says so.
func dashboardRoutes(readOnly bool) []route {
	page := renderPage(readOnly)
	return []route{
		{"GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("Content-Type", "text/html; charset=utf-8")
			h.Set("Content-Security-Policy", pageCSP)
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Referrer-Policy", "no-referrer")
			// The page carries no data, but it does say whether the
			// handler is read-only; never keep a stale one.
			h.Set("Cache-Control", "no-store")
			_, _ = w.Write(page)
		}},
		{"GET /assets/{file}", func(w http.ResponseWriter, r *http.Request) {
			a, ok := assets[r.PathValue("file")]
			if !ok {
				writeError(w, http.StatusNotFound, "no such asset")
				return
			}
			h := w.Header()
			h.Set("Content-Type", a.contentType)
			h.Set("X-Content-Type-Options", "nosniff")
			// Revalidate every time, cheaply by ETag: a new library
			// version must not run against an old script.
			h.Set("Cache-Control", "no-cache")
			h.Set("ETag", a.etag)
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
		}},
	}
}
