package lambdatest_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher/lambdatest"
)

func requestID(t *testing.T, out *lambda.InvokeOutput) string {
	t.Helper()
	id, ok := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	require.True(t, ok, "no request id in the result metadata")
	require.NotEmpty(t, id)
	return id
}

func TestInvokeEvent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var ran atomic.Int32
	b.srv.Register("fn", func(_ context.Context, inv lambdatest.Invocation) ([]byte, error) {
		ran.Add(1)
		require.Equal(t, types.InvocationTypeEvent, inv.InvocationType)
		return []byte(`"ignored"`), nil
	})

	out, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{
		FunctionName:   aws.String("fn"),
		InvocationType: types.InvocationTypeEvent,
		Payload:        []byte(`{"n":1}`),
	})
	require.NoError(t, err)
	require.Equal(t, int32(202), out.StatusCode)
	require.Empty(t, out.Payload)
	require.Nil(t, out.FunctionError)
	require.Equal(t, int32(1), ran.Load(), "the handler runs before the answer")

	invs := b.srv.Invocations("fn")
	require.Len(t, invs, 1)
	inv := invs[0]
	require.Equal(t, "fn", inv.Function)
	require.Equal(t, types.InvocationTypeEvent, inv.InvocationType)
	require.JSONEq(t, `{"n":1}`, string(inv.Payload))
	require.Equal(t, requestID(t, out), inv.RequestID)
	require.Equal(t, 202, inv.Status)
	require.Empty(t, inv.ErrorCode)
	require.False(t, inv.Faulted)
	require.NoError(t, inv.Err)
	require.False(t, inv.Received.IsZero())

	t.Run("HandlerErrorIsInvisible", func(t *testing.T) {
		b.srv.Register("failing", lambdatest.Raise("Boom", "async failure"))
		out, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{
			FunctionName:   aws.String("failing"),
			InvocationType: types.InvocationTypeEvent,
		})
		require.NoError(t, err)
		require.Equal(t, int32(202), out.StatusCode)
		require.Nil(t, out.FunctionError)

		inv := b.find(t, requestID(t, out))
		require.EqualError(t, inv.Err, "async failure")
		require.Equal(t, 202, inv.Status)
	})
}

func TestInvokeDryRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var ran atomic.Int32
	b.srv.Register("fn", func(context.Context, lambdatest.Invocation) ([]byte, error) {
		ran.Add(1)
		return nil, nil
	})

	out, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{
		FunctionName:   aws.String("fn"),
		InvocationType: types.InvocationTypeDryRun,
		Payload:        []byte(`{}`),
	})
	require.NoError(t, err)
	require.Equal(t, int32(204), out.StatusCode)
	require.Zero(t, ran.Load(), "DryRun must not run the handler")

	inv := b.find(t, requestID(t, out))
	require.Equal(t, types.InvocationTypeDryRun, inv.InvocationType)
	require.Equal(t, 204, inv.Status)
	require.Equal(t, 1, b.srv.Count("fn"))
}

