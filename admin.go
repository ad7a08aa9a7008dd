package dispatcher

import (
	"context"
	"errors"
	"net/http"
	"os"

	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/internal/admin"
	"github.com/lambdadispatch/dispatcher/internal/wire"
	"github.com/lambdadispatch/dispatcher/store"
)

// EventInfo is a queued event as the admin handler shows it (GET
// /events/{id}), payload included.
type EventInfo = wire.Event

// AdminOption shapes the admin handler.
type AdminOption func(*admin.Options)

// AdminReadOnly makes a handler for viewers: every request that would
// change something answers 403, and the dashboard shows no action.
func AdminReadOnly() AdminOption { return func(o *admin.Options) { o.ReadOnly = true } }

// AdminHandler returns an http.Handler that serves an HTML dashboard at
// its root and a JSON API beside it, to watch and act on a running
// dispatcher. The application mounts it behind its own authentication,
// for example at /admin/ with http.StripPrefix("/admin", d.AdminHandler()):
// the library never opens a listening socket by itself.
//
//	GET  /                           the dashboard (HTML; its assets are embedded)
//	GET  /stats                      Stats, and the letters held and file size
//	GET  /rates                      counts per 10 s over the last 15 minutes
//	GET  /events?state=&function=&key=&since=&until=&after=&limit=&payload=
//	GET  /events/{id}?payload=base64 one queued event, payload included
//	POST /events/cancel              {"ids":[...]} | {"filter":{...}} | {"all":true}; "keepKey"
//	GET  /deadletters?function=&reason=&since=&until=&after=&limit=&payload=
//	GET  /deadletters/{id}?payload=base64
//	POST /deadletters/redrive        {"ids":[...]} | {"filter":{...}} | {"all":true}; "to", "qualifier"
//	POST /deadletters/purge          {"ids":[...]} | {"filter":{...}} | {"all":true}
//	GET  /evictions?after=&limit=    the eviction ledger (WithFullPolicy(DropOldest))
//	GET  /functions                  every function's figures (FunctionStats)
//	GET  /functions/{name}           one function's
//	POST /functions/{name}/pause     pause sending to a function, durably
//	POST /functions/{name}/resume    send to it again
//
// The JSON is the same dispatchctl --json prints: camelCase names, times
// in RFC 3339, reasons as identifiers ("retries-exhausted"), and payloads
// as JSON when they are JSON, else base64 with "payloadEncoding":"base64".
// Lists answer {"items":[...],"next":"<cursor>"}; pass next as after for
// the following page. Errors answer {"error":"..."}: 400 for bad input,
// including an unknown query parameter or filter value, 404 for an
// unknown id or path, 405 for a wrong method, 403 for a change asked of a
// read-only handler (AdminReadOnly) or dispatcher (WithReadOnly), and 503
// after Close, without reading the file.
//
// A filter with no field set selects nothing: acting on every letter
// takes {"all":true}, so that a client that drops its filter's fields
// never purges everything by mistake.
//
// State-changing requests that a browser marks as cross-site are refused
// (net/http's CrossOriginProtection), so another site's page cannot make
// an operator's browser act; clients that are not browsers are not
// affected. The README has the API's table and examples.
func (d *Dispatcher) AdminHandler(opts ...AdminOption) http.Handler {
	var o admin.Options
	for _, opt := range opts {
		opt(&o)
	}
	return admin.Handler(adminBackend{d}, o)
}

// adminBackend is the dispatcher as the admin handler sees it: its
// inspectors, and its errors as HTTP statuses.
type adminBackend struct{ d *Dispatcher }

func (b adminBackend) Closed() bool        { return b.d.closed.Load() }
func (b adminBackend) ClosedError() string { return ErrClosed.Error() }
func (b adminBackend) Rates() wire.Rates   { return b.d.rates.rates(b.d.rateSample()) }

