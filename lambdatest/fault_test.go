package lambdatest_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher/lambdatest"
)

func (b *bundle) invoke(fn string) (*lambda.InvokeOutput, error) {
	return b.client.Invoke(b.ctx, &lambda.InvokeInput{
		FunctionName:   aws.String(fn),
		InvocationType: types.InvocationTypeEvent,
		Payload:        []byte(`{}`),
	})
}

func TestThrottle(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.Register("fn", lambdatest.OK())
	b.srv.Fail("fn", lambdatest.Throttle(2, 1500*time.Millisecond))

	for range 2 {
		_, err := b.invoke("fn")
		var tmr *types.TooManyRequestsException
		require.ErrorAs(t, err, &tmr)
		require.Equal(t, "2", aws.ToString(tmr.RetryAfterSeconds), "Retry-After in whole seconds, rounded up")
		require.Equal(t, types.ThrottleReasonReservedFunctionConcurrentInvocationLimitExceeded, tmr.Reason)
		require.Equal(t, "Rate Exceeded.", aws.ToString(tmr.Message))
		require.Equal(t, "User", aws.ToString(tmr.Type))
		require.Equal(t, "TooManyRequestsException", tmr.ErrorCode())
		require.Equal(t, smithy.FaultClient, tmr.ErrorFault())
		requireStatus(t, err, 429)
	}
	out, err := b.invoke("fn")
	require.NoError(t, err)
	require.Equal(t, int32(202), out.StatusCode)

	invs := b.srv.Invocations("fn")
	require.Len(t, invs, 3, "faulted requests count as attempts")
	for i, want := range []struct {
		status  int
		code    string
		faulted bool
	}{{429, "TooManyRequestsException", true}, {429, "TooManyRequestsException", true}, {202, "", false}} {
		require.Equal(t, want.status, invs[i].Status, i)
		require.Equal(t, want.code, invs[i].ErrorCode, i)
		require.Equal(t, want.faulted, invs[i].Faulted, i)
	}
	require.Zero(t, b.srv.PendingFaults("fn"))
}

func TestThrottleWithoutRetryAfter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.Fail("fn", lambdatest.Throttle(1, 0))
	_, err := b.invoke("fn")
	var tmr *types.TooManyRequestsException
	require.ErrorAs(t, err, &tmr)
	require.Nil(t, tmr.RetryAfterSeconds)
}

func TestServerError(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.Register("fn", lambdatest.OK())
	b.srv.Fail("fn", lambdatest.ServerError(1))

	_, err := b.invoke("fn")
	var se *types.ServiceException
	require.ErrorAs(t, err, &se)
	require.Equal(t, "Service", aws.ToString(se.Type))
	require.NotEmpty(t, aws.ToString(se.Message))
	require.Equal(t, smithy.FaultServer, se.ErrorFault())
	requireStatus(t, err, 500)
}

func TestErrorCodes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.Register("fn", lambdatest.OK())

	t.Run("EC2Throttled", func(t *testing.T) {
		b.srv.Fail("fn", lambdatest.Error(1, 502, "EC2ThrottledException"))
		_, err := b.invoke("fn")
		var e *types.EC2ThrottledException
		require.ErrorAs(t, err, &e)
		requireStatus(t, err, 502)
	})

	t.Run("StatusFromCode", func(t *testing.T) {
		b.srv.Fail("fn", lambdatest.Fault{Times: 1, Code: "ResourceConflictException", Message: "busy"})
		_, err := b.invoke("fn")
		var e *types.ResourceConflictException
		require.ErrorAs(t, err, &e)
		require.Equal(t, "busy", aws.ToString(e.Message))
		requireStatus(t, err, 409)
	})

	t.Run("CodeFromStatus", func(t *testing.T) {
		b.srv.Fail("fn", lambdatest.Fault{Times: 1, Status: 503})
		_, err := b.invoke("fn")
		var e *types.ServiceException
		require.ErrorAs(t, err, &e)
		requireStatus(t, err, 503)
	})

	t.Run("Unmodelled", func(t *testing.T) {
		b.srv.Fail("fn", lambdatest.Error(1, 504, "GatewayTimeout"))
		_, err := b.invoke("fn")
		var generic *smithy.GenericAPIError
		require.ErrorAs(t, err, &generic)
		require.Equal(t, "GatewayTimeout", generic.ErrorCode())
		requireStatus(t, err, 504)
	})
}

