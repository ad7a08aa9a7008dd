package dispatcher_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/lambdatest"
)

// The dashboard's tests drive the page in a real headless Chromium through
// chromedp, against a real dispatcher behind the admin handler, mounted
// under a prefix as an application would mount it.

// chromium finds the browser: /usr/bin/chromium (Debian's package), else
// chromium on PATH. Without one the test skips, and fails under CI.
func chromium(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	const hint = "install Chromium: bash .ci/install-chromium (Debian: apt-get install -y chromium)"
	if os.Getenv("CI") != "" {
		t.Fatal("no Chromium; " + hint)
	}
	t.Skip("no Chromium; " + hint)
	return ""
}

// startBrowser starts one headless Chromium for a test and its subtests,
// ended when the test ends.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium(t)),
		chromedp.Headless,
		chromedp.NoSandbox, // as root, in a container
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1024),
	)
	t.Cleanup(cancelAlloc) // after the browser's cancel below: waits for the process
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	require.NoError(t, chromedp.Do(ctx), "start Chromium")
	return ctx
}

// dashPage is one tab open on the dashboard.
type dashPage struct {
	t   *testing.T
	ctx context.Context
	// httpErrors is set by a test that makes requests fail on purpose:
	// the browser logs each failed one as an error.
	httpErrors atomic.Bool
}

// openPage opens url in a new tab of b, closed when t ends. Whatever the
// page throws or logs as an error (a CSP refusal, say) fails t.
func openPage(t *testing.T, b context.Context, url string) *dashPage {
	t.Helper()
	tab, cancel := chromedp.NewContext(b)
	require.NoError(t, chromedp.Do(tab), "open a tab")
	p := &dashPage{t: t, ctx: tab}
	msgs := chromedp.Console(tab)
	var bad []string // written by the goroutine, read once it is done
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range msgs {
			if err != nil {
				return // the tab closed
			}
			if p.httpErrors.Load() && strings.HasPrefix(m.Text, "Failed to load resource") {
				continue
			}
			if m.IsException() || m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning {
				bad = append(bad, m.String())
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		for _, m := range bad {
			t.Errorf("the page logged: %s", m)
		}
	})
	p.do(chromedp.Navigate(url))
	return p
}

// do runs actions, bounded so that a page that never gets there fails the
// test rather than hanging it.
func (p *dashPage) do(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 15*time.Second)
	defer cancel()
	require.NoError(p.t, chromedp.Do(ctx, actions...))
}

func (p *dashPage) click(sel string) { p.t.Helper(); p.do(chromedp.Click(chromedp.CSS(sel))) }

// evalJS returns the value of a JavaScript expression.
func evalJS[T any](p *dashPage, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 15*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	require.NoError(p.t, err, expr)
	return v
}

// waitFor waits until the JavaScript expression expr has the value want
// (compared as JSON), polling in the page; on timeout it fails with the
// value expr had last.
func (p *dashPage) waitFor(what, expr string, want any) {
	p.t.Helper()
	w, err := json.Marshal(want)
	require.NoError(p.t, err)
	cond := fmt.Sprintf(`JSON.stringify(%s) === JSON.stringify(%s)`, expr, w)
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		got := evalJS[json.RawMessage](p, `JSON.stringify(`+expr+`)`)
		p.t.Fatalf("waiting for %s: %v\nwant %s\ngot  %s", what, err, w, got)
	}
}

// rowIDs is the JavaScript for the ids of the rows a list shows.
func rowIDs(list string) string {
	return `[...document.querySelectorAll('#` + list + `-rows tr[data-id]')].map(tr => tr.dataset.id)`
}

// countCards is the JavaScript for the count cards once the first refresh
// is in: {"count-ready": "5", ...}.
const countCards = `document.getElementById('last-refresh').textContent === 'never' ? null :
	Object.fromEntries([...document.querySelectorAll('[id^="count-"]')].map(e => [e.id, e.textContent]))`

// xssPayload and xssKey would run script if the page put them in the DOM
// as markup.
const (
	xssPayload = `{"order":{"id":7,"lines":[1,2]},"x":"<img src=x onerror=alert(1)>"}`
	xssKey     = `<img id="xss-key" src=x onerror=alert(2)>`
)

// dashboardBundle is a dispatcher holding dead letters of two functions
// ("gone" and "lost", which the Lambda server does not have) and queued
// events of two others ("orders" and "emails"), not running, so that
// nothing moves unless a test moves it.
type dashboardBundle struct {
	*testBundle
	gone, lost []string // letter ids
	xss        string   // the letter with xssPayload and xssKey
}

