package retry_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsretry "github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher/retry"
)

// These tests drive a real lambda.Client over real HTTP on 127.0.0.1, with
// the SDK's retries off as the dispatcher runs it, to prove that the
// fixtures of the table tests have the shape the SDK really produces.

// newClient returns a Lambda client for endpoint with static credentials and
// a single attempt per call.
func newClient(endpoint string, opts ...func(*lambda.Options)) *lambda.Client {
	return lambda.New(lambda.Options{
		Region:           "us-east-1",
		BaseEndpoint:     aws.String(endpoint),
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		RetryMaxAttempts: 1,
	}, opts...)
}

// invoke makes an asynchronous Invoke call and returns its error.
func invoke(ctx context.Context, c *lambda.Client) error {
	_, err := c.Invoke(ctx, &lambda.InvokeInput{
		FunctionName:   aws.String("fn"),
		InvocationType: types.InvocationTypeEvent,
		Payload:        []byte(`{"order":42}`),
	})
	return err
}

// lambdaError writes a Lambda error response as the service does.
func lambdaError(status int, code, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Amzn-RequestId", "5f1b6c2e-1111-2222-3333-444455556666")
		if code != "" {
			w.Header().Set("X-Amzn-ErrorType", code)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// serve starts an httptest server for h, closed when the test ends.
func serve(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func TestRealClientThrottled(t *testing.T) {
	t.Parallel()
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3")
		lambdaError(http.StatusTooManyRequests, "TooManyRequestsException",
			`{"Type":"User","message":"Rate Exceeded.","Reason":"ConcurrentInvocationLimitExceeded"}`)(w, r)
	}))

	err := invoke(context.Background(), newClient(srv.URL))
	require.Error(t, err)

	// The shape the fixtures copy.
	var op *smithy.OperationError
	require.ErrorAs(t, err, &op)
	require.Equal(t, "Lambda", op.ServiceID)
	require.Equal(t, "Invoke", op.OperationName)
	var maxAttempts *awsretry.MaxAttemptsError
	require.ErrorAs(t, err, &maxAttempts)
	var resp *awshttp.ResponseError
	require.ErrorAs(t, err, &resp)
	require.Equal(t, 429, resp.HTTPStatusCode())
	var tooMany *types.TooManyRequestsException
	require.ErrorAs(t, err, &tooMany)

	ie := retry.FromError(err)
	require.Equal(t, retry.Throttled, ie.Class)
	require.Equal(t, "TooManyRequestsException", ie.Code)
	require.Equal(t, "Rate Exceeded.", ie.Message)
	require.Equal(t, 429, ie.StatusCode)
	require.Equal(t, "5f1b6c2e-1111-2222-3333-444455556666", ie.RequestID)
	require.Equal(t, 3*time.Second, ie.RetryAfter)
	require.Equal(t, "ConcurrentInvocationLimitExceeded", ie.Reason)
	require.Same(t, err, ie.Err)
}

func TestRealClientConnectionRefused(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	err = invoke(context.Background(), newClient("http://"+addr))
	require.Error(t, err)

	// The shape the fixtures copy.
	var resp *awshttp.ResponseError
	require.ErrorAs(t, err, &resp)
	require.Zero(t, resp.HTTPStatusCode())
	var send *smithyhttp.RequestSendError
	require.ErrorAs(t, err, &send)
	var urlErr *url.Error
	require.ErrorAs(t, err, &urlErr)
	var opErr *net.OpError
	require.ErrorAs(t, err, &opErr)
	require.Equal(t, "dial", opErr.Op)
	require.ErrorIs(t, err, syscall.ECONNREFUSED)

	ie := retry.FromError(err)
	require.Equal(t, retry.Unreachable, ie.Class)
	require.Empty(t, ie.Code)
	require.Zero(t, ie.StatusCode)
	require.Empty(t, ie.RequestID)
}

