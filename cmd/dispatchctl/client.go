package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lambdadispatch/dispatcher/internal/wire"
)

// client speaks the admin handler's JSON API: over HTTP to a live
// service with --url, or in process to a dispatcher this run opened on
// FILE. The commands see only the API and package wire's shapes, so what
// they print and how they exit cannot differ between the two.
type client struct {
	hc      *http.Client
	base    *url.URL // the admin handler's root; may hold userinfo
	header  http.Header
	timeout time.Duration // per request; 0 for none (in process)
	where   string        // what messages name: FILE, or the URL as shown
	// secrets are what the requests carry that no message may show: an
	// application's error can echo the credentials it refused.
	secrets []string
}

// maxAnswer bounds what is read of one answer: a page of a thousand
// events, or one event with its payload, is far below it.
const maxAnswer = 64 << 20

// inProcessBase is the root of the in-process API: never dialled, never
// printed.
var inProcessBase = &url.URL{Scheme: "http", Host: "dispatchctl.invalid", Path: "/"}

// newInProcess returns a client of h called in this process, no socket
// between: the file modes go through the very handler a live service
// mounts. where names the file in messages.
func newInProcess(h http.Handler, where string) *client {
	return &client{hc: &http.Client{Transport: inProcess{h}}, base: inProcessBase, header: http.Header{}, where: where}
}

// newRemote returns a client of the admin API at base.
func newRemote(base *url.URL, header http.Header, timeout time.Duration) *client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	c := &client{hc: &http.Client{Transport: tr}, base: base, header: header, timeout: timeout, where: shown(base)}
	var vals []string
	for _, vs := range header {
		vals = append(vals, vs...)
	}
	if u := base.User; u != nil {
		p, _ := u.Password()
		vals = append(vals, u.Username(), p, base64.StdEncoding.EncodeToString([]byte(u.String())))
	}
	for _, v := range vals {
		// The value, and its words long enough to be a token: "Bearer
		// abc…" can come back as "abc…" alone.
		c.secrets = append(c.secrets, v)
		for _, f := range strings.Fields(v) {
			if len(f) >= 6 {
				c.secrets = append(c.secrets, f)
			}
		}
	}
	// The longest first, so that no part of one is left behind by a
	// shorter one replaced inside it.
	slices.SortFunc(c.secrets, func(a, b string) int { return len(b) - len(a) })
	return c
}

// redact removes the secrets from a message of the service.
func (c *client) redact(msg string) string {
	for _, s := range c.secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
	return msg
}

// shown is u as messages print it: without userinfo or query, which can
// hold credentials.
func shown(u *url.URL) string {
	v := *u
	v.User, v.RawQuery, v.ForceQuery, v.Fragment, v.RawFragment = nil, "", false, "", ""
	return v.String()
}

// inProcess is a RoundTripper that serves each request with a handler.
type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer req.Body.Close()
	}
	// The handler sees what a server would hand it.
	r := req.Clone(req.Context())
	r.RequestURI = req.URL.RequestURI()
	r.RemoteAddr = "127.0.0.1:0"
	if r.Body == nil {
		r.Body = http.NoBody
	}
	w := &recorder{header: http.Header{}}
	t.h.ServeHTTP(w, r)
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return &http.Response{
		Status: fmt.Sprintf("%d %s", w.code, http.StatusText(w.code)), StatusCode: w.code,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: w.header, Body: io.NopCloser(&w.body), ContentLength: int64(w.body.Len()), Request: req,
	}, nil
}

// recorder is the ResponseWriter of an in-process request.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (w *recorder) Header() http.Header { return w.header }

func (w *recorder) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *recorder) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(p)
}

// apiError is an answer other than 2xx.
type apiError struct {
	status int
	msg    string
	api    bool // the body was the API's {"error": ...}, not some other server's page
}

func (e *apiError) Error() string { return e.msg }

// notFound reports whether err is the API's own 404: an id that names
// nothing, as opposed to a wrong --url.
func notFound(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.api && ae.status == http.StatusNotFound
}

// exitFor maps an answer's status to an exit code: the server refusing
// input is a usage error, as dispatchctl refusing it would be.
func exitFor(status int) int {
	switch status {
	case http.StatusNotFound:
		return exitNotFound
	case http.StatusBadRequest:
		return exitUsage
	}
	return exitFailed
}

