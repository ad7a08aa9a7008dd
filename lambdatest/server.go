package lambdatest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
)

// Region is the AWS region of the clients returned by [Server.Client] and of
// the ARNs the server writes in its messages.
const Region = "us-east-1"

// AccountID is the account the server pretends to be, as it appears in ARNs.
const AccountID = "123456789012"

// Default payload limits, as Lambda's quotas are at the time of writing.
const (
	// DefaultEventPayloadLimit is the largest payload, in bytes, accepted for
	// an Event (asynchronous) invocation unless [WithEventPayloadLimit] says
	// otherwise.
	DefaultEventPayloadLimit = 1 << 20
	// DefaultSyncPayloadLimit is the largest payload, in bytes, accepted for a
	// RequestResponse or DryRun invocation unless [WithSyncPayloadLimit] says
	// otherwise.
	DefaultSyncPayloadLimit = 6 << 20
)

// ErrClosed is returned by [Server.Online] and by the wait methods once
// [Server.Close] has been called.
var ErrClosed = errors.New("lambdatest: server closed")

// Option configures a [Server] at construction; options cannot be changed
// on a running server.
type Option func(*config)

type config struct {
	eventLimit  int
	syncLimit   int
	recordLimit int
	now         func() time.Time
}

// WithEventPayloadLimit sets the largest payload, in bytes, accepted for an
// Event invocation; a larger one is answered 413 RequestEntityTooLargeException.
// The default is [DefaultEventPayloadLimit]. A limit below zero is ignored.
func WithEventPayloadLimit(n int) Option {
	return func(c *config) {
		if n >= 0 {
			c.eventLimit = n
		}
	}
}

// WithSyncPayloadLimit sets the largest payload, in bytes, accepted for a
// RequestResponse or DryRun invocation; a larger one is answered 413
// RequestEntityTooLargeException. The default is [DefaultSyncPayloadLimit].
// A limit below zero is ignored.
func WithSyncPayloadLimit(n int) Option {
	return func(c *config) {
		if n >= 0 {
			c.syncLimit = n
		}
	}
}

// WithRecordLimit keeps at most the n most recent invocations (payloads
// included) in memory; [Server.Count] stays exact. Zero, the default, keeps
// them all; a negative n keeps none, for benchmarks that only count.
func WithRecordLimit(n int) Option {
	return func(c *config) { c.recordLimit = n }
}

// WithClock sets the function that stamps [Invocation.Received]; the default
// is time.Now. Latency faults always use the real clock.
func WithClock(now func() time.Time) Option {
	return func(c *config) {
		if now != nil {
			c.now = now
		}
	}
}

// Server is a Lambda Invoke endpoint on 127.0.0.1. Its methods are safe for
// concurrent use. Create one with [NewServer] and stop it with [Server.Close].
type Server struct {
	cfg  config
	addr string // host:port, kept across Offline and Online
	url  string

	transport  *http.Transport
	httpClient *http.Client

	idPrefix [8]byte // random per server, so request ids are unique across servers
	seq      atomic.Uint64

	life      sync.Mutex // serialises Online, Offline and Close
	hs        *http.Server
	serveDone chan struct{}
	down      chan struct{} // closed when the current listening period ends
	closed    bool
	conns     sync.WaitGroup // connections of every period, counted by ConnState

	mu       sync.Mutex
	handlers map[string]Handler
	faults   map[string]*faultQueue // "" holds the faults for every function
	nfaults  int                    // queued faults, to skip the lookup when none
	records  []Invocation
	counts   map[string]int
	total    int
	changed  chan struct{} // closed on the next change; nil while nobody waits
	done     bool          // Close was called (seen by waiters)
}

// NewServer starts a server on 127.0.0.1 with a free port. It panics if it
// cannot listen, as httptest.NewServer does. Call [Server.Close] when done.
func NewServer(opts ...Option) *Server {
	cfg := config{
		eventLimit: DefaultEventPayloadLimit,
		syncLimit:  DefaultSyncPayloadLimit,
		now:        time.Now,
	}
	for _, o := range opts {
		o(&cfg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("lambdatest: failed to listen on a port: %v", err))
	}
	s := &Server{
		cfg:      cfg,
		addr:     ln.Addr().String(),
		handlers: make(map[string]Handler),
		faults:   make(map[string]*faultQueue),
		counts:   make(map[string]int),
	}
	s.url = "http://" + s.addr
	_, _ = rand.Read(s.idPrefix[:])
	s.transport = &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	s.httpClient = &http.Client{Transport: s.transport}
	s.serve(ln)
	return s
}

// URL returns the server's base URL, http://127.0.0.1:port. It stays the same
// across [Server.Offline] and [Server.Online].
func (s *Server) URL() string { return s.url }

// Client returns a Lambda client of the real SDK pointed at the server:
// BaseEndpoint is [Server.URL], the region is [Region], the credentials are
// static dummies, no configuration file or environment variable is read, and
// SDK retries are off (RetryMaxAttempts is 1) so that every call is exactly
// one request. opts run after these defaults and may change any of them.
//
// All clients of a server share one HTTP transport, which [Server.Close]
// releases; use them only while the server lives.
func (s *Server) Client(opts ...func(*lambda.Options)) *lambda.Client {
	return lambda.New(lambda.Options{
		Region:           Region,
		BaseEndpoint:     aws.String(s.url),
		Credentials:      dummyCredentials,
		RetryMaxAttempts: 1,
		HTTPClient:       s.httpClient,
	}, opts...)
}

