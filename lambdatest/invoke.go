package lambdatest

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

const (
	invokePrefix = "/2015-03-31/functions/"
	invokeSuffix = "/invocations"

	// maxClientContext is Lambda's limit on the encoded X-Amz-Client-Context.
	maxClientContext = 3583

	// maxDrain bounds how much of a refused body is read so that the answer
	// can be delivered; past it the connection is closed.
	maxDrain = 64 << 20

	functionNamePattern = `(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?`
)

// endpoint serves one listening period of a Server; down is closed when the
// period ends.
type endpoint struct {
	s    *Server
	down chan struct{}
}

// answer is what the server decided to send for one request.
type answer struct {
	status     int
	code       []string // X-Amzn-ErrorType, nil on success
	retryAfter []string
	body       []byte
	funcErr    bool // X-Amz-Function-Error: Unhandled
	drop       bool // close the connection without answering
}

func (a *answer) apiError(status int, code, message string) {
	a.status, a.code, a.body = status, []string{code}, errorBody(status, message, "")
}

func (e *endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := e.s
	inv := Invocation{RequestID: s.newRequestID(), Received: s.cfg.now()}
	w.Header()["X-Amzn-Requestid"] = []string{inv.RequestID}

	id, ok := strings.CutPrefix(r.URL.Path, invokePrefix)
	if ok {
		id, ok = strings.CutSuffix(id, invokeSuffix)
	}
	if !ok || r.Method != http.MethodPost || strings.Contains(id, "/") {
		drain(r.Body)
		writeAPIError(w, http.StatusNotFound, codeUnknownOp, "lambdatest: unknown operation "+r.Method+" "+r.URL.Path)
		return
	}
	name, qualifier, ok := parseFunctionName(id)
	if !ok {
		drain(r.Body)
		writeAPIError(w, http.StatusBadRequest, codeValidation,
			"1 validation error detected: Value '"+id+"' at 'functionName' failed to satisfy constraint: "+
				"Member must satisfy regular expression pattern: "+functionNamePattern)
		return
	}
	inv.Function, inv.Qualifier = name, qualifier

	var a answer
	e.decide(r, &inv, &a)

	inv.Status = a.status
	if a.code != nil {
		inv.ErrorCode = a.code[0]
	}
	s.record(inv)

	if a.drop || a.status == 0 {
		// Close the connection without a response (nothing has been
		// written yet); net/http does not log this panic.
		panic(http.ErrAbortHandler)
	}
	if a.code != nil {
		writeErrorBody(w, a.status, a.code, a.retryAfter, a.body)
		return
	}
	h := w.Header()
	switch a.status {
	case http.StatusOK:
		h["Content-Type"] = hdrJSON
		h["Content-Length"] = []string{strconv.Itoa(len(a.body))}
		h["X-Amz-Executed-Version"] = executedVersion(inv.Qualifier)
		if a.funcErr {
			h["X-Amz-Function-Error"] = hdrUnhandled
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(a.body)
	default: // 202, 204
		w.WriteHeader(a.status)
	}
}

// decide validates the request, applies faults and runs the handler, filling
// in inv and a. It leaves a.status 0 when no answer is to be sent.
func (e *endpoint) decide(r *http.Request, inv *Invocation, a *answer) {
	s := e.s

	// Qualifier: in the name, in the query, or both if they agree.
	if q, ok := queryQualifier(r.URL.RawQuery); ok {
		switch {
		case !validQualifier(q):
			drain(r.Body)
			a.apiError(http.StatusBadRequest, codeValidation,
				"1 validation error detected: Value '"+q+"' at 'qualifier' failed to satisfy constraint: "+
					"Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)")
			return
		case inv.Qualifier == "":
			inv.Qualifier = q
		case inv.Qualifier != q:
			drain(r.Body)
			a.apiError(http.StatusBadRequest, codeInvalidParam,
				"The derived qualifier from the function name does not match the specified qualifier.")
			return
		}
	}

	switch t := r.Header.Get("X-Amz-Invocation-Type"); t {
	case "", string(types.InvocationTypeRequestResponse):
		inv.InvocationType = types.InvocationTypeRequestResponse
	case string(types.InvocationTypeEvent):
		inv.InvocationType = types.InvocationTypeEvent
	case string(types.InvocationTypeDryRun):
		inv.InvocationType = types.InvocationTypeDryRun
	default:
		drain(r.Body)
		a.apiError(http.StatusBadRequest, codeValidation,
			"1 validation error detected: Value '"+t+"' at 'invocationType' failed to satisfy constraint: "+
				"Member must satisfy enum value set: [Event, RequestResponse, DryRun]")
		return
	}

	if cc := r.Header.Get("X-Amz-Client-Context"); cc != "" {
		dec, err := base64.StdEncoding.DecodeString(cc)
		if len(cc) > maxClientContext || err != nil || !json.Valid(dec) {
			drain(r.Body)
			a.apiError(http.StatusBadRequest, codeInvalidParam,
				"Client context must be a valid Base64-encoded JSON object of at most 3583 bytes.")
			return
		}
		inv.ClientContext = string(dec)
	}

	limit, op := s.cfg.syncLimit, "InvokeFunction"
	if inv.InvocationType == types.InvocationTypeEvent {
		limit, op = s.cfg.eventLimit, "InvokeAsync"
	}
	payload, tooLarge, err := readPayload(r, limit)
	if err != nil { // the caller went away while sending
		a.drop = true
		return
	}
	if tooLarge {
		a.apiError(http.StatusRequestEntityTooLarge, codeTooLarge,
			"Request must be smaller than "+strconv.Itoa(limit)+" bytes for the "+op+" operation")
		return
	}
	inv.Payload = payload

	s.mu.Lock()
	f := s.takeFaultLocked(inv.Function)
	h := s.handlers[inv.Function]
	s.mu.Unlock()

	if f != nil {
		inv.Faulted = true
		if f.Latency > 0 && !e.sleep(r, f.Latency) {
			a.drop = true // the caller or the server is gone
			return
		}
		if f.Drop {
			a.drop = true
			return
		}
		if f.body != nil {
			a.status, a.code, a.retryAfter, a.body = f.Status, f.code, f.retryAfter, f.body
			return
		}
	}

	if h == nil {
		a.apiError(http.StatusNotFound, codeNotFound,
			"Function not found: arn:aws:lambda:"+Region+":"+AccountID+":function:"+inv.Function+qualifierSuffix(inv.Qualifier))
		return
	}
	if len(payload) > 0 && !json.Valid(payload) {
		a.apiError(http.StatusBadRequest, codeInvalidContent,
			"Could not parse request body into json: Could not parse payload into json: invalid JSON")
		return
	}

	switch inv.InvocationType {
	case types.InvocationTypeDryRun:
		a.status = http.StatusNoContent
	case types.InvocationTypeEvent:
		// Lambda passes the client context to synchronous invocations only.
		seen := *inv
		seen.ClientContext = ""
		_, inv.Err = call(r.Context(), h, seen)
		a.status = http.StatusAccepted
	default:
		out, err := call(r.Context(), h, *inv)
		a.status = http.StatusOK
		if err != nil {
			inv.Err = err
			a.funcErr = true
			a.body = functionErrorBody(err)
		} else {
			a.body = out
		}
	}
}

// sleep waits for d, and reports false if the request was abandoned first
// (the caller went away, or the server went offline or closed).
func (e *endpoint) sleep(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-e.down:
		return false
	}
}

