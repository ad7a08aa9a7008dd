package dispatcher

import (
	"context"
	"errors"
	"net/http"

	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/internal/admin"
	"github.com/lambdadispatch/dispatcher/store"
)

// EventInfo is a queued event as the admin handler shows it.
type EventInfo = admin.Event

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
//	POST /events/cancel              {"ids":[...]} or {"filter":{"function":..,"state":..}} or {"all":true}; "keepKey"
//	GET  /evictions?after=&limit=    the eviction ledger (WithFullPolicy(DropOldest))
//	GET  /functions                  every function's figures (FunctionStats)
//	POST /functions/{name}/pause     pause sending to a function, durably
//	POST /functions/{name}/resume    send to it again
//
// As with dispatchctl, a filter with no field set selects nothing: acting
// on every letter takes {"all":true}, so that a client that drops its
// filter's fields never purges everything by mistake. A request that
// selects nothing, or gives ids with a filter or "all", is answered 400.
//
// Lists return {"items":[...],"next":"<cursor>"}; pass next as after for
// the following page. Times are RFC 3339. After Close, every endpoint
// answers 503 with ErrClosed's text, without reading the file.
func (d *Dispatcher) AdminHandler() http.Handler { return admin.Handler(adminBackend{d}) }

// adminBackend is the dispatcher as the admin handler sees it: its
// inspectors, and its errors as HTTP statuses.
type adminBackend struct{ d *Dispatcher }

func (b adminBackend) Closed() bool        { return b.d.closed.Load() }
func (b adminBackend) ClosedError() string { return ErrClosed.Error() }
func (b adminBackend) Stats() any          { return b.d.Stats() }

func (b adminBackend) Event(id string) (admin.QueuedEvent, error) {
	e, err := b.d.Events().Get(id)
	return adminEvent(e), err
}

func (b adminBackend) Events(ctx context.Context, f admin.EventFilter, after string, limit int) ([]admin.QueuedEvent, string, error) {
	found, next, err := b.d.Events().Find(ctx, EventFilter{Function: f.Function, State: EventState(f.State)}, after, limit)
	out := make([]admin.QueuedEvent, len(found))
	for i, e := range found {
		out[i] = adminEvent(e)
	}
	return out, next, err
}

func adminEvent(e QueuedEvent) admin.QueuedEvent {
	return admin.QueuedEvent{
		ID: e.ID, State: string(e.State), Function: e.Function, Qualifier: e.Qualifier, Key: e.Key,
		Attempts: e.Attempts, Enqueued: e.Enqueued, Due: e.Due, LastError: e.LastError, Payload: e.Payload, Size: e.Size,
	}
}

func (b adminBackend) Letter(id string) (deadletter.Letter, error) { return b.d.DeadLetters().Get(id) }

func (b adminBackend) Letters(ctx context.Context, f admin.LetterFilter, after string, limit int) ([]deadletter.Letter, string, error) {
	return b.d.DeadLetters().Find(ctx, letterFilter(f), after, limit)
}

func (b adminBackend) Redrive(ctx context.Context, ids []string, function, qualifier string) (int, error) {
	return b.d.DeadLetters().Redrive(ctx, ids, RedriveOptions{Function: function, Qualifier: qualifier})
}

func (b adminBackend) RedriveMatching(ctx context.Context, f admin.LetterFilter, function, qualifier string) (int, error) {
	return b.d.DeadLetters().RedriveMatching(ctx, letterFilter(f), RedriveOptions{Function: function, Qualifier: qualifier})
}

func (b adminBackend) Purge(ctx context.Context, f admin.LetterFilter) (int, error) {
	return b.d.DeadLetters().Purge(ctx, letterFilter(f))
}

func (b adminBackend) Functions() (any, error) { return b.d.Functions().All() }

func (b adminBackend) Cancel(ctx context.Context, ids []string, keepKey bool) (int, error) {
	return b.d.Events().Cancel(ctx, ids, CancelOptions{KeepKey: keepKey})
}

func (b adminBackend) CancelMatching(ctx context.Context, f admin.EventFilter, keepKey bool) (int, error) {
	return b.d.Events().CancelMatching(ctx, EventFilter{Function: f.Function, State: EventState(f.State)}, CancelOptions{KeepKey: keepKey})
}

func (b adminBackend) Evictions(ctx context.Context, after string, limit int) (any, string, error) {
	evs, next, err := b.d.Events().Evictions(ctx, after, limit)
	if evs == nil {
		evs = []Eviction{}
	}
	return evs, next, err
}

func (b adminBackend) SetPaused(ctx context.Context, function string, paused bool) error {
	return b.d.Functions().setPaused(ctx, function, paused)
}

func letterFilter(f admin.LetterFilter) LetterFilter {
	return LetterFilter{Function: f.Function, Reason: deadletter.Reason(f.Reason), Since: f.Since, Until: f.Until}
}

// Status maps the dispatcher's errors to HTTP statuses.
func (adminBackend) Status(err error) int {
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrInvalidEvent):
		return http.StatusBadRequest
	case errors.Is(err, ErrQueueFull):
		return http.StatusConflict
	case errors.Is(err, ErrReadOnly), errors.Is(err, store.ErrReadOnly):
		// The dispatcher was opened to look, not to change: a refusal,
		// not a fault of the server.
		return http.StatusForbidden
	case errors.Is(err, ErrClosed), errors.Is(err, store.ErrClosed):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled):
		return http.StatusRequestTimeout
	}
	return http.StatusInternalServerError
}