func TestInvokeRequestResponse(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.Register("echo", lambdatest.Echo())
	b.srv.Register("plain", func(context.Context, lambdatest.Invocation) ([]byte, error) {
		return nil, errors.New("boom")
	})
	b.srv.Register("typed", lambdatest.Raise("OrderRejected", "order 42 rejected"))
	b.srv.Register("wrapped", func(context.Context, lambdatest.Invocation) ([]byte, error) {
		return nil, fmt.Errorf("charge: %w", &lambdatest.FunctionError{Type: "CardDeclined", Message: "declined"})
	})
	b.srv.Register("panics", func(context.Context, lambdatest.Invocation) ([]byte, error) {
		panic("kaboom")
	})
	b.srv.Register("empty", lambdatest.OK())

	t.Run("Payload", func(t *testing.T) {
		out, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{
			FunctionName: aws.String("echo"),
			Payload:      []byte(`{"hello":"world"}`),
		})
		require.NoError(t, err)
		require.Equal(t, int32(200), out.StatusCode)
		require.JSONEq(t, `{"hello":"world"}`, string(out.Payload))
		require.Nil(t, out.FunctionError)
		require.Equal(t, "$LATEST", aws.ToString(out.ExecutedVersion))

		inv := b.find(t, requestID(t, out))
		require.Equal(t, types.InvocationTypeRequestResponse, inv.InvocationType,
			"an absent X-Amz-Invocation-Type means RequestResponse")
		require.Equal(t, 200, inv.Status)
	})

	t.Run("ExplicitTypeAndVersion", func(t *testing.T) {
		out, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{
			FunctionName:   aws.String("echo"),
			InvocationType: types.InvocationTypeRequestResponse,
			Qualifier:      aws.String("7"),
			Payload:        []byte(`[1,2,3]`),
		})
		require.NoError(t, err)
		require.Equal(t, int32(200), out.StatusCode)
		require.Equal(t, `[1,2,3]`, string(out.Payload))
		require.Equal(t, "7", aws.ToString(out.ExecutedVersion))
	})

	t.Run("EmptyResponse", func(t *testing.T) {
		out, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{FunctionName: aws.String("empty")})
		require.NoError(t, err)
		require.Equal(t, int32(200), out.StatusCode)
		require.Empty(t, out.Payload)
		require.Nil(t, out.FunctionError)
	})

	functionErrors := []struct {
		name, function, errorType, errorMessage string
	}{
		{"PlainError", "plain", "errorString", "boom"},
		{"FunctionError", "typed", "OrderRejected", "order 42 rejected"},
		{"WrappedFunctionError", "wrapped", "CardDeclined", "charge: declined"},
		{"Panic", "panics", "string", "kaboom"},
	}
	for _, tc := range functionErrors {
		t.Run(tc.name, func(t *testing.T) {
			out, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{
				FunctionName: aws.String(tc.function),
				Payload:      []byte(`{}`),
			})
			require.NoError(t, err, "a function error is not an API error")
			require.Equal(t, int32(200), out.StatusCode)
			require.Equal(t, "Unhandled", aws.ToString(out.FunctionError))

			var body struct {
				ErrorMessage string `json:"errorMessage"`
				ErrorType    string `json:"errorType"`
			}
			require.NoError(t, json.Unmarshal(out.Payload, &body))
			require.Equal(t, tc.errorMessage, body.ErrorMessage)
			require.Equal(t, tc.errorType, body.ErrorType)

			inv := b.find(t, requestID(t, out))
			require.Error(t, inv.Err)
			require.Equal(t, 200, inv.Status)
			require.Empty(t, inv.ErrorCode)
		})
	}
}

func TestFunctionNameForms(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.Register("my-function_1", lambdatest.Echo())

	const arn = "arn:aws:lambda:us-east-1:123456789012:function:my-function_1"
	cases := []struct {
		name, functionName, qualifier, wantQualifier string
	}{
		{"Bare", "my-function_1", "", ""},
		{"BareWithQualifier", "my-function_1:live", "", "live"},
		{"BareWithQueryQualifier", "my-function_1", "3", "3"},
		{"BareWithBothQualifiers", "my-function_1:3", "3", "3"},
		{"Latest", "my-function_1:$LATEST", "", "$LATEST"},
		{"PartialARN", "123456789012:function:my-function_1", "", ""},
		{"PartialARNWithQualifier", "123456789012:function:my-function_1:live", "", "live"},
		{"PartialARNWithQueryQualifier", "123456789012:function:my-function_1", "live", "live"},
		{"FullARN", arn, "", ""},
		{"FullARNWithQualifier", arn + ":12", "", "12"},
		{"FullARNWithQueryQualifier", arn, "prod", "prod"},
		{"OtherPartition", "arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:my-function_1", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := &lambda.InvokeInput{FunctionName: aws.String(tc.functionName), Payload: []byte(`{}`)}
			if tc.qualifier != "" {
				in.Qualifier = aws.String(tc.qualifier)
			}
			out, err := b.client.Invoke(b.ctx, in)
			require.NoError(t, err)
			require.Equal(t, int32(200), out.StatusCode)

			inv := b.find(t, requestID(t, out))
			require.Equal(t, "my-function_1", inv.Function)
			require.Equal(t, tc.wantQualifier, inv.Qualifier)
		})
	}

	t.Run("CountAcceptsEveryForm", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.srv.Register(arn, lambdatest.OK())
		_, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{FunctionName: aws.String("my-function_1:v2")})
		require.NoError(t, err)
		require.Equal(t, 1, b.srv.Count("my-function_1"))
		require.Equal(t, 1, b.srv.Count(arn+":v2"))
		require.Equal(t, 1, b.srv.Count("123456789012:function:my-function_1"))
		require.Len(t, b.srv.Invocations(arn), 1)
	})

	t.Run("QualifierMismatch", func(t *testing.T) {
		t.Parallel()
		_, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{
			FunctionName: aws.String("my-function_1:a"),
			Qualifier:    aws.String("b"),
		})
		var ipv *types.InvalidParameterValueException
		require.ErrorAs(t, err, &ipv)
		require.Contains(t, ipv.ErrorMessage(), "does not match")
	})

	invalid := []string{
		"has space",
		"bad!name",
		strings.Repeat("x", 65),
		"fn:",
		"fn:a:b",
		"arn:aws:s3:us-east-1:123456789012:function:fn",
		"arn:aws:lambda:us-east-1:12345:function:fn",
		"123456789012:layer:fn",
	}
	for _, name := range invalid {
		t.Run("Invalid/"+name[:min(len(name), 20)], func(t *testing.T) {
			t.Parallel()
			_, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{FunctionName: aws.String(name)})
			var apiErr smithy.APIError
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, "ValidationException", apiErr.ErrorCode())
			requireStatus(t, err, 400)
		})
	}
}

