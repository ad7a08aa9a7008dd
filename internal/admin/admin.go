// Package admin is the dispatcher's admin handler: a JSON API and an HTML
// dashboard to watch and act on a running dispatcher, for the application
// to mount behind its own authentication. It speaks HTTP only; what it
// shows and does comes from a Backend, which the root package implements
// over its inspectors, so the handler never sees a *Dispatcher. The JSON
// shapes are package wire's, which dispatchctl prints too.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lambdadispatch/dispatcher/internal/wire"
	"github.com/lambdadispatch/dispatcher/retry"
)

// Backend is what the handler shows and acts on.
type Backend interface {
	// Closed reports whether the dispatcher is closed: then every
	// endpoint answers 503 with ClosedError, without reading the file.
	Closed() bool
	// ClosedError is the text answered after Close.
	ClosedError() string
	// Stats is the snapshot GET /stats answers.
	Stats() (wire.Stats, error)
	// Rates is what happened in each recent interval.
	Rates() wire.Rates
	// Event returns one queued event, payload included (as base64 when
	// asked).
	Event(id string, base64 bool) (wire.Event, error)
	// Events returns a page of queued events, and the cursor of the next;
	// their payloads too when p says so.
	Events(ctx context.Context, f EventFilter, after string, limit int, p Payloads) ([]wire.Event, string, error)
	// Letter returns one dead letter, payload included.
	Letter(id string, base64 bool) (wire.Letter, error)
	// Letters returns a page of dead letters, and the cursor of the next;
	// their payloads too when p says so.
	Letters(ctx context.Context, f LetterFilter, after string, limit int, p Payloads) ([]wire.Letter, string, error)
	// Redrive queues the letters ids again, to function (and qualifier)
	// when set; RedriveMatching those f selects. Purge deletes the
	// letters ids; PurgeMatching those f selects. Each returns how many.
	Redrive(ctx context.Context, ids []string, function, qualifier string) (int, error)
	RedriveMatching(ctx context.Context, f LetterFilter, function, qualifier string) (int, error)
	Purge(ctx context.Context, ids []string) (int, error)
	PurgeMatching(ctx context.Context, f LetterFilter) (int, error)
	// Cancel cancels the queued events ids; CancelMatching those f
	// selects. Each returns how many.
	Cancel(ctx context.Context, ids []string, keepKey bool) (int, error)
	CancelMatching(ctx context.Context, f EventFilter, keepKey bool) (int, error)
	// Evictions returns a page of the eviction ledger and the cursor of
	// the next.
	Evictions(ctx context.Context, after string, limit int) ([]wire.Eviction, string, error)
	// Functions returns the figures of every function.
	Functions() ([]wire.Function, error)
	// SetPaused pauses or resumes sending to function.
	SetPaused(ctx context.Context, function string, paused bool) error
	// Status maps an error of the calls above to an HTTP status.
	Status(err error) int
}

// Payloads says whether a list carries its items' payloads (?payload=),
// and how: lists leave them out unless asked, to stay small.
type Payloads struct{ With, Base64 bool }

// payloads reads ?payload=: none, json or base64.
func payloads(r *http.Request) (Payloads, error) {
	switch v := r.URL.Query().Get("payload"); v {
	case "":
		return Payloads{}, nil
	case "json":
		return Payloads{With: true}, nil
	case "base64":
		return Payloads{With: true, Base64: true}, nil
	default:
		return Payloads{}, fmt.Errorf("payload %q: want json or base64", v)
	}
}

// EventFilter selects queued events; zero fields select all.
type EventFilter struct {
	State    string    `json:"state"` // ready, scheduled or leased
	Function string    `json:"function"`
	Key      string    `json:"key"`
	Since    time.Time `json:"since"` // enqueued at or after
	Until    time.Time `json:"until"` // enqueued before
}

func (f EventFilter) empty() bool { return f == EventFilter{} }

func (f EventFilter) check() error {
	switch f.State {
	case "", "ready", "scheduled", "leased":
		return nil
	}
	return fmt.Errorf("unknown state %q: want ready, scheduled or leased", f.State)
}

// LetterFilter selects dead letters; zero fields select all.
type LetterFilter struct {
	Function string
	Reason   retry.Reason
	Since    time.Time // dead-lettered at or after
	Until    time.Time // dead-lettered before
}

func (f LetterFilter) empty() bool { return f == LetterFilter{} }