func TestFaultQueue(t *testing.T) {
	t.Parallel()

	t.Run("InOrder", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.srv.Register("fn", lambdatest.OK())
		b.srv.Fail("fn", lambdatest.Throttle(1, time.Second))
		b.srv.Fail("fn", lambdatest.ServerError(2))
		b.srv.Fail("fn", lambdatest.Error(1, 502, "EC2ThrottledException"))
		require.Equal(t, 3, b.srv.PendingFaults("fn"))

		want := []string{"TooManyRequestsException", "ServiceException", "ServiceException", "EC2ThrottledException", ""}
		for _, code := range want {
			_, err := b.invoke("fn")
			if code == "" {
				require.NoError(t, err)
				continue
			}
			var apiErr smithy.APIError
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, code, apiErr.ErrorCode())
		}
		require.Zero(t, b.srv.PendingFaults("fn"))
	})

	t.Run("UntilCleared", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.srv.Register("fn", lambdatest.OK())
		b.srv.Fail("fn", lambdatest.ServerError(0))
		b.srv.Fail("fn", lambdatest.Throttle(1, 0)) // never reached
		for range 5 {
			_, err := b.invoke("fn")
			var se *types.ServiceException
			require.ErrorAs(t, err, &se)
		}
		b.srv.ClearFaults("123456789012:function:fn") // any name form
		_, err := b.invoke("fn")
		require.NoError(t, err)
		require.Equal(t, 6, b.srv.Count("fn"))
	})

	t.Run("PerFunction", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.srv.Register("a", lambdatest.OK())
		b.srv.Register("b", lambdatest.OK())
		b.srv.Fail("a", lambdatest.ServerError(1))
		_, err := b.invoke("b")
		require.NoError(t, err, "a's fault does not touch b")
		_, err = b.invoke("a")
		require.Error(t, err)
	})

	t.Run("EveryFunction", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.srv.Register("a", lambdatest.OK())
		b.srv.Register("b", lambdatest.OK())
		b.srv.Fail("a", lambdatest.Error(1, 502, "ENILimitReachedException"))
		b.srv.Fail("", lambdatest.Throttle(2, 0))

		codes := func(fn string) string {
			_, err := b.invoke(fn)
			var apiErr smithy.APIError
			if errors.As(err, &apiErr) {
				return apiErr.ErrorCode()
			}
			require.NoError(t, err)
			return ""
		}
		require.Equal(t, "ENILimitReachedException", codes("a"), "the function's own queue first")
		require.Equal(t, "TooManyRequestsException", codes("a"))
		require.Equal(t, "TooManyRequestsException", codes("b"))
		require.Equal(t, "", codes("b"))
		require.Equal(t, "", codes("a"))
	})

	t.Run("UnregisteredFunction", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.srv.Fail("ghost", lambdatest.Throttle(1, 0))
		_, err := b.invoke("ghost")
		var tmr *types.TooManyRequestsException
		require.ErrorAs(t, err, &tmr, "faults apply before the function lookup")
		_, err = b.invoke("ghost")
		var nf *types.ResourceNotFoundException
		require.ErrorAs(t, err, &nf)
	})

	t.Run("ClearAll", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.srv.Register("a", lambdatest.OK())
		b.srv.Fail("a", lambdatest.ServerError(0))
		b.srv.Fail("", lambdatest.ServerError(0))
		b.srv.ClearFaults("")
		require.Zero(t, b.srv.PendingFaults("a"))
		require.Zero(t, b.srv.PendingFaults(""))
		_, err := b.invoke("a")
		require.NoError(t, err)
	})
}

func TestLatency(t *testing.T) {
	t.Parallel()

	t.Run("Delays", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.srv.Register("fn", lambdatest.OK())
		f := lambdatest.Latency(50 * time.Millisecond)
		f.Times = 1
		b.srv.Fail("fn", f)
		start := time.Now()
		_, err := b.invoke("fn")
		require.NoError(t, err)
		require.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)
		inv := b.srv.Invocations("fn")[0]
		require.True(t, inv.Faulted)
		require.Equal(t, 202, inv.Status)
	})

	t.Run("ThenError", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		f := lambdatest.ServerError(1)
		f.Latency = 10 * time.Millisecond
		b.srv.Fail("fn", f)
		_, err := b.invoke("fn")
		var se *types.ServiceException
		require.ErrorAs(t, err, &se)
	})

	t.Run("CallerTimesOut", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.srv.Register("fn", lambdatest.OK())
		b.srv.Fail("fn", lambdatest.Fault{Times: 1, Latency: time.Minute})

		// Long enough for the request to reach the server on a loaded
		// machine (at 50ms it sometimes did not, and nothing was recorded),
		// far short of the fault's minute.
		ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
		defer cancel()
		_, err := b.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("fn")})
		require.ErrorIs(t, err, context.DeadlineExceeded)

		// The server notices the caller left, ends the wait and records the
		// attempt without an answer.
		require.NoError(t, b.srv.WaitCount(b.ctx, "fn", 1))
		inv := b.srv.Invocations("fn")[0]
		require.True(t, inv.Faulted)
		require.Zero(t, inv.Status)

		_, err = b.invoke("fn")
		require.NoError(t, err, "the fault is used up")
	})

	t.Run("OfflineEndsTheWait", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.srv.Fail("fn", lambdatest.Fault{Times: 1, Latency: time.Minute})
		done := make(chan error, 1)
		go func() {
			_, err := b.invoke("fn")
			done <- err
		}()
		// The request is recorded only when the wait ends, so wait for the
		// fault to have been taken instead.
		require.NoError(t, b.srv.WaitFor(b.ctx, func(s *lambdatest.Server) bool {
			return s.PendingFaults("fn") == 0
		}))
		b.srv.Offline()
		require.Error(t, <-done)
		require.NoError(t, b.srv.WaitCount(b.ctx, "fn", 1))
		require.Zero(t, b.srv.Invocations("fn")[0].Status)
		require.NoError(t, b.srv.Online())
	})
}

func TestDropConnection(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.Register("fn", lambdatest.OK())
	b.srv.Fail("fn", lambdatest.DropConnection(1))

	_, err := b.invoke("fn")
	requireNoResponse(t, err)
	require.ErrorIs(t, err, io.EOF, "the server closed the connection after reading the request")

	out, err := b.invoke("fn")
	require.NoError(t, err)
	require.Equal(t, int32(202), out.StatusCode)

	invs := b.srv.Invocations("fn")
	require.Len(t, invs, 2)
	require.True(t, invs[0].Faulted)
	require.Zero(t, invs[0].Status, "no answer was sent")
}