func requireStatus(t *testing.T, err error, status int) {
	t.Helper()
	var re *awshttp.ResponseError
	require.ErrorAs(t, err, &re)
	require.Equal(t, status, re.HTTPStatusCode())
}

func TestClientContext(t *testing.T) {
	t.Parallel()
	b := setup(t)
	seen := make(chan string, 2)
	b.srv.Register("fn", func(_ context.Context, inv lambdatest.Invocation) ([]byte, error) {
		seen <- inv.ClientContext
		return nil, nil
	})
	const cc = `{"custom":{"tenant":"acme"}}`
	enc := base64.StdEncoding.EncodeToString([]byte(cc))

	out, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{FunctionName: aws.String("fn"), ClientContext: aws.String(enc)})
	require.NoError(t, err)
	require.JSONEq(t, cc, <-seen, "synchronous handlers see the client context")
	require.JSONEq(t, cc, b.find(t, requestID(t, out)).ClientContext)

	out, err = b.client.Invoke(b.ctx, &lambda.InvokeInput{
		FunctionName:   aws.String("fn"),
		ClientContext:  aws.String(enc),
		InvocationType: types.InvocationTypeEvent,
	})
	require.NoError(t, err)
	require.Empty(t, <-seen, "Lambda does not pass the client context to async invocations")
	require.JSONEq(t, cc, b.find(t, requestID(t, out)).ClientContext, "the record keeps it")

	for name, bad := range map[string]string{
		"NotBase64": "!!not base64!!",
		"NotJSON":   base64.StdEncoding.EncodeToString([]byte("not json")),
		"TooLong":   base64.StdEncoding.EncodeToString([]byte(`"` + strings.Repeat("x", 3000) + `"`)),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{FunctionName: aws.String("fn"), ClientContext: aws.String(bad)})
			var ipv *types.InvalidParameterValueException
			require.ErrorAs(t, err, &ipv)
			requireStatus(t, err, 400)
		})
	}
}

func TestUnknownFunction(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{FunctionName: aws.String("nope:live")})

	var nf *types.ResourceNotFoundException
	require.ErrorAs(t, err, &nf)
	require.Equal(t, "ResourceNotFoundException", nf.ErrorCode())
	// The model spells this member "Message" but the server writes
	// "message", as Lambda does for other errors: the SDK accepts either.
	require.Equal(t, "Function not found: arn:aws:lambda:us-east-1:123456789012:function:nope:live", aws.ToString(nf.Message))
	require.Equal(t, "User", aws.ToString(nf.Type))
	requireStatus(t, err, 404)

	invs := b.srv.Invocations("nope")
	require.Len(t, invs, 1, "refused requests are recorded too")
	require.Equal(t, 404, invs[0].Status)
	require.Equal(t, "ResourceNotFoundException", invs[0].ErrorCode)
}

func TestPayloadValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.Register("fn", lambdatest.Echo())

	t.Run("InvalidJSON", func(t *testing.T) {
		t.Parallel()
		_, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{FunctionName: aws.String("fn"), Payload: []byte(`{not json`)})
		var irc *types.InvalidRequestContentException
		require.ErrorAs(t, err, &irc)
		require.Contains(t, aws.ToString(irc.Message), "Could not parse request body into json")
		requireStatus(t, err, 400)
	})

	t.Run("InvalidJSONEvent", func(t *testing.T) {
		t.Parallel()
		_, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{
			FunctionName:   aws.String("fn"),
			InvocationType: types.InvocationTypeEvent,
			Payload:        []byte(`plain text`),
		})
		var irc *types.InvalidRequestContentException
		require.ErrorAs(t, err, &irc)
	})

	t.Run("EmptyIsAllowed", func(t *testing.T) {
		t.Parallel()
		for _, typ := range []types.InvocationType{types.InvocationTypeEvent, types.InvocationTypeRequestResponse} {
			out, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{FunctionName: aws.String("fn"), InvocationType: typ})
			require.NoError(t, err)
			require.Nil(t, b.find(t, requestID(t, out)).Payload)
		}
	})
}

func TestPayloadTooLarge(t *testing.T) {
	t.Parallel()

	jsonOfSize := func(n int) []byte { return []byte(`"` + strings.Repeat("x", n-2) + `"`) }
	requireTooLarge := func(t *testing.T, err error) {
		t.Helper()
		// RequestEntityTooLargeException is not in Lambda's model: the SDK
		// surfaces it as a generic API error carrying the code.
		var generic *smithy.GenericAPIError
		require.ErrorAs(t, err, &generic)
		require.Equal(t, "RequestEntityTooLargeException", generic.ErrorCode())
		require.Contains(t, generic.ErrorMessage(), "Request must be smaller than")
		requireStatus(t, err, 413)
	}

	t.Run("DefaultLimits", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.srv.Register("fn", lambdatest.OK())

		_, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{
			FunctionName:   aws.String("fn"),
			InvocationType: types.InvocationTypeEvent,
			Payload:        jsonOfSize(lambdatest.DefaultEventPayloadLimit),
		})
		require.NoError(t, err, "exactly the limit is accepted")

		_, err = b.client.Invoke(b.ctx, &lambda.InvokeInput{
			FunctionName:   aws.String("fn"),
			InvocationType: types.InvocationTypeEvent,
			Payload:        jsonOfSize(lambdatest.DefaultEventPayloadLimit + 1),
		})
		requireTooLarge(t, err)

		_, err = b.client.Invoke(b.ctx, &lambda.InvokeInput{
			FunctionName: aws.String("fn"),
			Payload:      jsonOfSize(lambdatest.DefaultEventPayloadLimit + 1),
		})
		require.NoError(t, err, "the synchronous limit is higher")

		_, err = b.client.Invoke(b.ctx, &lambda.InvokeInput{
			FunctionName: aws.String("fn"),
			Payload:      jsonOfSize(lambdatest.DefaultSyncPayloadLimit + 1),
		})
		requireTooLarge(t, err)

		invs := b.srv.Invocations("fn")
		require.Len(t, invs, 4)
		require.Equal(t, []int{202, 413, 200, 413}, []int{invs[0].Status, invs[1].Status, invs[2].Status, invs[3].Status})
		require.Nil(t, invs[1].Payload)
	})

	t.Run("Options", func(t *testing.T) {
		t.Parallel()
		b := setup(t, lambdatest.WithEventPayloadLimit(16), lambdatest.WithSyncPayloadLimit(32))
		b.srv.Register("fn", lambdatest.OK())
		_, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{
			FunctionName: aws.String("fn"), InvocationType: types.InvocationTypeEvent, Payload: jsonOfSize(17),
		})
		requireTooLarge(t, err)
		_, err = b.client.Invoke(b.ctx, &lambda.InvokeInput{FunctionName: aws.String("fn"), Payload: jsonOfSize(32)})
		require.NoError(t, err)
		_, err = b.client.Invoke(b.ctx, &lambda.InvokeInput{FunctionName: aws.String("fn"), Payload: jsonOfSize(33)})
		requireTooLarge(t, err)
	})
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.Register("fn", lambdatest.OK())

	out, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{FunctionName: aws.String("fn")})
	require.NoError(t, err)
	okID := requestID(t, out)
	require.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, okID)

	_, err = b.client.Invoke(b.ctx, &lambda.InvokeInput{FunctionName: aws.String("missing")})
	var re *awshttp.ResponseError
	require.ErrorAs(t, err, &re)
	errID := re.ServiceRequestID()
	require.NotEmpty(t, errID)
	require.NotEqual(t, okID, errID)
	require.Equal(t, 404, b.find(t, errID).Status)

	b.srv.Fail("fn", lambdatest.ServerError(1))
	_, err = b.client.Invoke(b.ctx, &lambda.InvokeInput{FunctionName: aws.String("fn")})
	require.ErrorAs(t, err, &re)
	require.True(t, b.find(t, re.ServiceRequestID()).Faulted)
}