func setupDashboard(t *testing.T) *dashboardBundle {
	t.Helper()
	srv := lambdatest.NewServer()
	t.Cleanup(srv.Close)
	b := &dashboardBundle{testBundle: setup(t, with(dispatcher.WithLambda(srv.Client()), dispatcher.WithRetryPolicy(fastPolicy())))}
	b.gone = b.enqueue(t, "gone", 2)
	b.lost = b.enqueue(t, "lost", 1)
	r, err := b.d.Enqueue(context.Background(), dispatcher.Event{Function: "lost", Key: xssKey, Payload: []byte(xssPayload)})
	require.NoError(t, err)
	b.xss = r.ID
	b.lost = append(b.lost, r.ID)
	b.start(t)
	waitStats(t, b.d, "four letters", func(s dispatcher.Stats) bool { return s.DeadLettered == 4 })
	b.halt(t)
	b.enqueue(t, "orders", 3)
	b.enqueue(t, "emails", 2)
	return b
}

// serveAdmin mounts h at /admin/, as an application would, and returns
// the dashboard's URL.
func serveAdmin(t *testing.T, h http.Handler) string {
	t.Helper()
	s := httptest.NewServer(http.StripPrefix("/admin", h))
	t.Cleanup(s.Close)
	return s.URL + "/admin/"
}

