package retry_test

import (
	"errors"
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher/retry"
)

func TestFromErrorNil(t *testing.T) {
	t.Parallel()
	require.Nil(t, retry.FromError(nil))
}

func TestFromErrorThrottled(t *testing.T) {
	t.Parallel()
	orig := apiError(429, &types.TooManyRequestsException{
		Message:           aws.String("Rate Exceeded."),
		RetryAfterSeconds: aws.String("3"),
		Reason:            types.ThrottleReasonConcurrentInvocationLimitExceeded,
		Type:              aws.String("User"),
	})
	ie := retry.FromError(orig)
	require.Equal(t, retry.Throttled, ie.Class)
	require.Equal(t, "TooManyRequestsException", ie.Code)
	require.Equal(t, "Rate Exceeded.", ie.Message)
	require.Equal(t, 429, ie.StatusCode)
	require.Equal(t, "req-1", ie.RequestID)
	require.Equal(t, 3*time.Second, ie.RetryAfter)
	require.Equal(t, "ConcurrentInvocationLimitExceeded", ie.Reason)
	require.Same(t, orig, ie.Err)
	require.Equal(t, "retry: throttled: TooManyRequestsException (HTTP 429, request req-1, "+
		"reason ConcurrentInvocationLimitExceeded, retry after 3s): Rate Exceeded.", ie.Error())

	// The original stays reachable.
	require.ErrorIs(t, ie, orig)
	var tooMany *types.TooManyRequestsException
	require.ErrorAs(t, ie, &tooMany)
	var op *smithy.OperationError
	require.ErrorAs(t, ie, &op)
}

func TestFromErrorRetryAfter(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   string
		want time.Duration
	}{
		{"Seconds", "3", 3 * time.Second},
		{"Spaces", " 7 ", 7 * time.Second},
		{"Fraction", "1.5", 1500 * time.Millisecond},
		{"Zero", "0", 0},
		{"Negative", "-1", 0},
		{"Garbage", "soon", 0},
		{"HTTPDate", "Wed, 21 Oct 2015 07:28:00 GMT", 0},
		{"Huge", "99999999999999999999", 0},
		{"Empty", "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ie := retry.FromError(apiError(429, &types.TooManyRequestsException{RetryAfterSeconds: aws.String(tc.in)}))
			require.Equal(t, tc.want, ie.RetryAfter)
		})
	}
}

func TestFromErrorRetryAfterHeader(t *testing.T) {
	t.Parallel()
	// An unmodelled 429 (a proxy, an old front end) still carries the header.
	orig := operationError(responseError(429, "req-2", http.Header{"Retry-After": {"5"}},
		&smithy.GenericAPIError{Code: "UnknownError", Message: "slow down"}))
	ie := retry.FromError(orig)
	require.Equal(t, retry.Throttled, ie.Class)
	require.Equal(t, 5*time.Second, ie.RetryAfter)
	require.Equal(t, "UnknownError", ie.Code)
	require.Equal(t, "req-2", ie.RequestID)
	require.Empty(t, ie.Reason)

	// The modelled field wins over the header.
	orig = operationError(responseError(429, "req-3", http.Header{"Retry-After": {"5"}},
		&types.TooManyRequestsException{RetryAfterSeconds: aws.String("2")}))
	require.Equal(t, 2*time.Second, retry.FromError(orig).RetryAfter)
}

func TestFromErrorPermanent(t *testing.T) {
	t.Parallel()
	orig := apiError(413, &smithy.GenericAPIError{Code: "RequestEntityTooLargeException", Message: "Request must be smaller than 1048576 bytes"})
	ie := retry.FromError(orig)
	require.Equal(t, &retry.InvokeError{
		Class:      retry.Permanent,
		Code:       "RequestEntityTooLargeException",
		Message:    "Request must be smaller than 1048576 bytes",
		StatusCode: 413,
		RequestID:  "req-1",
		Err:        orig,
	}, ie)
	require.Equal(t, "retry: permanent: RequestEntityTooLargeException (HTTP 413, request req-1): "+
		"Request must be smaller than 1048576 bytes", ie.Error())
}

func TestFromErrorTransport(t *testing.T) {
	t.Parallel()
	orig := transportError(dialError(syscall.ECONNREFUSED))
	ie := retry.FromError(orig)
	require.Equal(t, retry.Unreachable, ie.Class)
	require.Empty(t, ie.Code)
	require.Zero(t, ie.StatusCode)
	require.Empty(t, ie.RequestID)
	require.Zero(t, ie.RetryAfter)
	require.Equal(t, orig.Error(), ie.Message)
	require.Equal(t, "retry: unreachable: "+orig.Error(), ie.Error())
	require.ErrorIs(t, ie, syscall.ECONNREFUSED)
}

func TestFromErrorKeepsInvokeError(t *testing.T) {
	t.Parallel()
	inner := &retry.InvokeError{Class: retry.Permanent, Code: "InvalidRequestContentException"}
	require.Same(t, inner, retry.FromError(inner))
	require.Same(t, inner, retry.FromError(fmt.Errorf("send: %w", inner)))
}

// TestFromErrorRedactsInvokeError: an InvokeError built by hand (a fake
// client's) comes back with its message redacted, and the caller's value
// is left as it was.
func TestFromErrorRedactsInvokeError(t *testing.T) {
	t.Parallel()
	msg := "refused: x-amz-security-token:" + testToken
	inner := &retry.InvokeError{Class: retry.Permanent, Code: "InvalidRequestContentException", Message: msg}
	ie := retry.FromError(fmt.Errorf("send: %w", inner))
	require.NotContains(t, ie.Message, testToken)
	require.Contains(t, ie.Message, "x-amz-security-token:"+retry.Redacted)
	require.Equal(t, "InvalidRequestContentException", ie.Code)
	require.Equal(t, msg, inner.Message, "the caller's InvokeError is not changed")
}

func TestInvokeErrorString(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		err  *retry.InvokeError
		want string
	}{
		{"CodeOnly", &retry.InvokeError{Class: retry.Transient, Code: "ServiceException"},
			"retry: transient: ServiceException"},
		{"CodeAndStatus", &retry.InvokeError{Class: retry.Transient, Code: "ServiceException", StatusCode: 500, Message: "oops"},
			"retry: transient: ServiceException (HTTP 500): oops"},
		{"NoCodeNoMessage", &retry.InvokeError{Class: retry.Transient, Err: errors.New("EOF")},
			"retry: transient: EOF"},
		{"Empty", &retry.InvokeError{}, "retry: Class(0): "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, tc.err.Error())
		})
	}
}
