package deadletter_test

import (
	"encoding/json"
	"fmt"
	"log"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher/deadletter"
)

// lambdaRecord is an on-failure destination record as Lambda writes it.
const lambdaRecord = `{
  "version": "1.0",
  "timestamp": "2019-11-14T18:16:05.568Z",
  "requestContext": {
    "requestId": "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
    "functionArn": "arn:aws:lambda:us-east-2:123456789012:function:my-function:$LATEST",
    "condition": "RetriesExhausted",
    "approximateInvokeCount": 3
  },
  "requestPayload": { "ORDER_IDS": ["9e07af03-ce31-4ff3-xmpl-36dce652cb4f"] },
  "responseContext": {
    "statusCode": 200,
    "executedVersion": "$LATEST",
    "functionError": "Unhandled"
  },
  "responsePayload": { "errorMessage": "RequestId: e4b46cbf-b738-xmpl-8880-a18cdf61200e Process exited before completing request" }
}`

// fullRecordLetter is a letter with every field set.
func fullRecordLetter() deadletter.Letter {
	est := time.FixedZone("EST", -5*3600)
	return deadletter.Letter{
		ID:           "42",
		Function:     "arn:aws:lambda:us-east-2:123456789012:function:my-function",
		Qualifier:    "$LATEST",
		Key:          "order-7",
		Payload:      []byte(`{"ORDER_IDS": ["9e07af03-ce31-4ff3-xmpl-36dce652cb4f"]}`),
		Enqueued:     time.Date(2019, 11, 14, 13, 10, 0, 0, est),
		Reason:       deadletter.RetriesExhausted,
		Attempts:     3,
		FirstAttempt: time.Date(2019, 11, 14, 13, 10, 1, 0, est),
		LastAttempt:  time.Date(2019, 11, 14, 13, 16, 4, 0, est),
		LastError: deadletter.ErrorInfo{
			Code:       "TooManyRequestsException",
			Message:    "Rate Exceeded.",
			StatusCode: 429,
			RequestID:  "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
		},
		DeadLettered: time.Date(2019, 11, 14, 13, 16, 5, 568_999_999, est),
	}
}

func decodeMap(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m), "%s", b)
	return m
}

func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

func TestReasonCondition(t *testing.T) {
	for r, want := range map[deadletter.Reason]string{
		deadletter.RetriesExhausted: "RetriesExhausted",
		deadletter.EventAgeExceeded: "EventAgeExceeded",
		deadletter.Rejected:         "RejectedByLambda",
		"something new":             "something new",
	} {
		require.Equal(t, want, r.Condition(), "reason %q", r)
	}
}

func TestRecordHasLambdasShape(t *testing.T) {
	b, err := fullRecordLetter().MarshalRecord()
	require.NoError(t, err)
	got, lambda := decodeMap(t, b), decodeMap(t, []byte(lambdaRecord))

	// The keys are Lambda's, at every level, but for executedVersion, which
	// the dispatcher does not learn.
	require.Equal(t, sortedKeys(lambda), sortedKeys(got))
	for _, k := range []string{"requestContext", "requestPayload"} {
		require.Equal(t, sortedKeys(lambda[k].(map[string]any)), sortedKeys(got[k].(map[string]any)), k)
	}
	lambdaResponse := lambda["responseContext"].(map[string]any)
	delete(lambdaResponse, "executedVersion")
	require.Equal(t, sortedKeys(lambdaResponse), sortedKeys(got["responseContext"].(map[string]any)))

	require.Equal(t, "1.0", got["version"])
	require.Equal(t, "2019-11-14T18:16:05.568Z", got["timestamp"])
	require.Equal(t, map[string]any{
		"requestId":              "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
		"functionArn":            "arn:aws:lambda:us-east-2:123456789012:function:my-function:$LATEST",
		"condition":              "RetriesExhausted",
		"approximateInvokeCount": float64(3),
	}, got["requestContext"])
	// The payload is the original JSON object, not base64.
	require.Equal(t, lambda["requestPayload"], got["requestPayload"])
	require.Equal(t, map[string]any{
		"statusCode":    float64(429),
		"functionError": "TooManyRequestsException",
	}, got["responseContext"])
	require.Equal(t, map[string]any{
		"errorMessage": "Rate Exceeded.",
		"errorType":    "TooManyRequestsException",
	}, got["responsePayload"])
}

func TestRecordRoundTrip(t *testing.T) {
	want := fullRecordLetter().Record()
	b, err := json.Marshal(want)
	require.NoError(t, err)
	var got deadletter.Record
	require.NoError(t, json.Unmarshal(b, &got))
	require.True(t, want.Timestamp.Equal(got.Timestamp), "%v != %v", want.Timestamp, got.Timestamp)
	got.Timestamp = want.Timestamp
	require.JSONEq(t, string(want.RequestPayload), string(got.RequestPayload))
	got.RequestPayload = want.RequestPayload
	require.Equal(t, want, got)

	// Lambda's own record reads into a Record.
	var lambda deadletter.Record
	require.NoError(t, json.Unmarshal([]byte(lambdaRecord), &lambda))
	require.Equal(t, 3, lambda.RequestContext.ApproximateInvokeCount)
	require.Equal(t, "$LATEST", lambda.ResponseContext.ExecutedVersion)
}

