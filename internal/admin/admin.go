// Package admin is the dispatcher's admin handler: JSON endpoints to watch
// and act on a running dispatcher, for the application to mount behind its
// own authentication. It speaks HTTP only; what it shows and does comes
// from a Backend, which the root package implements over its inspectors,
// so the handler never sees a *Dispatcher.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/internal/jsonvalid"
	"github.com/lambdadispatch/dispatcher/store"
)

// Backend is what the handler shows and acts on.
type Backend interface {
	// Closed reports whether the dispatcher is closed: then every
	// endpoint answers 503 with ClosedError, without reading the file.
	Closed() bool
	// ClosedError is the text answered after Close.
	ClosedError() string
	// Stats is the snapshot GET /stats answers, as JSON.
	Stats() any
	// Event returns one queued event.
	Event(id string) (QueuedEvent, error)
	// Events returns a page of queued events, and the cursor of the next.
	Events(ctx context.Context, f EventFilter, after string, limit int) ([]QueuedEvent, string, error)
	// Letter returns one dead letter.
	Letter(id string) (deadletter.Letter, error)
	// Letters returns a page of dead letters, and the cursor of the next.
	Letters(ctx context.Context, f LetterFilter, after string, limit int) ([]deadletter.Letter, string, error)
	// Redrive queues the letters ids again, to function (and qualifier)
	// when set; RedriveMatching those f selects; Purge deletes those f
	// selects. Each returns how many.
	Redrive(ctx context.Context, ids []string, function, qualifier string) (int, error)
	RedriveMatching(ctx context.Context, f LetterFilter, function, qualifier string) (int, error)
	Purge(ctx context.Context, f LetterFilter) (int, error)
	// Cancel cancels the queued events ids; CancelMatching those f
	// selects. Each returns how many.
	Cancel(ctx context.Context, ids []string, keepKey bool) (int, error)
	CancelMatching(ctx context.Context, f EventFilter, keepKey bool) (int, error)
	// Evictions returns a page of the eviction ledger, as JSON items, and
	// the cursor of the next.
	Evictions(ctx context.Context, after string, limit int) (any, string, error)
	// Functions returns the figures of every function, as JSON.
	Functions() (any, error)
	// SetPaused pauses or resumes sending to function.
	SetPaused(ctx context.Context, function string, paused bool) error
	// Status maps an error of the calls above to an HTTP status.
	Status(err error) int
}

// QueuedEvent is a queued event as the backend gives it.
type QueuedEvent struct {
	ID, State, Function, Qualifier, Key string
	Attempts                            int
	Enqueued, Due                       time.Time
	LastError                           store.ErrorInfo
	Payload                             []byte
	Size                                int
}

// EventFilter selects queued events: by state ("ready", "scheduled",
// "leased") and function; empty fields select all.
type EventFilter struct {
	State    string `json:"state"`
	Function string `json:"function"`
}

// LetterFilter selects dead letters; empty fields select all.
type LetterFilter struct {
	Function string    `json:"function"`
	Reason   string    `json:"reason"`
	Since    time.Time `json:"since"`
	Until    time.Time `json:"until"`
}

// empty reports whether f selects every letter: absent, or no field set.
func (f *LetterFilter) empty() bool {
	return f == nil || f.Function == "" && f.Reason == "" && f.Since.IsZero() && f.Until.IsZero()
}

func (f *LetterFilter) value() LetterFilter {
	if f == nil {
		return LetterFilter{}
	}
	return *f
}

// Event is a queued event as the handler shows it.
type Event struct {
	ID        string          `json:"id"`
	State     string          `json:"state"` // ready, scheduled or leased
	Function  string          `json:"function"`
	Qualifier string          `json:"qualifier,omitempty"`
	Key       string          `json:"key,omitempty"`
	Attempts  int             `json:"attempts"`
	Enqueued  time.Time       `json:"enqueued"`
	Due       time.Time       `json:"due"`
	LastError string          `json:"lastError,omitempty"`
	Payload   json.RawMessage `json:"payload,omitempty"`
	Size      int             `json:"size"`
}

// show is e as the handler shows it; the payload only when asked for and
// valid JSON.
func show(e QueuedEvent, withPayload bool) Event {
	info := Event{
		ID: e.ID, State: e.State, Function: e.Function, Qualifier: e.Qualifier, Key: e.Key,
		Attempts: e.Attempts, Enqueued: e.Enqueued, Due: e.Due, Size: e.Size,
	}
	info.LastError = e.LastError.String()
	if withPayload && len(e.Payload) > 0 && jsonvalid.Valid(e.Payload) {
		info.Payload = e.Payload
	}
	return info
}