func (b adminBackend) Stats() (wire.Stats, error) {
	s := b.d.Stats()
	dead, err := b.d.DeadLetters().Count()
	if err != nil {
		return wire.Stats{}, err
	}
	w := wire.Stats{
		Ready: s.Ready, Scheduled: s.Scheduled, Leased: s.Leased, Queued: s.Queued(), Bytes: s.Bytes, Corrupt: s.Corrupt,
		DeadLetters: dead, Keys: s.Keys,
		Enqueued: s.Enqueued, Delivered: s.Delivered, Retried: s.Retried, DeadLettered: s.DeadLettered,
		DeadLetteredBy: map[string]uint64{}, Recovered: s.Recovered, Cancelled: s.Cancelled, Evicted: s.Evicted, Commits: s.Commits,
		Throttled: s.Throttled, InFlightLimit: s.InFlightLimit, Paused: s.Paused, Running: s.Running,
		DuplicatesRefused: s.DuplicatesRefused, DuplicatesSkipped: s.DuplicatesSkipped, KeysSwept: s.KeysSwept, KeysEvicted: s.KeysEvicted,
		Shared: wire.Shared{
			Claims: s.Shared.Claims, Waits: s.Shared.Waits, Lost: s.Shared.Lost, Unconfirmed: s.Shared.Unconfirmed,
			Unavailable: s.Shared.Unavailable, MarksSkipped: s.Shared.MarksSkipped,
		},
		Functions: wireFunctions(s.Functions),
	}
	for r, n := range s.DeadLetteredBy {
		w.DeadLetteredBy[wire.ReasonID(r)] = n
	}
	if fi, err := os.Stat(b.d.st.Path()); err == nil {
		w.FileSize = fi.Size()
	}
	return w, nil
}

func wireFunctions(fs []FunctionStats) []wire.Function {
	out := make([]wire.Function, len(fs))
	for i, f := range fs {
		out[i] = wire.Function{
			Function: f.Function, Paused: f.Paused, Ready: f.Ready, Scheduled: f.Scheduled, InFlight: f.InFlight,
			Limit: f.Limit, Delivered: f.Delivered, DeadLettered: f.DeadLettered, Throttled: f.Throttled,
			MaxInFlight: f.Configured.MaxInFlight, PerSecond: f.Configured.PerSecond,
		}
	}
	return out
}

func (b adminBackend) Event(id string, base64 bool) (wire.Event, error) {
	e, err := b.d.Events().Get(id)
	if err != nil {
		return wire.Event{}, err
	}
	return wireEvent(e, true, base64), nil
}

func (b adminBackend) Events(ctx context.Context, f admin.EventFilter, after string, limit int, p admin.Payloads) ([]wire.Event, string, error) {
	found, next, err := b.d.Events().Find(ctx, eventFilter(f), after, limit)
	out := make([]wire.Event, len(found))
	for i, e := range found {
		out[i] = wireEvent(e, p.With, p.Base64)
	}
	return out, next, err
}

func eventFilter(f admin.EventFilter) EventFilter {
	return EventFilter{Function: f.Function, State: EventState(f.State), Key: f.Key, EnqueuedAfter: f.Since, EnqueuedBefore: f.Until}
}

func wireEvent(e QueuedEvent, withPayload, base64 bool) wire.Event {
	w := wire.Event{
		ID: e.ID, State: string(e.State), Function: e.Function, Qualifier: e.Qualifier, Key: e.Key, Priority: e.Priority,
		Attempts: e.Attempts, Enqueued: e.Enqueued.UTC(), Due: e.Due.UTC(),
		FirstAttempt: wire.Time(e.FirstAttempt), LastAttempt: wire.Time(e.LastAttempt), LeaseUntil: wire.Time(e.LeaseUntil),
		LastError: wire.ErrorInfo(e.LastError), Size: e.Size,
	}
	if withPayload {
		w.Payload, w.PayloadEncoding = wire.Payload(e.Payload, base64)
	}
	return w
}

