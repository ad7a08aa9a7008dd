package dispatcher_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/lambdatest"
	"github.com/lambdadispatch/dispatcher/retry"
)

const (
	leakToken     = "IQoJb3JpZ2luX2VjEHAaCXVzLWVhc3QtMSJHMEUCIQDLeakedSessionToken+xyz/abc=="
	leakKeyID     = "ASIAQLEAKEDKEYID0001"
	leakSignature = "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c"
)

// canonicalRequestMessage is an InvalidSignatureException message as AWS
// writes it: the canonical request it expected, security token included.
const canonicalRequestMessage = "The request signature we calculated does not match the signature you provided.\n\n" +
	"The Canonical String for this request should have been\n'POST\n/2015-03-31/functions/fn/invocations\n\n" +
	"host:127.0.0.1\nx-amz-date:20260101T000000Z\nx-amz-security-token:" + leakToken + "\n\n" +
	"host;x-amz-date;x-amz-security-token\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'\n" +
	"Authorization: AWS4-HMAC-SHA256 Credential=" + leakKeyID + "/20260101/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=" + leakSignature + "\n"

// invokerFunc adapts a function to dispatcher.LambdaInvoker.
type invokerFunc func(context.Context, *lambda.InvokeInput, ...func(*lambda.Options)) (*lambda.InvokeOutput, error)

func (f invokerFunc) Invoke(ctx context.Context, in *lambda.InvokeInput, opts ...func(*lambda.Options)) (*lambda.InvokeOutput, error) {
	return f(ctx, in, opts...)
}

func logBuffer() (*slog.Logger, func() string) {
	var mu sync.Mutex
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&lockedWriter{mu: &mu, w: &buf}, nil))
	return logger, func() string {
		mu.Lock()
		defer mu.Unlock()
		return buf.String()
	}
}

func requireNoSecret(t *testing.T, s string) {
	t.Helper()
	for _, secret := range []string{leakToken, leakKeyID, leakSignature} {
		require.NotContains(t, s, secret)
	}
}

// TestSecretsNotLoggedOnPause: Lambda answers 403 InvalidSignatureException
// quoting the canonical request; dispatch pauses and its log line names
// the code, status and request id, and none of the credentials.
func TestSecretsNotLoggedOnPause(t *testing.T) {
	t.Parallel()
	logger, logged := logBuffer()
	b := setup(t, withServer(), with(dispatcher.WithLogger(logger)))
	b.srv.Register("fn", lambdatest.OK())
	b.srv.Fail("fn", lambdatest.Fault{Status: http.StatusForbidden, Code: "InvalidSignatureException", Message: canonicalRequestMessage})
	b.enqueue(t, "fn", 1)
	b.start(t)
	waitStats(t, b.d, "paused", func(s dispatcher.Stats) bool { return s.Paused })
	b.halt(t)
	out := logged()
	require.Contains(t, out, "dispatch paused")
	require.Contains(t, out, `"code":"InvalidSignatureException"`)
	require.Contains(t, out, `"status":403`)
	require.Regexp(t, `"request_id":"[^"]+"`, out)
	requireNoSecret(t, out)
}

// TestSecretsNotKeptInDeadLetters: a permanent failure whose message quotes
// credentials is dead-lettered with the message redacted.
func TestSecretsNotKeptInDeadLetters(t *testing.T) {
	t.Parallel()
	logger, logged := logBuffer()
	b := setup(t, withServer(), with(dispatcher.WithLogger(logger)))
	b.srv.Register("fn", lambdatest.OK())
	msg := "Invalid request https://lambda/?X-Amz-Security-Token=" + leakToken + "&X-Amz-Signature=" + leakSignature + "\n" + canonicalRequestMessage
	b.srv.Fail("fn", lambdatest.Fault{Status: http.StatusBadRequest, Code: "InvalidParameterValueException", Message: msg})
	ids := b.enqueue(t, "fn", 1)
	b.start(t)
	waitStats(t, b.d, "dead-lettered", func(s dispatcher.Stats) bool { return s.DeadLettered == 1 })
	b.halt(t)
	l, err := b.d.DeadLetters().Get(ids[0])
	require.NoError(t, err)
	require.Equal(t, "InvalidParameterValueException", l.LastError.Code)
	require.Contains(t, l.LastError.Message, "X-Amz-Security-Token="+retry.Redacted)
	requireNoSecret(t, l.LastError.Message)
	requireNoSecret(t, logged())

	// A fake client's hand-built error is redacted on its way to the letter
	// too.
	fake := invokerFunc(func(context.Context, *lambda.InvokeInput, ...func(*lambda.Options)) (*lambda.InvokeOutput, error) {
		return nil, &retry.InvokeError{Class: retry.Permanent, Code: "InvalidParameterValueException", StatusCode: 400, Message: msg}
	})
	fb := setup(t, with(dispatcher.WithLambda(fake), dispatcher.WithRetryPolicy(fastPolicy())))
	d := fb.d
	r, err := d.Enqueue(context.Background(), dispatcher.Event{Function: "fn"})
	require.NoError(t, err)
	fb.start(t)
	waitStats(t, d, "dead-lettered", func(s dispatcher.Stats) bool { return s.DeadLettered == 1 })
	fb.halt(t)
	l, err = d.DeadLetters().Get(r.ID)
	require.NoError(t, err)
	requireNoSecret(t, l.LastError.Message)
}

// TestSecretsNotLoggedFromSinks: a dead-letter sink's failure, which an
// AWS service may fill with the request it refused, is logged redacted.
func TestSecretsNotLoggedFromSinks(t *testing.T) {
	t.Parallel()
	logger, logged := logBuffer()
	sink := deadletter.SinkFunc(func(context.Context, deadletter.Letter) error {
		return errors.New("operation error SQS: SendMessage, https response error StatusCode: 403, api error InvalidSignatureException: " + canonicalRequestMessage)
	})
	b := setup(t, withServer(), with(dispatcher.WithLogger(logger), dispatcher.WithDeadLetter(sink)))
	b.enqueue(t, "missing", 1)
	b.start(t)
	waitStats(t, b.d, "dead-lettered", func(s dispatcher.Stats) bool { return s.DeadLettered == 1 })
	b.halt(t)
	out := logged()
	require.Contains(t, out, "dead-letter sink failed")
	require.Contains(t, out, "x-amz-security-token:"+retry.Redacted)
	requireNoSecret(t, out)
}