// do sends one request and decodes the answer into out (unless nil).
func (c *client) do(method, endpoint string, q url.Values, body, out any) error {
	u := c.base.JoinPath(endpoint)
	u.RawQuery = q.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	ctx := context.Background()
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, shown(u), unwrapURLError(err))
	}
	req.Header = c.header.Clone()
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "dispatchctl")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%s %s: no answer within %v (--timeout)", method, shown(u), c.timeout)
		}
		return fmt.Errorf("cannot reach %s: %w", c.where, unwrapURLError(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%s %s: answer not read within %v (--timeout)", method, shown(u), c.timeout)
		}
		return fmt.Errorf("%s %s: reading the answer: %w", method, shown(u), unwrapURLError(err))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &cliError{code: exitFor(resp.StatusCode), err: c.answerErr(method, shown(u), resp, raw)}
	}
	if out == nil {
		return nil
	}
	if !isJSON(resp) || json.Unmarshal(raw, out) != nil {
		// Some other page than the API's: most likely --url names the
		// wrong path. Its body is not ours to print.
		return fmt.Errorf("%s %s: %d %s, but not an answer of the admin API (is the URL where the service mounts d.AdminHandler()?)",
			method, shown(u), resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	return nil
}

// answerErr is the error of an answer other than 2xx: the API's own
// message when the body is the API's JSON error, else only the status,
// since a body of another server (an HTML page, a proxy's) can be long
// and can echo what the request carried.
func (c *client) answerErr(method, where string, resp *http.Response, raw []byte) error {
	var e wire.Error
	if isJSON(resp) && json.Unmarshal(raw, &e) == nil && e.Error != "" {
		return &apiError{status: resp.StatusCode, msg: c.redact(e.Error), api: true}
	}
	return &apiError{status: resp.StatusCode, msg: fmt.Sprintf("%s %s: %d %s", method, where, resp.StatusCode, http.StatusText(resp.StatusCode))}
}

func isJSON(resp *http.Response) bool {
	ct := resp.Header.Get("Content-Type")
	return ct == "application/json" || strings.HasPrefix(ct, "application/json;")
}

// unwrapURLError drops the *url.Error around err: it names the URL, which
// net/http prints with its username.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func (c *client) get(endpoint string, q url.Values, out any) error {
	return c.do(http.MethodGet, endpoint, q, nil, out)
}

func (c *client) post(endpoint string, body, out any) error {
	return c.do(http.MethodPost, endpoint, nil, body, out)
}

// The API's calls, by what they return.

func (c *client) stats() (wire.Stats, error) {
	var s wire.Stats
	return s, c.get("stats", nil, &s)
}

// listQuery is a list's filter and page, as query parameters.
type listQuery struct {
	state, function, reason string
	until                   time.Time
	payload                 string // "" for none, or json or base64 (see GET /events)
}

func (q listQuery) values(after string, limit int) url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"state": q.state, "function": q.function, "reason": q.reason, "after": after, "payload": q.payload} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if !q.until.IsZero() {
		v.Set("until", q.until.UTC().Format(time.RFC3339Nano))
	}
	v.Set("limit", strconv.Itoa(limit))
	return v
}

func (c *client) events(q listQuery, after string, limit int) (wire.Page[wire.Event], error) {
	var p wire.Page[wire.Event]
	return p, c.get("events", q.values(after, limit), &p)
}

func (c *client) letters(q listQuery, after string, limit int) (wire.Page[wire.Letter], error) {
	var p wire.Page[wire.Letter]
	return p, c.get("deadletters", q.values(after, limit), &p)
}

func (c *client) evictions(after string, limit int) (wire.Page[wire.Eviction], error) {
	var p wire.Page[wire.Eviction]
	return p, c.get("evictions", listQuery{}.values(after, limit), &p)
}

func (c *client) event(id string) (wire.Event, error) {
	var e wire.Event
	return e, c.get("events/"+url.PathEscape(id), nil, &e)
}

func (c *client) letter(id string) (wire.Letter, error) {
	var l wire.Letter
	return l, c.get("deadletters/"+url.PathEscape(id), nil, &l)
}

func (c *client) redrive(ids []string, to, qualifier string) (int, error) {
	var out wire.Redriven
	err := c.post("deadletters/redrive", struct {
		IDs       []string `json:"ids"`
		To        string   `json:"to,omitempty"`
		Qualifier string   `json:"qualifier,omitempty"`
	}{ids, to, qualifier}, &out)
	return out.Redriven, err
}

func (c *client) purge(ids []string) (int, error) {
	var out wire.Purged
	err := c.post("deadletters/purge", struct {
		IDs []string `json:"ids"`
	}{ids}, &out)
	return out.Purged, err
}

func (c *client) cancel(ids []string, keepKey bool) (int, error) {
	var out wire.Cancelled
	err := c.post("events/cancel", struct {
		IDs     []string `json:"ids"`
		KeepKey bool     `json:"keepKey,omitempty"`
	}{ids, keepKey}, &out)
	return out.Cancelled, err
}

func (c *client) setPaused(function string, paused bool) (wire.Paused, error) {
	verb := "resume"
	if paused {
		verb = "pause"
	}
	var out wire.Paused
	return out, c.post("functions/"+url.PathEscape(function)+"/"+verb, nil, &out)
}