// Handler returns the handler of b; see the root's AdminHandler for the
// endpoints.
func Handler(b Backend) http.Handler {
	mux := http.NewServeMux()
	for _, rt := range routes(handlers{b}) {
		mux.HandleFunc(rt.pattern, rt.handle)
	}
	// One check in front of every route, so that a route added later
	// cannot forget it: after Close nothing reads the file.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b.Closed() {
			writeError(w, http.StatusServiceUnavailable, b.ClosedError())
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// Patterns lists the handler's routes, so that a test can call every one,
// including routes added after it was written.
func Patterns() []string {
	var ps []string
	for _, rt := range routes(handlers{}) {
		ps = append(ps, rt.pattern)
	}
	return ps
}

// route is one endpoint.
type route struct {
	pattern string // http.ServeMux pattern: method and path
	handle  http.HandlerFunc
}

type handlers struct{ b Backend }

// routes is the route table.
func routes(h handlers) []route {
	return []route{
		{"GET /stats", h.stats},
		{"GET /events", h.listEvents},
		{"GET /events/{id}", h.getEvent},
		{"GET /deadletters", h.listLetters},
		{"GET /deadletters/{id}", h.getLetter},
		{"POST /deadletters/redrive", h.redrive},
		{"POST /deadletters/purge", h.purge},
		{"POST /events/cancel", h.cancel},
		{"GET /evictions", h.evictions},
		{"GET /functions", h.functions},
		{"POST /functions/{function}/pause", h.pause(true)},
		{"POST /functions/{function}/resume", h.pause(false)},
	}
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
	filtered := req.Filter != nil && (req.Filter.State != "" || req.Filter.Function != "")
	var n int
	var err error
	switch {
	case len(req.IDs) > 0 && (filtered || req.All):
		writeError(w, http.StatusBadRequest, `give "ids", or a "filter" or "all", not both`)
		return
	case len(req.IDs) > 0:
		n, err = h.b.Cancel(r.Context(), req.IDs, req.KeepKey)
	case filtered || req.All:
		var f EventFilter
		if req.Filter != nil {
			f = *req.Filter
		}
		switch f.State {
		case "", "ready", "scheduled", "leased":
		default:
			writeError(w, http.StatusBadRequest, "state must be ready, scheduled or leased")
			return
		}
		n, err = h.b.CancelMatching(r.Context(), f, req.KeepKey)
	default:
		writeError(w, http.StatusBadRequest, `nothing selected: give "ids", a "filter" with a field set, or "all": true`)
		return
	}
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"cancelled": n})
}

func (h handlers) evictions(w http.ResponseWriter, r *http.Request) {
	limit, err := pageLimit(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	after := r.URL.Query().Get("after")
	if after != "" {
		if _, err := strconv.ParseUint(after, 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, "after must be an event id")
			return
		}
	}
	items, next, err := h.b.Evictions(r.Context(), after, limit)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items, "next": next})
}

func (h handlers) functions(w http.ResponseWriter, r *http.Request) {
	fs, err := h.b.Functions()
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": fs})
}

// pause answers {"function": name, "paused": paused} once the change is
// durable.
func (h handlers) pause(paused bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		fn := r.PathValue("function")
		if err := h.b.SetPaused(r.Context(), fn, paused); err != nil {
			h.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"function": fn, "paused": paused})
	}
}

func (h handlers) stats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.b.Stats())
}

func (h handlers) getEvent(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		writeError(w, http.StatusBadRequest, "id must be a number")
		return
	}
	e, err := h.b.Event(id)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, show(e, true))
}

func (h handlers) listLetters(w http.ResponseWriter, r *http.Request) {
	f, err := letterFilter(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	limit, err := pageLimit(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	items, next, err := h.b.Letters(r.Context(), f, r.URL.Query().Get("after"), limit)
	if err != nil {
		h.fail(w, err)
		return
	}
	if items == nil {
		items = []deadletter.Letter{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items, "next": next})
}

func (h handlers) getLetter(w http.ResponseWriter, r *http.Request) {
	l, err := h.b.Letter(r.PathValue("id"))
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, l)
}

func (h handlers) redrive(w http.ResponseWriter, r *http.Request) {
	var req struct {
		IDs       []string      `json:"ids"`
		Filter    *LetterFilter `json:"filter"`
		All       bool          `json:"all"`
		To        string        `json:"to"`
		Qualifier string        `json:"qualifier"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	var n int
	var err error
	switch filtered := !req.Filter.empty(); {
	case len(req.IDs) > 0 && (filtered || req.All):
		writeError(w, http.StatusBadRequest, `give "ids", or a "filter" or "all", not both`)
		return
	case len(req.IDs) > 0:
		n, err = h.b.Redrive(r.Context(), req.IDs, req.To, req.Qualifier)
	case filtered || req.All:
		n, err = h.b.RedriveMatching(r.Context(), req.Filter.value(), req.To, req.Qualifier)
	default:
		writeError(w, http.StatusBadRequest, `nothing selected: give "ids", a "filter" with a field set, or "all": true`)
		return
	}
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"redriven": n})
}

func (h handlers) purge(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Filter *LetterFilter `json:"filter"`
		All    bool          `json:"all"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if req.Filter.empty() && !req.All {
		writeError(w, http.StatusBadRequest, `nothing selected: give a "filter" with a field set, or "all": true`)
		return
	}
	n, err := h.b.Purge(r.Context(), req.Filter.value())
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"purged": n})
}

func (h handlers) listEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state, function := q.Get("state"), q.Get("function")
	switch state {
	case "", "ready", "scheduled", "leased":
	default:
		writeError(w, http.StatusBadRequest, "state must be ready, scheduled or leased")
		return
	}
	limit, err := pageLimit(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	after := q.Get("after")
	if after != "" {
		if _, err := strconv.ParseUint(after, 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, "after must be an event id")
			return
		}
	}
	found, next, err := h.b.Events(r.Context(), EventFilter{State: state, Function: function}, after, limit)
	if err != nil {
		h.fail(w, err)
		return
	}
	items := make([]Event, len(found))
	for i, e := range found {
		items[i] = show(e, false)
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items, "next": next})
}

func letterFilter(r *http.Request) (LetterFilter, error) {
	q := r.URL.Query()
	f := LetterFilter{Function: q.Get("function"), Reason: q.Get("reason")}
	for name, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := q.Get(name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return f, fmt.Errorf("%s must be an RFC 3339 time", name)
			}
			*dst = t
		}
	}
	return f, nil
}

func pageLimit(r *http.Request) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		return 0, errors.New("limit must be 1 to 1000")
	}
	return n, nil
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad JSON body: "+err.Error())
		return false
	}
	return true
}

func (h handlers) fail(w http.ResponseWriter, err error) {
	writeError(w, h.b.Status(err), err.Error())
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