func wireLetter(l deadletter.Letter, withPayload, base64 bool) wire.Letter {
	w := wire.Letter{
		ID: l.ID, State: wire.StateDead, Reason: wire.ReasonID(l.Reason), Function: l.Function, Qualifier: l.Qualifier, Key: l.Key,
		Attempts: l.Attempts, Enqueued: l.Enqueued.UTC(), FirstAttempt: wire.Time(l.FirstAttempt), LastAttempt: wire.Time(l.LastAttempt),
		DeadLettered: l.DeadLettered.UTC(), LastError: wire.ErrorInfo(l.LastError), Size: len(l.Payload),
	}
	if withPayload {
		w.Payload, w.PayloadEncoding = wire.Payload(l.Payload, base64)
	}
	return w
}

func (b adminBackend) Letter(id string, base64 bool) (wire.Letter, error) {
	l, err := b.d.DeadLetters().Get(id)
	if err != nil {
		return wire.Letter{}, err
	}
	return wireLetter(l, true, base64), nil
}

func (b adminBackend) Letters(ctx context.Context, f admin.LetterFilter, after string, limit int, p admin.Payloads) ([]wire.Letter, string, error) {
	found, next, err := b.d.DeadLetters().Find(ctx, letterFilter(f), after, limit)
	out := make([]wire.Letter, len(found))
	for i, l := range found {
		out[i] = wireLetter(l, p.With, p.Base64)
	}
	return out, next, err
}

func (b adminBackend) Redrive(ctx context.Context, ids []string, function, qualifier string) (int, error) {
	return b.d.DeadLetters().Redrive(ctx, ids, RedriveOptions{Function: function, Qualifier: qualifier})
}

func (b adminBackend) RedriveMatching(ctx context.Context, f admin.LetterFilter, function, qualifier string) (int, error) {
	return b.d.DeadLetters().RedriveMatching(ctx, letterFilter(f), RedriveOptions{Function: function, Qualifier: qualifier})
}

func (b adminBackend) Purge(ctx context.Context, ids []string) (int, error) {
	return b.d.DeadLetters().Delete(ctx, ids)
}

func (b adminBackend) PurgeMatching(ctx context.Context, f admin.LetterFilter) (int, error) {
	return b.d.DeadLetters().Purge(ctx, letterFilter(f))
}

func (b adminBackend) Functions() ([]wire.Function, error) {
	fs, err := b.d.Functions().All()
	return wireFunctions(fs), err
}

func (b adminBackend) Cancel(ctx context.Context, ids []string, keepKey bool) (int, error) {
	return b.d.Events().Cancel(ctx, ids, CancelOptions{KeepKey: keepKey})
}

func (b adminBackend) CancelMatching(ctx context.Context, f admin.EventFilter, keepKey bool) (int, error) {
	return b.d.Events().CancelMatching(ctx, eventFilter(f), CancelOptions{KeepKey: keepKey})
}

func (b adminBackend) Evictions(ctx context.Context, after string, limit int) ([]wire.Eviction, string, error) {
	evs, next, err := b.d.Events().Evictions(ctx, after, limit)
	out := make([]wire.Eviction, len(evs))
	for i, e := range evs {
		out[i] = wire.Eviction{
			ID: e.ID, State: wire.StateEvicted, Function: e.Function, Key: e.Key, Priority: e.Priority,
			Enqueued: e.Enqueued.UTC(), Evicted: e.Evicted.UTC(), Reason: e.Reason, Size: e.Size,
		}
	}
	return out, next, err
}

func (b adminBackend) SetPaused(ctx context.Context, function string, paused bool) error {
	return b.d.Functions().setPaused(ctx, function, paused)
}

func letterFilter(f admin.LetterFilter) LetterFilter {
	return LetterFilter{Function: f.Function, Reason: f.Reason, Since: f.Since, Until: f.Until}
}

// Status maps the dispatcher's errors to HTTP statuses.
func (adminBackend) Status(err error) int {
	var ve *ValidationError
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrInvalidEvent), errors.As(err, &ve):
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