// readPayload reads the body up to limit bytes. A larger body is read to its
// end (so that the 413 answer reaches the caller) and reported as too large.
func readPayload(r *http.Request, limit int) (payload []byte, tooLarge bool, err error) {
	switch n := r.ContentLength; {
	case n == 0:
		return nil, false, nil
	case n > int64(limit):
		drain(r.Body)
		return nil, true, nil
	case n > 0:
		buf := make([]byte, n)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return nil, false, err
		}
		return buf, false, nil
	}
	// Unknown length (chunked).
	buf, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	if err != nil {
		return nil, false, err
	}
	if len(buf) > limit {
		drain(r.Body)
		return nil, true, nil
	}
	if len(buf) == 0 {
		buf = nil
	}
	return buf, false, nil
}

// drain reads and discards what is left of a body, up to maxDrain.
func drain(body io.Reader) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, maxDrain))
}

// queryQualifier returns the Qualifier query parameter.
func queryQualifier(rawQuery string) (string, bool) {
	for rawQuery != "" {
		var kv string
		kv, rawQuery, _ = strings.Cut(rawQuery, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k != "Qualifier" {
			continue
		}
		if u, err := url.QueryUnescape(v); err == nil {
			v = u
		}
		return v, true
	}
	return "", false
}

func qualifierSuffix(q string) string {
	if q == "" {
		return ""
	}
	return ":" + q
}

// executedVersion is the X-Amz-Executed-Version header: the qualifier when
// it is a version number, $LATEST otherwise (aliases are not modelled).
func executedVersion(q string) []string {
	if q == "" || q == "$LATEST" {
		return hdrLatest
	}
	for i := 0; i < len(q); i++ {
		if q[i] < '0' || q[i] > '9' {
			return hdrLatest
		}
	}
	return []string{q}
}

// parseFunctionName splits a function identifier in any of the forms Lambda
// accepts (name, name:qualifier, account:function:name[:qualifier],
// arn:partition:lambda:region:account:function:name[:qualifier]) into the
// bare name and the qualifier.
func parseFunctionName(id string) (name, qualifier string, ok bool) {
	rest := id
	if after, isARN := strings.CutPrefix(id, "arn:"); isARN {
		var partition, service, region, account, kw string
		partition, after, _ = strings.Cut(after, ":")
		service, after, _ = strings.Cut(after, ":")
		region, after, _ = strings.Cut(after, ":")
		account, after, _ = strings.Cut(after, ":")
		kw, after, _ = strings.Cut(after, ":")
		if !strings.HasPrefix(partition, "aws") || service != "lambda" || region == "" ||
			!isAccount(account) || kw != "function" {
			return "", "", false
		}
		rest = after
	} else if account, after, found := strings.Cut(id, ":"); found && isAccount(account) {
		if after, found = strings.CutPrefix(after, "function:"); found {
			rest = after
		}
	}
	name, qualifier, hasQualifier := strings.Cut(rest, ":")
	if !validName(name) || (hasQualifier && !validQualifier(qualifier)) {
		return "", "", false
	}
	return name, qualifier, true
}

func isAccount(s string) bool {
	if len(s) != 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validName reports whether s is a bare function name: 1 to 64 letters,
// digits, hyphens and underscores.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// validQualifier reports whether s is a version or alias: 1 to 128 letters,
// digits, hyphens, underscores and dollar signs ($LATEST).
func validQualifier(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '_' && c != '$' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
