package dispatcher_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/lambdadispatch/dispatcher"
)

// The admin handler mounted under /admin/, once for operators and once,
// read-only, for viewers. In an application each sits behind its own
// authentication; httptest stands in for the application's server.
func ExampleDispatcher_AdminHandler() {
	dir, err := os.MkdirTemp("", "dispatcher-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	d, err := dispatcher.Open(filepath.Join(dir, "events.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Enqueue(context.Background(), dispatcher.Event{Function: "billing", Payload: []byte(`{"order":42}`)}); err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.Handle("/admin/", http.StripPrefix("/admin", d.AdminHandler()))
	mux.Handle("/view/", http.StripPrefix("/view", d.AdminHandler(dispatcher.AdminReadOnly())))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	show := func(method, path, body string) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		fmt.Print(resp.StatusCode, " ", string(b))
	}
	show("GET", "/admin/functions", "")
	show("GET", "/admin/deadletters?reason=retries_exhausted&limit=10", "")
	show("GET", "/admin/deadletters?reason=gone", "")
	show("POST", "/view/functions/billing/pause", "")
	show("POST", "/admin/functions/billing/pause", "")
	// Output:
	// 200 {"items":[{"function":"billing","paused":false,"ready":1,"scheduled":0,"inFlight":0,"limit":0,"delivered":0,"deadLettered":0,"throttled":0,"maxInFlight":0,"perSecond":0}],"next":""}
	// 200 {"items":[],"next":""}
	// 400 {"error":"unknown reason \"gone\": want retries-exhausted, event-age-exceeded, rejected"}
	// 403 {"error":"admin handler is read-only"}
	// 200 {"function":"billing","paused":true}
}