func TestRecordTimestamp(t *testing.T) {
	l := fullRecordLetter()
	r := l.Record()
	require.Equal(t, time.UTC, r.Timestamp.Location())
	require.Equal(t, 568_000_000, r.Timestamp.Nanosecond())

	// Always three digits, as Lambda writes them.
	l.DeadLettered = time.Date(2024, 2, 29, 23, 59, 59, 0, time.UTC)
	b, err := l.MarshalRecord()
	require.NoError(t, err)
	require.Equal(t, "2024-02-29T23:59:59.000Z", decodeMap(t, b)["timestamp"])

	l.DeadLettered = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	_, err = l.MarshalRecord()
	require.Error(t, err)
}

func TestRecordWithoutPayloadOrError(t *testing.T) {
	for name, payload := range map[string][]byte{
		"nil":      nil,
		"empty":    {},
		"blank":    []byte(" \n"),
		"not JSON": []byte("order 7"),
	} {
		t.Run(name, func(t *testing.T) {
			l := fullRecordLetter()
			l.Payload = payload
			l.Reason = deadletter.EventAgeExceeded
			l.Attempts = 0
			l.LastError = deadletter.ErrorInfo{} // aged out before the first attempt
			b, err := l.MarshalRecord()
			require.NoError(t, err)
			got := decodeMap(t, b)
			require.Equal(t, []string{"requestContext", "responseContext", "timestamp", "version"}, sortedKeys(got))
			require.Equal(t, map[string]any{
				"requestId":              "42", // the letter's ID, for want of Lambda's
				"functionArn":            "arn:aws:lambda:us-east-2:123456789012:function:my-function:$LATEST",
				"condition":              "EventAgeExceeded",
				"approximateInvokeCount": float64(0),
			}, got["requestContext"])
			require.Equal(t, map[string]any{"statusCode": float64(0)}, got["responseContext"])
		})
	}
}

func TestRecordTransportError(t *testing.T) {
	l := fullRecordLetter()
	l.Reason = deadletter.Rejected
	l.LastError = deadletter.ErrorInfo{Message: "dial tcp: connection refused"}
	b, err := l.MarshalRecord()
	require.NoError(t, err)
	got := decodeMap(t, b)
	require.Equal(t, "RejectedByLambda", got["requestContext"].(map[string]any)["condition"])
	require.Equal(t, "42", got["requestContext"].(map[string]any)["requestId"])
	require.Equal(t, map[string]any{"statusCode": float64(0)}, got["responseContext"])
	require.Equal(t, map[string]any{"errorMessage": "dial tcp: connection refused", "errorType": ""}, got["responsePayload"])
}

func TestRecordFunctionArn(t *testing.T) {
	const arn = "arn:aws:lambda:us-east-2:123456789012:function:"
	for _, c := range []struct{ function, qualifier, want string }{
		{"my-function", "", "my-function"},
		{"my-function", "prod", "my-function:prod"},
		{"my-function:prod", "prod", "my-function:prod"},
		{"my-function:3", "", "my-function:3"},
		{"123456789012:function:my-function", "3", "123456789012:function:my-function:3"},
		{"123456789012:function:my-function:3", "3", "123456789012:function:my-function:3"},
		{arn + "my-function", "$LATEST", arn + "my-function:$LATEST"},
		{arn + "my-function:$LATEST", "$LATEST", arn + "my-function:$LATEST"},
		// A function named like its qualifier still gets the qualifier.
		{arn + "prod", "prod", arn + "prod:prod"},
		{"function", "v1", "function:v1"},
	} {
		l := fullRecordLetter()
		l.Function, l.Qualifier = c.function, c.qualifier
		require.Equal(t, c.want, l.Record().RequestContext.FunctionArn, "%q + %q", c.function, c.qualifier)
	}
}

func TestRecordSharesNoMemory(t *testing.T) {
	l := fullRecordLetter()
	r := l.Record()
	want := string(r.RequestPayload)
	l.Payload[0] = ' '
	require.Equal(t, want, string(r.RequestPayload))
}

// A letter in the form of Lambda's on-failure destination record.
func ExampleLetter_MarshalRecord() {
	l := deadletter.Letter{
		ID:        "42",
		Function:  "my-function",
		Qualifier: "prod",
		Payload:   []byte(`{"order": 7}`),
		Reason:    deadletter.RetriesExhausted,
		Attempts:  3,
		LastError: deadletter.ErrorInfo{
			Code:       "TooManyRequestsException",
			Message:    "Rate Exceeded.",
			StatusCode: 429,
			RequestID:  "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
		},
		DeadLettered: time.Date(2019, 11, 14, 18, 16, 5, 568_000_000, time.UTC),
	}
	b, err := l.MarshalRecord()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(b))
	// Output:
	// {"version":"1.0","timestamp":"2019-11-14T18:16:05.568Z","requestContext":{"requestId":"e4b46cbf-b738-xmpl-8880-a18cdf61200e","functionArn":"my-function:prod","condition":"RetriesExhausted","approximateInvokeCount":3},"requestPayload":{"order":7},"responseContext":{"statusCode":429,"functionError":"TooManyRequestsException"},"responsePayload":{"errorMessage":"Rate Exceeded.","errorType":"TooManyRequestsException"}}
}