func TestDashboard(t *testing.T) {
	t.Parallel()
	b := setupDashboard(t)
	url := serveAdmin(t, b.d.AdminHandler())
	br := startBrowser(t)

	t.Run("Counts", func(t *testing.T) {
		p := openPage(t, br, url)
		p.waitFor("the first refresh", `document.getElementById('last-refresh').textContent !== 'never'`, true)
		got := evalJS[map[string]string](p, countCards)
		st := b.d.Stats()
		dead, err := b.d.DeadLetters().Count()
		require.NoError(t, err)
		for id, want := range map[string]any{
			"count-ready": st.Ready, "count-scheduled": st.Scheduled, "count-leased": st.Leased,
			"count-dead": dead, "count-evicted": st.Evicted, "count-delivered": st.Delivered,
			"count-deadLettered": st.DeadLettered, "count-retried": st.Retried, "count-cancelled": st.Cancelled,
			"count-inFlightLimit": st.InFlightLimit,
		} {
			require.Equal(t, fmt.Sprint(want), got[id], id)
		}
		p.waitFor("the not-running badge", `[...document.querySelectorAll('.badge')].filter(e => !e.hidden).map(e => e.id)`,
			[]string{"badge-stopped"})
		p.waitFor("the functions", `[...document.querySelectorAll('#functions-rows tr')].map(tr => tr.dataset.function)`,
			[]string{"emails", "gone", "lost", "orders"})
		p.waitFor("the queued events", `document.querySelectorAll('#events-rows tr[data-id]').length`, 5)
	})

	t.Run("FilterLetters", func(t *testing.T) {
		p := openPage(t, br, url)
		p.click("#tab-letters")
		p.waitFor("every letter", rowIDs("letters"), append(append([]string{}, b.gone...), b.lost...))
		p.do(chromedp.SetValue(chromedp.ID("letters-function"), "gone"))
		p.click("#letters-apply")
		p.waitFor("the letters of gone", rowIDs("letters"), b.gone)
		require.Equal(t, []string{"gone", "gone"},
			evalJS[[]string](p, `[...document.querySelectorAll('#letters-rows tr[data-id]')].map(tr => tr.cells[3].textContent)`))
	})

	t.Run("LetterPayload", func(t *testing.T) {
		p := openPage(t, br, url)
		p.click("#tab-letters")
		p.click(`#letters-rows button[data-id="` + b.xss + `"]`)
		p.waitFor("the letter's payload, pretty-printed", `document.getElementById('detail-payload').textContent`,
			"{\n  \"order\": {\n    \"id\": 7,\n    \"lines\": [\n      1,\n      2\n    ]\n  },\n  \"x\": \"<img src=x onerror=alert(1)>\"\n}")
		require.Equal(t, "Payload (JSON)", evalJS[string](p, `document.getElementById('detail-payload-label').textContent`))
		require.Equal(t, "Dead letter "+b.xss, evalJS[string](p, `document.getElementById('detail-title').textContent`))
	})

	t.Run("HostileTextStaysText", func(t *testing.T) {
		p := openPage(t, br, url)
		p.click("#tab-letters")
		p.click(`#letters-rows button[data-id="` + b.xss + `"]`)
		p.waitFor("the payload", `document.getElementById('detail-payload').textContent.includes('onerror=alert(1)')`, true)
		// The key is in the list and in the detail panel, the payload in
		// the panel: as text, so no img element exists anywhere.
		keyCell := `[...document.querySelectorAll('#letters-rows tr[data-id="` + b.xss + `"] td')].map(td => td.textContent)`
		require.Contains(t, evalJS[[]string](p, keyCell), xssKey)
		require.Zero(t, evalJS[int](p, `document.querySelectorAll('img').length`))
		require.False(t, evalJS[bool](p, `document.getElementById('xss-key') !== null`))
	})

	t.Run("Redrive", func(t *testing.T) {
		p := openPage(t, br, url)
		p.waitFor("the first refresh", `document.getElementById('count-dead').textContent`, "4")
		p.click("#tab-letters")
		p.waitFor("every letter", `document.querySelectorAll('#letters-rows tr[data-id]').length`, 4)
		letter := b.gone[0]
		p.click(`#letters-rows input[data-id="` + letter + `"]`)
		p.waitFor("the selection", `document.getElementById('letters-selected').textContent`, "1 selected")

		// A refresh leaves the dialog open and the selection as it was.
		// Cancel then does nothing.
		p.click("#letters-redrive-selected")
		p.do(chromedp.WaitVisible(chromedp.ID("confirm-ok")))
		require.Contains(t, evalJS[string](p, `document.getElementById('confirm-text').textContent`), "Redrive 1 dead letter?")
		// Rather than wait up to 2 s for the timer, make the page refresh
		// as when it becomes visible again: the same unforced refresh.
		was := evalJS[string](p, `document.getElementById('last-refresh').dateTime`)
		p.do(chromedp.Evaluate[chromedp.Void](`document.getElementById('letters-rows').firstElementChild.dataset.probe = 'kept'`))
		p.do(chromedp.Evaluate[chromedp.Void](`document.dispatchEvent(new Event('visibilitychange'))`))
		p.waitFor("a refresh", `document.getElementById('last-refresh').dateTime !== `+strconv.Quote(was), true)
		require.True(t, evalJS[bool](p, `document.getElementById('confirm').open`))
		require.True(t, evalJS[bool](p, `document.getElementById('letters-rows').firstElementChild.dataset.probe === 'kept'`),
			"the list is not redrawn while rows are selected")
		require.True(t, evalJS[bool](p, `document.querySelector('#letters-rows input[data-id="`+letter+`"]').checked`))
		p.click("#confirm-cancel")
		p.do(chromedp.WaitNotVisible(chromedp.ID("confirm")))
		n, err := b.d.DeadLetters().Count()
		require.NoError(t, err)
		require.Equal(t, 4, n)

		// Confirm redrives it: one letter fewer, one event more.
		p.click("#letters-redrive-selected")
		p.do(chromedp.WaitVisible(chromedp.ID("confirm-ok")))
		p.click("#confirm-ok")
		p.waitFor("the result", `document.getElementById('notice').textContent`, "Redrive: 1 dead letter.")
		p.waitFor("the dead count", `document.getElementById('count-dead').textContent`, "3")
		p.waitFor("the letters left", rowIDs("letters"), append([]string{b.gone[1]}, b.lost...))
		n, err = b.d.DeadLetters().Count()
		require.NoError(t, err)
		require.Equal(t, 3, n)
		require.Equal(t, int64(6), b.d.Stats().Ready)
		p.waitFor("the ready count", `document.getElementById('count-ready').textContent`, "6")

		p.click("#tab-events")
		p.do(chromedp.SetValue(chromedp.ID("events-function"), "gone"))
		p.click("#events-apply")
		p.waitFor("the redriven event", `[...document.querySelectorAll('#events-rows tr[data-id]')].map(tr => tr.cells[3].textContent)`,
			[]string{"gone"})
	})

	t.Run("Paging", func(t *testing.T) {
		p := openPage(t, br, url+"?limit=2")
		events, _, err := b.d.Events().Find(context.Background(), dispatcher.EventFilter{}, "", 100)
		require.NoError(t, err)
		var ids []string
		for _, e := range events {
			ids = append(ids, e.ID)
		}
		// Five queued, and one more once Redrive has run: three pages.
		require.Contains(t, []int{5, 6}, len(ids))
		enabled := `['first', 'prev', 'next'].map(b => !document.getElementById('events-' + b).disabled)`
		p.waitFor("page 1", rowIDs("events"), ids[0:2])
		require.Equal(t, []bool{false, false, true}, evalJS[[]bool](p, enabled))
		p.click("#events-next")
		p.waitFor("page 2", rowIDs("events"), ids[2:4])
		p.click("#events-next")
		p.waitFor("page 3", rowIDs("events"), ids[4:])
		require.Equal(t, fmt.Sprintf("page 3, %d queued event", len(ids)-4)+map[bool]string{true: "s"}[len(ids) == 6],
			evalJS[string](p, `document.getElementById('events-page').textContent`))
		p.click("#events-prev")
		p.waitFor("page 2 again", rowIDs("events"), ids[2:4])
		p.click("#events-first")
		p.waitFor("page 1 again", rowIDs("events"), ids[0:2])
		require.Equal(t, []bool{false, false, true}, evalJS[[]bool](p, enabled))
	})

	t.Run("PauseFunction", func(t *testing.T) {
		p := openPage(t, br, url)
		p.click(`#functions-rows button[data-function="orders"][data-verb="pause"]`)
		p.waitFor("the result", `document.getElementById('notice').textContent`, "orders paused.")
		p.waitFor("the paused row", `document.querySelector('#functions-rows tr[data-function="orders"] td.paused').textContent`, "paused")
		fs, err := b.d.Functions().Get("orders")
		require.NoError(t, err)
		require.True(t, fs.Paused)
		p.click(`#functions-rows button[data-function="orders"][data-verb="resume"]`)
		p.waitFor("the result", `document.getElementById('notice').textContent`, "orders resumed.")
		fs, err = b.d.Functions().Get("orders")
		require.NoError(t, err)
		require.False(t, fs.Paused)
	})

	t.Run("CancelMatching", func(t *testing.T) {
		p := openPage(t, br, url)
		p.do(chromedp.SetValue(chromedp.ID("events-function"), "emails"))
		p.click("#events-apply")
		p.waitFor("the events of emails", `document.querySelectorAll('#events-rows tr[data-id]').length`, 2)
		p.click("#events-cancel-matching")
		p.do(chromedp.WaitVisible(chromedp.ID("confirm-ok")))
		require.Equal(t, "Cancel all queued events matching function emails? They will not be sent.",
			evalJS[string](p, `document.getElementById('confirm-text').textContent`))
		p.click("#confirm-ok")
		p.waitFor("the result", `document.getElementById('notice').textContent`, "Cancel: 2 queued events.")
		p.waitFor("the list", `document.querySelectorAll('#events-rows tr[data-id]').length`, 0)
		require.Equal(t, uint64(2), b.d.Stats().Cancelled)
		left, _, err := b.d.Events().Find(context.Background(), dispatcher.EventFilter{Function: "emails"}, "", 10)
		require.NoError(t, err)
		require.Empty(t, left)
	})

	// Last, as it closes the dispatcher: a failing request shows the
	// API's error text.
	t.Run("ErrorBanner", func(t *testing.T) {
		p := openPage(t, br, url)
		p.httpErrors.Store(true)
		p.waitFor("the first refresh", `document.getElementById('last-refresh').textContent !== 'never'`, true)
		require.NoError(t, b.d.Close())
		p.click("#refresh")
		p.waitFor("the error", `document.getElementById('error').hidden ? null : document.getElementById('error-text').textContent`,
			"503: "+dispatcher.ErrClosed.Error())
	})
}