// letterFilterJSON is LetterFilter in a request body: the reason by its
// identifier.
type letterFilterJSON struct {
	Function string    `json:"function"`
	Reason   string    `json:"reason"`
	Since    time.Time `json:"since"`
	Until    time.Time `json:"until"`
}

func (j *letterFilterJSON) filter() (LetterFilter, error) {
	if j == nil {
		return LetterFilter{}, nil
	}
	r, err := wire.ParseReason(j.Reason)
	return LetterFilter{Function: j.Function, Reason: r, Since: j.Since, Until: j.Until}, err
}

// Options shape the handler.
type Options struct {
	// ReadOnly refuses every request that would change something (403),
	// and the dashboard shows no action.
	ReadOnly bool
}

// Handler returns the handler of b; see the root's AdminHandler for the
// endpoints.
func Handler(b Backend, o Options) http.Handler {
	mux := http.NewServeMux()
	h := handlers{b: b, o: o}
	for _, rt := range h.routes() {
		mux.HandleFunc(rt.pattern, rt.handle)
	}
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		// One check in front of every route, so that a route added later
		// cannot forget it: after Close nothing reads the file.
		if b.Closed() {
			writeError(w, http.StatusServiceUnavailable, b.ClosedError())
			return
		}
		if !routeFound(w, r, mux) {
			return
		}
		if o.ReadOnly && !safeMethod(r.Method) {
			writeError(w, http.StatusForbidden, "admin handler is read-only")
			return
		}
		mux.ServeHTTP(w, r)
	})
	// A browser is a client now: a page of another site must not be able
	// to make a viewer's browser redrive or purge. Requests without the
	// browser's Sec-Fetch-Site and Origin headers (curl, dispatchctl) pass.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, "cross-origin request refused")
	}))
	return cop.Handler(inner)
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// routeFound answers 404 or 405 in JSON, as the rest of the API does,
// where the mux would answer in plain text; it reports whether a route
// takes r.
func routeFound(w http.ResponseWriter, r *http.Request, mux *http.ServeMux) bool {
	patternFor := func(method string) string {
		probe := r.Clone(r.Context())
		probe.Method = method
		_, p := mux.Handler(probe)
		return p
	}
	own := patternFor(r.Method)
	patterns := map[string]string{}
	literal := false
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		if p := patternFor(m); p != "" {
			patterns[m] = p
			literal = literal || !strings.Contains(p, "{")
		}
	}
	// GET /deadletters/redrive would match GET /deadletters/{id}: a path
	// that is an action of its own is that action's, whatever route a
	// wildcard offers.
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		if p, ok := patterns[m]; ok && !(literal && strings.Contains(p, "{")) {
			allow = append(allow, m)
		}
	}
	if literal && strings.Contains(own, "{") {
		own = ""
	}
	if own != "" {
		return true
	}
	if len(allow) == 0 {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
		return false
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: method not allowed; allowed: %s", r.Method, r.URL.Path, strings.Join(allow, ", ")))
	return false
}

// Patterns lists the handler's routes, so that a test can call every one,
// including routes added after it was written.
func Patterns() []string {
	var ps []string
	for _, rt := range (handlers{}).routes() {
		ps = append(ps, rt.pattern)
	}
	return ps
}

// route is one endpoint.
type route struct {
	pattern string // http.ServeMux pattern: method and path
	handle  http.HandlerFunc
}

type handlers struct {
	b Backend
	o Options
}

// routes is the route table.
func (h handlers) routes() []route {
	return append([]route{
		{"GET /stats", h.stats},
		{"GET /rates", h.rates},
		{"GET /events", h.listEvents},
		{"GET /events/{id}", h.getEvent},
		{"POST /events/cancel", h.cancel},
		{"GET /deadletters", h.listLetters},
		{"GET /deadletters/{id}", h.getLetter},
		{"POST /deadletters/redrive", h.redrive},
		{"POST /deadletters/purge", h.purge},
		{"GET /evictions", h.evictions},
		{"GET /functions", h.functions},
		{"GET /functions/{function}", h.function},
		{"POST /functions/{function}/pause", h.pause(true)},
		{"POST /functions/{function}/resume", h.pause(false)},
	}, dashboardRoutes(h.o.ReadOnly)...)
}

func (h handlers) stats(w http.ResponseWriter, r *http.Request) {
	if !query(w, r) {
		return
	}
	s, err := h.b.Stats()
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s)
}

