package dynalitetest

import (
	"fmt"
	"hash/crc32"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// ThrottleMessage is the message of the errors a [FaultProxy] throttles
// with.
const ThrottleMessage = "dynalitetest: throttled by the fault proxy"

// FaultProxy is an HTTP server on 127.0.0.1 that forwards requests to a
// DynamoDB endpoint, unless told to throttle them or to drop them, and
// counts them by operation. Its methods may be called from several
// goroutines at once.
type FaultProxy struct {
	srv *httptest.Server

	mu       sync.Mutex
	throttle int
	offline  bool
	counts   map[string]int
}

// NewFaultProxy starts a proxy to endpoint, closed when the test ends.
func NewFaultProxy(t testing.TB, endpoint string) *FaultProxy {
	t.Helper()
	target, err := url.Parse(endpoint)
	if err != nil {
		t.Fatalf("dynalitetest: endpoint %q: %v", endpoint, err)
	}
	tr := &http.Transport{}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = tr
	p := &FaultProxy{counts: make(map[string]int)}
	p.srv = httptest.NewServer(p.handler(rp))
	t.Cleanup(func() {
		p.srv.Close()
		tr.CloseIdleConnections()
	})
	return p
}

// URL returns the proxy's endpoint, "http://127.0.0.1:port", to use as
// dynamodb.Options.BaseEndpoint.
func (p *FaultProxy) URL() string { return p.srv.URL }

// Throttle answers the next n requests, instead of forwarding them, as
// DynamoDB refuses a request for load: HTTP 400 with a
// ProvisionedThroughputExceededException, which the SDK decodes as
// *types.ProvisionedThroughputExceededException.
func (p *FaultProxy) Throttle(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.throttle = n
}

// Offline makes the proxy close the connection of every request, unread
// and unanswered, while off is true, so that the client sees a transport
// error, as when DynamoDB cannot be reached.
func (p *FaultProxy) Offline(off bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.offline = off
}

// Count returns how many requests of the operation op ("PutItem",
// "BatchGetItem", ...) the proxy received, whether it forwarded, throttled
// or dropped them.
func (p *FaultProxy) Count(op string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[op]
}

// Counts returns how many requests of each operation the proxy received.
func (p *FaultProxy) Counts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.counts)
}

type fault int

const (
	forward fault = iota
	throttle
	drop
)

func (p *FaultProxy) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// X-Amz-Target is "DynamoDB_20120810.PutItem".
		target := r.Header.Get("X-Amz-Target")
		op := target[strings.LastIndexByte(target, '.')+1:]
		p.mu.Lock()
		p.counts[op]++
		f := forward
		switch {
		case p.offline:
			f = drop
		case p.throttle > 0:
			p.throttle--
			f = throttle
		}
		p.mu.Unlock()

		switch f {
		case drop:
			hj, ok := w.(http.Hijacker)
			if !ok {
				panic("dynalitetest: the proxy's ResponseWriter cannot hijack")
			}
			conn, _, err := hj.Hijack()
			if err == nil {
				conn.Close()
			}
		case throttle:
			body := fmt.Sprintf(`{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":%q}`, ThrottleMessage)
			h := w.Header()
			h.Set("Content-Type", "application/x-amz-json-1.0")
			h.Set("X-Amzn-ErrorType", "ProvisionedThroughputExceededException")
			h.Set("X-Amzn-RequestId", "dynalitetest-throttle")
			h.Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE([]byte(body))), 10))
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(body))
		default:
			next.ServeHTTP(w, r)
		}
	})
}