// rawDo sends a request with a client of its own (not the SDK), closing its
// connections afterwards.
func rawDo(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, body
}

func TestRawProtocol(t *testing.T) {
	t.Parallel()
	b := setup(t, lambdatest.WithSyncPayloadLimit(64))
	b.srv.Register("fn", lambdatest.Echo())

	t.Run("UnknownRoute", func(t *testing.T) {
		req, err := http.NewRequestWithContext(b.ctx, http.MethodGet, b.srv.URL()+"/2015-03-31/functions/fn", nil)
		require.NoError(t, err)
		resp, body := rawDo(t, req)
		require.Equal(t, 404, resp.StatusCode)
		require.Equal(t, "UnknownOperationException", resp.Header.Get("X-Amzn-ErrorType"))
		require.NotEmpty(t, resp.Header.Get("x-amzn-RequestId"))
		require.True(t, json.Valid(body))
	})

	t.Run("InvalidInvocationType", func(t *testing.T) {
		req, err := http.NewRequestWithContext(b.ctx, http.MethodPost, b.srv.URL()+"/2015-03-31/functions/fn/invocations", nil)
		require.NoError(t, err)
		req.Header.Set("X-Amz-Invocation-Type", "Later")
		resp, _ := rawDo(t, req)
		require.Equal(t, 400, resp.StatusCode)
		require.Equal(t, "ValidationException", resp.Header.Get("X-Amzn-ErrorType"))
	})

	t.Run("Chunked", func(t *testing.T) {
		// An io.Reader of unknown length is sent chunked.
		body := io.MultiReader(strings.NewReader(`{"a":`), strings.NewReader(`1}`))
		req, err := http.NewRequestWithContext(b.ctx, http.MethodPost,
			b.srv.URL()+"/2015-03-31/functions/123456789012%3Afunction%3Afn/invocations?Qualifier=v1", body)
		require.NoError(t, err)
		resp, got := rawDo(t, req)
		require.Equal(t, 200, resp.StatusCode)
		require.JSONEq(t, `{"a":1}`, string(got))
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		inv := b.find(t, resp.Header.Get("X-Amzn-RequestId"))
		require.Equal(t, "v1", inv.Qualifier)
	})

	t.Run("ChunkedTooLarge", func(t *testing.T) {
		body := io.MultiReader(strings.NewReader(`"`), strings.NewReader(strings.Repeat("x", 100)+`"`))
		req, err := http.NewRequestWithContext(b.ctx, http.MethodPost, b.srv.URL()+"/2015-03-31/functions/fn/invocations", body)
		require.NoError(t, err)
		resp, _ := rawDo(t, req)
		require.Equal(t, 413, resp.StatusCode)
		require.Equal(t, "RequestEntityTooLargeException", resp.Header.Get("X-Amzn-ErrorType"))
	})
}