var dummyCredentials = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
	return aws.Credentials{
		AccessKeyID:     "AKIDLAMBDATEST",
		SecretAccessKey: "lambdatest-secret",
		Source:          "lambdatest",
	}, nil
})

// Offline stops accepting connections and closes the open ones, so that
// callers get "connection refused" until [Server.Online]. Requests in flight
// are cut off: their handlers' contexts are cancelled, latency faults end,
// and they are recorded with the status they would have had (0 if none was
// chosen yet). Offline does not wait for running handlers, so a handler may
// call it. Calling it while offline or after Close does nothing.
func (s *Server) Offline() {
	s.life.Lock()
	s.stopLocked()
	s.life.Unlock()
	// Pooled connections to the old listener are dead; drop them so that the
	// next request dials, and fails with connection refused.
	s.transport.CloseIdleConnections()
}

// Online listens again on the same address after [Server.Offline]. It does
// nothing if the server is online, and returns [ErrClosed] after
// [Server.Close], or the listen error if the address has been taken.
func (s *Server) Online() error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.hs != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("lambdatest: listen again on %s: %w", s.addr, err)
	}
	s.serve(ln)
	return nil
}

// Close stops the server, closes every connection, waits for running
// handlers and the server's goroutines to end, and releases the clients'
// idle connections. Waiters in [Server.WaitFor] return [ErrClosed] if their
// condition does not hold. Recorded invocations stay readable. Close may be
// called more than once, but not from a handler (it would wait for itself);
// a handler may call [Server.Offline].
func (s *Server) Close() {
	s.life.Lock()
	if s.closed {
		s.life.Unlock()
		return
	}
	s.closed = true
	s.stopLocked()
	s.life.Unlock()

	// No period is running and none can start, so no connection is added:
	// waiting is safe. A connection ends after its handler returns.
	s.conns.Wait()
	s.transport.CloseIdleConnections()

	s.mu.Lock()
	s.done = true
	s.signalLocked()
	s.mu.Unlock()
}

// serve starts a listening period on ln. Call with s.life held (or before the
// server is shared).
func (s *Server) serve(ln net.Listener) {
	down := make(chan struct{})
	hs := &http.Server{
		Handler:   &endpoint{s: s, down: down},
		ConnState: s.connState,
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	done := make(chan struct{})
	s.hs, s.serveDone, s.down = hs, done, down
	go func() {
		defer close(done)
		_ = hs.Serve(ln) // always an error; http.ErrServerClosed after Close
	}()
}

// stopLocked ends the current listening period, if any. Call with s.life held.
func (s *Server) stopLocked() {
	if s.hs == nil {
		return
	}
	close(s.down)
	_ = s.hs.Close() // closes the listener and every tracked connection
	<-s.serveDone    // Serve has returned: no connection will be added
	s.hs, s.serveDone, s.down = nil, nil, nil
}

// connState counts connections so that Close can wait for them. A
// connection ends after its handler returns (a dropped one too: the handler
// aborts with http.ErrAbortHandler), so this also waits for handlers.
func (s *Server) connState(_ net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		s.conns.Add(1)
	case http.StateClosed:
		s.conns.Done()
	}
}

// Register makes h answer invocations of the function name, replacing any
// handler registered before. name is a bare function name or any of the forms
// described in the package documentation (a qualifier in it is ignored:
// every qualifier of a function reaches the same handler, which can read
// [Invocation.Qualifier]). Register panics if name is not a valid function
// name or h is nil.
func (s *Server) Register(name string, h Handler) {
	if h == nil {
		panic("lambdatest: Register with a nil handler")
	}
	fn := mustFunctionName("Register", name)
	s.mu.Lock()
	s.handlers[fn] = h
	s.mu.Unlock()
}

// mustFunctionName returns the bare function name of id, or panics naming
// the method.
func mustFunctionName(method, id string) string {
	name, _, ok := parseFunctionName(id)
	if !ok {
		panic(fmt.Sprintf("lambdatest: %s: invalid function name %q", method, id))
	}
	return name
}

// normalizeName returns the bare function name of id, or id itself when it
// is not a valid function name (so that lookups simply find nothing).
func normalizeName(id string) string {
	if name, _, ok := parseFunctionName(id); ok {
		return name
	}
	return id
}

// newRequestID returns a request id shaped like Lambda's (a UUID), unique
// across servers: a random per-server prefix and a counter.
func (s *Server) newRequestID() string {
	const hexdigits = "0123456789abcdef"
	var b [16]byte
	copy(b[:8], s.idPrefix[:])
	n := s.seq.Add(1)
	for i := 15; i >= 8; i-- {
		b[i] = byte(n)
		n >>= 8
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	var out [36]byte
	j := 0
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j], out[j+1] = hexdigits[c>>4], hexdigits[c&0x0f]
		j += 2
	}
	return string(out[:])
}