func (h handlers) rates(w http.ResponseWriter, r *http.Request) {
	if !query(w, r) {
		return
	}
	writeJSON(w, http.StatusOK, h.b.Rates())
}

func (h handlers) listEvents(w http.ResponseWriter, r *http.Request) {
	if !query(w, r, "state", "function", "key", "since", "until", "after", "limit", "payload") {
		return
	}
	q := r.URL.Query()
	f := EventFilter{State: q.Get("state"), Function: q.Get("function"), Key: q.Get("key")}
	lp, err := listParams(r)
	if err == nil {
		err = f.check()
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	f.Since, f.Until = lp.since, lp.until
	items, next, err := h.b.Events(r.Context(), f, lp.after, lp.limit, lp.payloads)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.Page[wire.Event]{Items: nonNil(items), Next: next})
}

func (h handlers) getEvent(w http.ResponseWriter, r *http.Request) {
	id, b64, ok := one(w, r)
	if !ok {
		return
	}
	e, err := h.b.Event(id, b64)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, e)
}

func (h handlers) cancel(w http.ResponseWriter, r *http.Request) {
	var req struct {
		IDs     []string     `json:"ids"`
		Filter  *EventFilter `json:"filter"`
		All     bool         `json:"all"`
		KeepKey bool         `json:"keepKey"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	var f EventFilter
	if req.Filter != nil {
		f = *req.Filter
	}
	if err := f.check(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !selection(w, len(req.IDs) > 0, !f.empty(), req.All) {
		return
	}
	var n int
	var err error
	if len(req.IDs) > 0 {
		n, err = h.b.Cancel(r.Context(), req.IDs, req.KeepKey)
	} else {
		n, err = h.b.CancelMatching(r.Context(), f, req.KeepKey)
	}
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.Cancelled{Cancelled: n})
}

func (h handlers) listLetters(w http.ResponseWriter, r *http.Request) {
	if !query(w, r, "function", "reason", "since", "until", "after", "limit", "payload") {
		return
	}
	q := r.URL.Query()
	f := LetterFilter{Function: q.Get("function")}
	lp, err := listParams(r)
	if err == nil {
		f.Reason, err = wire.ParseReason(q.Get("reason"))
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	f.Since, f.Until = lp.since, lp.until
	items, next, err := h.b.Letters(r.Context(), f, lp.after, lp.limit, lp.payloads)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.Page[wire.Letter]{Items: nonNil(items), Next: next})
}

func (h handlers) getLetter(w http.ResponseWriter, r *http.Request) {
	id, b64, ok := one(w, r)
	if !ok {
		return
	}
	l, err := h.b.Letter(id, b64)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, l)
}

func (h handlers) redrive(w http.ResponseWriter, r *http.Request) {
	var req struct {
		IDs       []string          `json:"ids"`
		Filter    *letterFilterJSON `json:"filter"`
		All       bool              `json:"all"`
		To        string            `json:"to"`
		Qualifier string            `json:"qualifier"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	f, err := req.Filter.filter()
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !selection(w, len(req.IDs) > 0, !f.empty(), req.All) {
		return
	}
	var n int
	if len(req.IDs) > 0 {
		n, err = h.b.Redrive(r.Context(), req.IDs, req.To, req.Qualifier)
	} else {
		n, err = h.b.RedriveMatching(r.Context(), f, req.To, req.Qualifier)
	}
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.Redriven{Redriven: n})
}