func TestRealClientResponses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		handler http.HandlerFunc
		want    retry.Class
		code    string
		status  int
	}{
		{"Accepted", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusAccepted)
		}, retry.Success, "", 0},
		{"ServiceException", lambdaError(500, "ServiceException",
			`{"Type":"Service","Message":"internal error"}`), retry.Transient, "ServiceException", 500},
		{"KMSDisabledException", lambdaError(502, "KMSDisabledException",
			`{"Type":"User","Message":"key disabled"}`), retry.Permanent, "KMSDisabledException", 502},
		{"ResourceNotFoundException", lambdaError(404, "ResourceNotFoundException",
			`{"Type":"User","Message":"Function not found: arn:aws:lambda:us-east-1:123456789012:function:fn"}`),
			retry.Permanent, "ResourceNotFoundException", 404},
		{"CodeInBodyOnly", lambdaError(400, "",
			`{"__type":"InvalidRequestContentException","message":"Could not parse request body into json"}`),
			retry.Permanent, "InvalidRequestContentException", 400},
		{"RequestEntityTooLargeUnmodelled", lambdaError(413, "RequestEntityTooLargeException",
			`{"message":"Request must be smaller than 1048576 bytes for the InvokeFunction operation"}`),
			retry.Permanent, "RequestEntityTooLargeException", 413},
		{"UnrecognizedClient", lambdaError(403, "UnrecognizedClientException",
			`{"message":"The security token included in the request is invalid."}`),
			retry.Credentials, "UnrecognizedClientException", 403},
		{"AccessDenied", lambdaError(403, "AccessDeniedException",
			`{"Message":"User is not authorized to perform: lambda:InvokeFunction"}`),
			retry.Credentials, "AccessDeniedException", 403},
		{"GatewayHTML", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "<html><body>503 Service Unavailable</body></html>")
		}, retry.Transient, "", 503},
		{"EmptyBody504", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusGatewayTimeout)
		}, retry.Transient, "UnknownError", 504},
		{"TruncatedErrorBody", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			w.Header().Set("X-Amzn-ErrorType", "TooManyRequestsException")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = io.WriteString(w, `{"message":`)
			w.(http.Flusher).Flush()
			hijackAndClose(w, false)
		}, retry.Throttled, "", 429},
		{"ClosedBeforeResponse", func(w http.ResponseWriter, r *http.Request) {
			hijackAndClose(w, false)
		}, retry.Transient, "", 0},
		{"ResetBeforeResponse", func(w http.ResponseWriter, r *http.Request) {
			hijackAndClose(w, true)
		}, retry.Transient, "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := serve(t, tc.handler)
			err := invoke(context.Background(), newClient(srv.URL))
			ie := retry.FromError(err)
			require.Equal(t, tc.want, retry.Classify(err), "%v", err)
			if tc.want == retry.Success {
				require.Nil(t, ie)
				return
			}
			require.Equal(t, tc.want, ie.Class)
			require.Equal(t, tc.status, ie.StatusCode)
			if tc.code != "" {
				require.Equal(t, tc.code, ie.Code)
			}
		})
	}
}

// hijackAndClose takes the connection from net/http and closes it, with a
// TCP reset when reset is set. Whatever the handler flushed has been sent.
func hijackAndClose(w http.ResponseWriter, reset bool) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(err)
	}
	if tcp, ok := conn.(*net.TCPConn); ok && reset {
		_ = tcp.SetLinger(0)
	}
	_ = conn.Close()
}

func TestRealClientTLSUntrusted(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake error is the point
	srv.StartTLS()
	t.Cleanup(srv.Close)

	// The default client does not trust httptest's certificate, as a device
	// behind a captive portal does not trust the portal's.
	err := invoke(context.Background(), newClient(srv.URL))
	require.Error(t, err)
	require.Equal(t, retry.Unreachable, retry.Classify(err), "%v", err)
}

func TestRealClientTLSHandshakeTimeout(t *testing.T) {
	t.Parallel()
	// A listener that accepts TCP connections and never speaks TLS.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()

	httpClient := &http.Client{Transport: &http.Transport{TLSHandshakeTimeout: 50 * time.Millisecond}}
	err = invoke(context.Background(), newClient("https://"+ln.Addr().String(),
		func(o *lambda.Options) { o.HTTPClient = httpClient }))
	require.Error(t, err)
	require.Contains(t, err.Error(), "TLS handshake timeout")
	require.Equal(t, retry.Unreachable, retry.Classify(err), "%v", err)
}

func TestRealClientTimeouts(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(block) }) // runs first: unblock, then close

	t.Run("HTTPClientTimeout", func(t *testing.T) {
		t.Parallel()
		httpClient := &http.Client{Timeout: 50 * time.Millisecond}
		err := invoke(context.Background(), newClient(srv.URL, func(o *lambda.Options) { o.HTTPClient = httpClient }))
		require.Error(t, err)
		var timeout interface{ Timeout() bool }
		require.ErrorAs(t, err, &timeout)
		require.True(t, timeout.Timeout())
		require.Equal(t, retry.Transient, retry.Classify(err), "%v", err)
	})
	t.Run("PerCallDeadline", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		err := invoke(ctx, newClient(srv.URL))
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, retry.Transient, retry.Classify(err), "%v", err)
	})
}

func TestRealClientCredentials(t *testing.T) {
	t.Parallel()
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
	}))
	cases := []struct {
		name  string
		creds aws.CredentialsProvider
	}{
		{"StaticEmpty", credentials.NewStaticCredentialsProvider("", "", "")},
		{"ProviderFails", aws.NewCredentialsCache(aws.CredentialsProviderFunc(
			func(context.Context) (aws.Credentials, error) {
				return aws.Credentials{}, errors.New("no credentials anywhere")
			}))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := invoke(context.Background(), newClient(srv.URL, func(o *lambda.Options) { o.Credentials = tc.creds }))
			require.Error(t, err)
			require.Equal(t, retry.Credentials, retry.Classify(err), "%v", err)
		})
	}
}