// TestDashboardReadOnly opens the page of a read-only handler: it says so
// and shows no action at all.
func TestDashboardReadOnly(t *testing.T) {
	t.Parallel()
	b := setupDashboard(t)
	url := serveAdmin(t, b.d.AdminHandler(dispatcher.AdminReadOnly()))
	p := openPage(t, startBrowser(t), url)
	p.waitFor("the functions", `document.querySelectorAll('#functions-rows tr[data-function]').length`, 4)
	p.do(chromedp.WaitVisible(chromedp.ID("badge-readonly")))
	// What a viewer could press or tick, in the tabs that have actions.
	visible := `[...document.querySelectorAll('button, input[type=checkbox]')]
		.filter(e => e.checkVisibility() && e.id !== 'auto-refresh')
		.map(e => e.id || e.textContent)`
	nav := []string{"refresh", "tab-events", "tab-letters", "tab-evictions"}
	for _, tab := range []string{"events", "letters"} {
		p.click("#tab-" + tab)
		p.waitFor("the "+tab, `document.querySelectorAll('#`+tab+`-rows tr[data-id]').length`, map[string]int{"events": 5, "letters": 4}[tab])
		want := append(append([]string{}, nav...), tab+"-apply", tab+"-first", tab+"-prev", tab+"-next")
		// A link per id opens the detail panel, which only reads.
		want = append(want, evalJS[[]string](p, rowIDs(tab))...)
		require.ElementsMatch(t, want, evalJS[[]string](p, visible), "in %s", tab)
	}
}