func TestRecording(t *testing.T) {
	t.Parallel()

	t.Run("ResetAndCount", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.srv.Register("a", lambdatest.OK())
		b.srv.Register("b", lambdatest.OK())
		for _, fn := range []string{"a", "b", "a"} {
			_, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{FunctionName: aws.String(fn)})
			require.NoError(t, err)
		}
		require.Equal(t, 2, b.srv.Count("a"))
		require.Equal(t, 1, b.srv.Count("b"))
		require.Equal(t, 3, b.srv.Count(""))
		require.Zero(t, b.srv.Count("c"))
		require.Len(t, b.srv.Invocations(""), 3)

		// The copy is the caller's.
		invs := b.srv.Invocations("a")
		invs[0].Function = "changed"
		require.Equal(t, "a", b.srv.Invocations("a")[0].Function)

		b.srv.Reset()
		require.Zero(t, b.srv.Count(""))
		require.Empty(t, b.srv.Invocations(""))
		_, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{FunctionName: aws.String("a")})
		require.NoError(t, err, "handlers survive Reset")
		require.Equal(t, 1, b.srv.Count("a"))
	})

	t.Run("RecordLimit", func(t *testing.T) {
		t.Parallel()
		b := setup(t, lambdatest.WithRecordLimit(3))
		b.srv.Register("fn", lambdatest.OK())
		var ids []string
		for range 10 {
			out, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{FunctionName: aws.String("fn")})
			require.NoError(t, err)
			ids = append(ids, requestID(t, out))
		}
		invs := b.srv.Invocations("fn")
		require.Len(t, invs, 3)
		require.Equal(t, ids[7:], []string{invs[0].RequestID, invs[1].RequestID, invs[2].RequestID})
		require.Equal(t, 10, b.srv.Count("fn"))
	})

	t.Run("CountOnly", func(t *testing.T) {
		t.Parallel()
		b := setup(t, lambdatest.WithRecordLimit(-1))
		b.srv.Register("fn", lambdatest.OK())
		_, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{FunctionName: aws.String("fn")})
		require.NoError(t, err)
		require.Empty(t, b.srv.Invocations(""))
		require.Equal(t, 1, b.srv.Count("fn"))
	})

	t.Run("Clock", func(t *testing.T) {
		t.Parallel()
		at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
		b := setup(t, lambdatest.WithClock(func() time.Time { return at }))
		b.srv.Register("fn", lambdatest.OK())
		_, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{FunctionName: aws.String("fn")})
		require.NoError(t, err)
		require.Equal(t, at, b.srv.Invocations("fn")[0].Received)
	})
}

func TestRegisterPanics(t *testing.T) {
	t.Parallel()
	srv := lambdatest.NewServer()
	defer srv.Close()
	require.Panics(t, func() { srv.Register("fn", nil) })
	require.Panics(t, func() { srv.Register("bad name", lambdatest.OK()) })
	require.Panics(t, func() { srv.Fail("bad name", lambdatest.ServerError(1)) })
	require.Panics(t, func() { srv.Fail("fn", lambdatest.Fault{Times: -1}) })
	require.Panics(t, func() { srv.Fail("fn", lambdatest.Fault{Status: 200}) })
}

func TestWaitFor(t *testing.T) {
	t.Parallel()

	t.Run("Condition", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.srv.Register("fn", lambdatest.OK())
		done := make(chan error, 1)
		go func() {
			var err error
			for range 5 {
				if _, e := b.client.Invoke(b.ctx, &lambda.InvokeInput{
					FunctionName: aws.String("fn"), InvocationType: types.InvocationTypeEvent,
				}); e != nil {
					err = e
				}
			}
			done <- err
		}()
		require.NoError(t, b.srv.WaitCount(b.ctx, "fn", 5))
		require.NoError(t, <-done)
		require.NoError(t, b.srv.WaitFor(b.ctx, func(s *lambdatest.Server) bool {
			return len(s.Invocations("fn")) == 5
		}))
	})

	t.Run("Deadline", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ctx, cancel := context.WithTimeout(b.ctx, 20*time.Millisecond)
		defer cancel()
		err := b.srv.WaitCount(ctx, "fn", 1)
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})

	t.Run("Closed", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		waiting := make(chan error, 1)
		go func() { waiting <- b.srv.WaitCount(b.ctx, "fn", 1) }()
		b.srv.Close()
		require.ErrorIs(t, <-waiting, lambdatest.ErrClosed)
		require.ErrorIs(t, b.srv.WaitCount(b.ctx, "fn", 1), lambdatest.ErrClosed)
		require.NoError(t, b.srv.WaitCount(b.ctx, "fn", 0), "a condition that holds wins")
	})
}

func TestOfflineOnline(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.Register("fn", lambdatest.OK())
	url := b.srv.URL()

	_, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{FunctionName: aws.String("fn")})
	require.NoError(t, err)

	b.srv.Offline()
	b.srv.Offline() // idempotent
	_, err = b.client.Invoke(b.ctx, &lambda.InvokeInput{FunctionName: aws.String("fn")})
	requireConnRefused(t, err)
	require.Equal(t, 1, b.srv.Count("fn"), "nothing reaches an offline server")

	require.NoError(t, b.srv.Online())
	require.NoError(t, b.srv.Online()) // idempotent
	require.Equal(t, url, b.srv.URL(), "same address")
	out, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{FunctionName: aws.String("fn")})
	require.NoError(t, err)
	require.Equal(t, int32(200), out.StatusCode)
	require.Equal(t, 2, b.srv.Count("fn"))
}

