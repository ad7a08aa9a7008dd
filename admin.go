package dispatcher

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

// EventInfo is a queued event as the admin handler shows it.
type EventInfo struct {
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

// eventInfo is e as the admin handler shows it; the payload only when
// asked for and valid JSON.
func eventInfo(e QueuedEvent, withPayload bool) EventInfo {
	info := EventInfo{
		ID: e.ID, State: string(e.State), Function: e.Function, Qualifier: e.Qualifier, Key: e.Key,
		Attempts: e.Attempts, Enqueued: e.Enqueued, Due: e.Due, Size: e.Size,
	}
	if le := e.LastError; !le.IsZero() {
		info.LastError = fmt.Sprintf("%s (HTTP %d, request %s): %s", le.Code, le.StatusCode, le.RequestID, le.Message)
	}
	if withPayload && len(e.Payload) > 0 && jsonvalid.Valid(e.Payload) {
		info.Payload = e.Payload
	}
	return info
}

// AdminHandler returns an http.Handler with JSON endpoints to watch and
// act on a running dispatcher, for the application to mount behind its own
// authentication: the library never opens a listening socket by itself.
//
//	GET  /stats                      Stats
//	GET  /events?state=&function=&after=&limit=
//	GET  /events/{id}                one queued event, payload included
//	GET  /deadletters?function=&reason=&since=&until=&after=&limit=
//	GET  /deadletters/{id}           one letter
//	POST /deadletters/redrive        {"ids":[...]} or {"filter":{...}} or {"all":true}; "to", "qualifier"
//	POST /deadletters/purge          {"filter":{...}} or {"all":true}
//
// As with dispatchctl, a filter with no field set selects nothing: acting
// on every letter takes {"all":true}, so that a client that drops its
// filter's fields never purges everything by mistake. A request that
// selects nothing, or gives ids with a filter or "all", is answered 400.
//
// Lists return {"items":[...],"next":"<cursor>"}; pass next as after for
// the following page. Times are RFC 3339. After Close, every endpoint
// answers 503 with ErrClosed's text, without reading the file.
func (d *Dispatcher) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range d.adminRoutes() {
		mux.HandleFunc(rt.pattern, rt.handle)
	}
	// One check in front of every route, so that a route added later
	// cannot forget it: after Close nothing reads the file.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.closed.Load() {
			writeError(w, http.StatusServiceUnavailable, ErrClosed.Error())
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// adminRoute is one endpoint of AdminHandler.
type adminRoute struct {
	pattern string // http.ServeMux pattern: method and path
	handle  http.HandlerFunc
}

// adminRoutes is AdminHandler's route table.
func (d *Dispatcher) adminRoutes() []adminRoute {
	return []adminRoute{
		{"GET /stats", d.adminStats},
		{"GET /events", d.adminListEvents},
		{"GET /events/{id}", d.adminGetEvent},
		{"GET /deadletters", d.adminListLetters},
		{"GET /deadletters/{id}", d.adminGetLetter},
		{"POST /deadletters/redrive", d.adminRedrive},
		{"POST /deadletters/purge", d.adminPurge},
	}
}

func (d *Dispatcher) adminStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, d.Stats())
}

func (d *Dispatcher) adminGetEvent(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		writeError(w, http.StatusBadRequest, "id must be a number")
		return
	}
	e, err := d.Events().Get(id)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, eventInfo(e, true))
}

func (d *Dispatcher) adminListLetters(w http.ResponseWriter, r *http.Request) {
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
	items, next, err := d.DeadLetters().Find(r.Context(), f, r.URL.Query().Get("after"), limit)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	if items == nil {
		items = []deadletter.Letter{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items, "next": next})
}

func (d *Dispatcher) adminGetLetter(w http.ResponseWriter, r *http.Request) {
	l, err := d.DeadLetters().Get(r.PathValue("id"))
	if err != nil {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, l)
}

func (d *Dispatcher) adminRedrive(w http.ResponseWriter, r *http.Request) {
	var req struct {
		IDs       []string     `json:"ids"`
		Filter    *adminFilter `json:"filter"`
		All       bool         `json:"all"`
		To        string       `json:"to"`
		Qualifier string       `json:"qualifier"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	o := RedriveOptions{Function: req.To, Qualifier: req.Qualifier}
	var n int
	var err error
	switch filtered := !req.Filter.empty(); {
	case len(req.IDs) > 0 && (filtered || req.All):
		writeError(w, http.StatusBadRequest, `give "ids", or a "filter" or "all", not both`)
		return
	case len(req.IDs) > 0:
		n, err = d.DeadLetters().Redrive(r.Context(), req.IDs, o)
	case filtered || req.All:
		n, err = d.DeadLetters().RedriveMatching(r.Context(), req.Filter.toFilter(), o)
	default:
		writeError(w, http.StatusBadRequest, `nothing selected: give "ids", a "filter" with a field set, or "all": true`)
		return
	}
	if err != nil {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"redriven": n})
}

func (d *Dispatcher) adminPurge(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Filter *adminFilter `json:"filter"`
		All    bool         `json:"all"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if req.Filter.empty() && !req.All {
		writeError(w, http.StatusBadRequest, `nothing selected: give a "filter" with a field set, or "all": true`)
		return
	}
	n, err := d.DeadLetters().Purge(r.Context(), req.Filter.toFilter())
	if err != nil {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"purged": n})
}

func (d *Dispatcher) adminListEvents(w http.ResponseWriter, r *http.Request) {
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
	found, next, err := d.Events().Find(r.Context(), EventFilter{Function: function, State: EventState(state)}, after, limit)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	items := make([]EventInfo, len(found))
	for i, e := range found {
		items[i] = eventInfo(e, false)
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items, "next": next})
}

// adminFilter is LetterFilter as JSON.
type adminFilter struct {
	Function string    `json:"function"`
	Reason   string    `json:"reason"`
	Since    time.Time `json:"since"`
	Until    time.Time `json:"until"`
}

// empty reports whether f selects every letter: absent, or no field set.
func (f *adminFilter) empty() bool {
	return f == nil || f.Function == "" && f.Reason == "" && f.Since.IsZero() && f.Until.IsZero()
}

func (f *adminFilter) toFilter() LetterFilter {
	if f == nil {
		return LetterFilter{}
	}
	return LetterFilter{Function: f.Function, Reason: deadletter.Reason(f.Reason), Since: f.Since, Until: f.Until}
}

func letterFilter(r *http.Request) (LetterFilter, error) {
	q := r.URL.Query()
	f := LetterFilter{Function: q.Get("function"), Reason: deadletter.Reason(q.Get("reason"))}
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

func writeStoreError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, ErrInvalidEvent):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, ErrQueueFull):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, ErrReadOnly), errors.Is(err, store.ErrReadOnly):
		// The dispatcher was opened to look, not to change: a refusal,
		// not a fault of the server.
		writeError(w, http.StatusForbidden, err.Error())
	case errors.Is(err, ErrClosed), errors.Is(err, store.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, err.Error())
	case errors.Is(err, context.Canceled):
		writeError(w, http.StatusRequestTimeout, err.Error())
	default:
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