func (h handlers) purge(w http.ResponseWriter, r *http.Request) {
	var req struct {
		IDs    []string          `json:"ids"`
		Filter *letterFilterJSON `json:"filter"`
		All    bool              `json:"all"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	f, err := req.Filter.filter()
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !selection(w, len(req.IDs) > 0, !f.empty(), req.All) {
		return
	}
	var n int
	if len(req.IDs) > 0 {
		n, err = h.b.Purge(r.Context(), req.IDs)
	} else {
		n, err = h.b.PurgeMatching(r.Context(), f)
	}
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.Purged{Purged: n})
}

func (h handlers) evictions(w http.ResponseWriter, r *http.Request) {
	if !query(w, r, "after", "limit") {
		return
	}
	after, limit, err := page(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	items, next, err := h.b.Evictions(r.Context(), after, limit)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.Page[wire.Eviction]{Items: nonNil(items), Next: next})
}

func (h handlers) functions(w http.ResponseWriter, r *http.Request) {
	if !query(w, r) {
		return
	}
	fs, err := h.b.Functions()
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.Page[wire.Function]{Items: nonNil(fs)})
}

func (h handlers) function(w http.ResponseWriter, r *http.Request) {
	if !query(w, r) {
		return
	}
	fs, err := h.b.Functions()
	if err != nil {
		h.fail(w, err)
		return
	}
	name := r.PathValue("function")
	for _, f := range fs {
		if f.Function == name {
			writeJSON(w, http.StatusOK, f)
			return
		}
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("no function %q: none has events queued, is paused, or was sent to since Open", name))
}

// pause answers {"function": name, "paused": paused} once the change is
// durable.
func (h handlers) pause(paused bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !query(w, r) {
			return
		}
		fn := r.PathValue("function")
		if err := h.b.SetPaused(r.Context(), fn, paused); err != nil {
			h.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, wire.Paused{Function: fn, Paused: paused})
	}
}

// query refuses a request with a query parameter not in allowed, or one
// given twice: a misspelt filter must not widen what a list shows.
func query(w http.ResponseWriter, r *http.Request, allowed ...string) bool {
	for k, vs := range r.URL.Query() {
		known := false
		for _, a := range allowed {
			known = known || k == a
		}
		switch {
		case !known && len(allowed) == 0:
			writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown parameter %q: this endpoint takes none", k))
			return false
		case !known:
			writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown parameter %q: want %s", k, strings.Join(allowed, ", ")))
			return false
		case len(vs) > 1:
			writeError(w, http.StatusBadRequest, fmt.Sprintf("parameter %q given %d times", k, len(vs)))
			return false
		}
	}
	return true
}

// one reads the id and payload encoding of a request for one item.
func one(w http.ResponseWriter, r *http.Request) (id string, base64, ok bool) {
	if !query(w, r, "payload") {
		return "", false, false
	}
	id = r.PathValue("id")
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("id %q: want a number", id))
		return "", false, false
	}
	pl, err := payloads(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return "", false, false
	}
	return id, pl.Base64, true
}

// selection checks a request body selects one way: ids, or a filter or
// "all". As with dispatchctl, a filter with no field set selects nothing,
// so that a client that drops its filter's fields never acts on
// everything by mistake.
func selection(w http.ResponseWriter, ids, filtered, all bool) bool {
	switch {
	case ids && (filtered || all):
		writeError(w, http.StatusBadRequest, `give "ids", or a "filter" or "all", not both`)
		return false
	case !ids && !filtered && !all:
		writeError(w, http.StatusBadRequest, `nothing selected: give "ids", a "filter" with a field set, or "all": true`)
		return false
	}
	return true
}

// listed is what both lists read besides their filter: the page, the
// span of times, and whether payloads come along.
type listed struct {
	after        string
	limit        int
	since, until time.Time
	payloads     Payloads
}

// listParams reads them, the first bad one failing.
func listParams(r *http.Request) (listed, error) {
	var lp listed
	var err error
	if lp.payloads, err = payloads(r); err != nil {
		return lp, err
	}
	if lp.after, lp.limit, err = page(r); err != nil {
		return lp, err
	}
	lp.since, lp.until, err = span(r)
	return lp, err
}

// page reads the paging parameters: the cursor and the page size.
func page(r *http.Request) (after string, limit int, err error) {
	q := r.URL.Query()
	after = q.Get("after")
	if after != "" {
		if _, err := strconv.ParseUint(after, 10, 64); err != nil {
			return "", 0, fmt.Errorf("after %q: want an id", after)
		}
	}
	limit = 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return "", 0, fmt.Errorf("limit %q: want 1 to 1000", v)
		}
		limit = n
	}
	return after, limit, nil
}

// span reads since and until.
func span(r *http.Request) (since, until time.Time, err error) {
	q := r.URL.Query()
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"since", &since}, {"until", &until}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return since, until, fmt.Errorf("%s %q: want an RFC 3339 time", p.name, v)
			}
			*p.dst = t
		}
	}
	return since, until, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if !query(w, r) {
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad JSON body: "+err.Error())
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "bad JSON body: more than one value")
		return false
	}
	return true
}

func (h handlers) fail(w http.ResponseWriter, err error) {
	status := h.b.Status(err)
	msg := err.Error()
	if errors.Is(err, context.Canceled) {
		msg = "request cancelled"
	}
	writeError(w, status, msg)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, wire.Error{Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