func requireConnRefused(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	var opErr *net.OpError
	require.ErrorAs(t, err, &opErr)
	require.Equal(t, "dial", opErr.Op)
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	requireNoResponse(t, err)
}

// requireNoResponse checks that err is a transport error. The SDK wraps even
// those in *awshttp.ResponseError, with status 0 and no request id.
func requireNoResponse(t *testing.T, err error) {
	t.Helper()
	var sendErr *smithyhttp.RequestSendError
	require.ErrorAs(t, err, &sendErr, "a transport error")
	var apiErr smithy.APIError
	require.False(t, errors.As(err, &apiErr), "not an API error")
	var re *awshttp.ResponseError
	require.ErrorAs(t, err, &re)
	require.Zero(t, re.HTTPStatusCode(), "no response was received")
	require.Empty(t, re.ServiceRequestID())
}

func TestOfflineCutsInFlight(t *testing.T) {
	t.Parallel()
	b := setup(t)
	entered := make(chan struct{})
	b.srv.Register("slow", func(ctx context.Context, _ lambdatest.Invocation) ([]byte, error) {
		close(entered)
		<-ctx.Done() // cancelled when the server goes offline
		return nil, ctx.Err()
	})
	done := make(chan error, 1)
	go func() {
		_, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{FunctionName: aws.String("slow")})
		done <- err
	}()
	<-entered
	b.srv.Offline()
	err := <-done
	requireNoResponse(t, err)
	require.NoError(t, b.srv.WaitCount(b.ctx, "slow", 1))
	require.ErrorIs(t, b.srv.Invocations("slow")[0].Err, context.Canceled)
}

func TestClose(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.Register("fn", lambdatest.OK())
	_, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{FunctionName: aws.String("fn")})
	require.NoError(t, err)

	b.srv.Close()
	b.srv.Close() // idempotent
	b.srv.Offline()
	require.ErrorIs(t, b.srv.Online(), lambdatest.ErrClosed)

	_, err = b.client.Invoke(b.ctx, &lambda.InvokeInput{FunctionName: aws.String("fn")})
	requireConnRefused(t, err)
	require.Len(t, b.srv.Invocations("fn"), 1, "records stay readable")
}

// TestConcurrency has 64 workers invoke at once, each in turn async and
// sync: every call is answered right, recorded once, with a request id of
// its own.
//
// 10 calls a worker show what 50 did: the 64 workers overlap from the
// first call to the last, and each call is a round trip through the SDK,
// slow under -race. DISPATCH_SOAK=1 makes 50.
func TestConcurrency(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.Register("fn", lambdatest.Echo())
	workers, calls := 64, 10
	if os.Getenv("DISPATCH_SOAK") == "1" {
		calls = 50
	}

	var wg sync.WaitGroup
	errs := make(chan error, workers*calls)
	for w := range workers {
		wg.Go(func() {
			for i := range calls {
				typ := types.InvocationTypeEvent
				if i%2 == 1 {
					typ = types.InvocationTypeRequestResponse
				}
				payload := fmt.Appendf(nil, `{"w":%d,"i":%d}`, w, i)
				out, err := b.client.Invoke(b.ctx, &lambda.InvokeInput{
					FunctionName: aws.String("fn"), InvocationType: typ, Payload: payload,
				})
				if err == nil && typ == types.InvocationTypeRequestResponse && !bytes.Equal(out.Payload, payload) {
					err = fmt.Errorf("payload %s, want %s", out.Payload, payload)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	require.Equal(t, workers*calls, b.srv.Count("fn"))
	invs := b.srv.Invocations("fn")
	require.Len(t, invs, workers*calls)
	ids := make(map[string]bool, len(invs))
	payloads := make(map[string]bool, len(invs))
	for _, inv := range invs {
		ids[inv.RequestID] = true
		payloads[string(inv.Payload)] = true
	}
	require.Len(t, ids, workers*calls, "request ids are unique")
	require.Len(t, payloads, workers*calls, "every payload was recorded")
}

func BenchmarkInvoke(b *testing.B) {
	srv := lambdatest.NewServer(lambdatest.WithRecordLimit(-1))
	defer srv.Close()
	srv.Register("fn", lambdatest.OK())
	client := srv.Client()
	in := &lambda.InvokeInput{
		FunctionName:   aws.String("fn"),
		InvocationType: types.InvocationTypeEvent,
		Payload:        []byte(`{"id":"order-42","amount":1999}`),
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := client.Invoke(context.Background(), in); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
