package deadletter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/internal/sqstest"
)

var _ deadletter.Sink = (*deadletter.SQS)(nil)

type sqsBundle struct {
	srv   *sqstest.Server
	queue string
	sink  *deadletter.SQS
}

// newSQSClient returns the real SDK client, its retries off, pointed at srv.
func newSQSClient(srv *sqstest.Server) *sqs.Client {
	return sqs.New(sqs.Options{
		BaseEndpoint:     aws.String(srv.URL()),
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		RetryMaxAttempts: 1,
	})
}

// setupSQS starts an SQS server with the queue "dlq" and a sink sending to
// it through the real SDK client.
func setupSQS(t *testing.T, opts ...deadletter.SQSOption) sqsBundle {
	t.Helper()
	srv := sqstest.NewServer()
	t.Cleanup(srv.Close)
	queue := srv.CreateQueue("dlq")
	return sqsBundle{srv: srv, queue: queue, sink: deadletter.NewSQS(newSQSClient(srv), queue, opts...)}
}

func throttledLetter() deadletter.Letter {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	return deadletter.Letter{
		ID: "42", Function: "orders", Qualifier: "live", Key: "order-42",
		Payload:  []byte(`{"order":42,"items":["a","b"]}`),
		Enqueued: t0, Reason: deadletter.RetriesExhausted, Attempts: 3,
		FirstAttempt: t0.Add(time.Second), LastAttempt: t0.Add(time.Minute),
		LastError: deadletter.ErrorInfo{
			Code: "TooManyRequestsException", Message: "Rate Exceeded.",
			StatusCode: 429, RequestID: "3f1c0b7e-req",
		},
		DeadLettered: t0.Add(2 * time.Minute),
	}
}

func str(dataType, v string) sqstest.MessageAttribute {
	return sqstest.MessageAttribute{DataType: dataType, StringValue: v}
}

func TestSQSPut(t *testing.T) {
	t.Parallel()
	b := setupSQS(t)
	require.NoError(t, b.sink.Put(context.Background(), throttledLetter()))

	msgs := b.srv.Messages(b.queue)
	require.Len(t, msgs, 1)
	require.Equal(t, `{"order":42,"items":["a","b"]}`, msgs[0].Body, "the payload, unchanged")
	require.Equal(t, map[string]sqstest.MessageAttribute{
		"RequestID":    str("String", "3f1c0b7e-req"),
		"ErrorCode":    str("Number", "429"),
		"ErrorMessage": str("String", "Rate Exceeded."),
	}, msgs[0].Attributes)
	require.NotEmpty(t, msgs[0].MessageID)
}

func TestSQSPutNoAttempt(t *testing.T) {
	t.Parallel()
	b := setupSQS(t)
	// Aged out before any attempt, with an empty payload: no error to
	// report, and a body SQS would refuse if it were sent as it is.
	err := b.sink.Put(context.Background(), deadletter.Letter{
		ID: "7", Function: "orders", Reason: deadletter.EventAgeExceeded,
	})
	require.NoError(t, err)

	msgs := b.srv.Messages(b.queue)
	require.Len(t, msgs, 1)
	require.Equal(t, "{}", msgs[0].Body)
	require.Equal(t, map[string]sqstest.MessageAttribute{
		"RequestID": str("String", "7"),
	}, msgs[0].Attributes, "the letter's id, and no ErrorCode or ErrorMessage")
}

func TestSQSPutTransportError(t *testing.T) {
	t.Parallel()
	b := setupSQS(t)
	l := throttledLetter()
	l.LastError = deadletter.ErrorInfo{Message: "dial tcp: connection refused"}
	require.NoError(t, b.sink.Put(context.Background(), l))

	msgs := b.srv.Messages(b.queue)
	require.Len(t, msgs, 1)
	require.Equal(t, map[string]sqstest.MessageAttribute{
		"RequestID":    str("String", "42"),
		"ErrorMessage": str("String", "dial tcp: connection refused"),
	}, msgs[0].Attributes, "no ErrorCode when no HTTP status was received")
}

func TestSQSPutErrorMessageTruncated(t *testing.T) {
	t.Parallel()
	b := setupSQS(t)
	l := throttledLetter()
	l.LastError.Message = "\x01bad\xff" + strings.Repeat("é", 1000) // 2,011 bytes
	require.NoError(t, b.sink.Put(context.Background(), l))

	msgs := b.srv.Messages(b.queue)
	require.Len(t, msgs, 1)
	got := msgs[0].Attributes["ErrorMessage"].StringValue
	require.True(t, utf8.ValidString(got))
	// At most 1 KB: 2 replacement characters (6 bytes), "bad" (3) and 507
	// é (1,014), since a 508th would not fit whole.
	require.Equal(t, 1023, len(got))
	require.Equal(t, "\uFFFDbad\uFFFD"+strings.Repeat("é", 507), got)
}

func TestSQSSQSFullRecord(t *testing.T) {
	t.Parallel()
	b := setupSQS(t, deadletter.SQSFullRecord())
	l := throttledLetter()
	require.NoError(t, b.sink.Put(context.Background(), l))

	msgs := b.srv.Messages(b.queue)
	require.Len(t, msgs, 1)
	want, err := l.MarshalRecord()
	require.NoError(t, err)
	require.Equal(t, string(want), msgs[0].Body)

	var rec deadletter.Record
	require.NoError(t, json.Unmarshal([]byte(msgs[0].Body), &rec))
	require.Equal(t, deadletter.ConditionRetriesExhausted, rec.RequestContext.Condition)
	require.Equal(t, "3f1c0b7e-req", rec.RequestContext.RequestID)
	require.Equal(t, 3, rec.RequestContext.ApproximateInvokeCount)
	require.Equal(t, 429, rec.ResponseContext.StatusCode)
	require.JSONEq(t, string(l.Payload), string(rec.RequestPayload))
	require.Equal(t, "3f1c0b7e-req", msgs[0].Attributes["RequestID"].StringValue, "the same attributes")
	require.Equal(t, "429", msgs[0].Attributes["ErrorCode"].StringValue)
}

func TestSQSPutSQSError(t *testing.T) {
	t.Parallel()

	t.Run("QueueDoesNotExist", func(t *testing.T) {
		t.Parallel()
		srv := sqstest.NewServer()
		t.Cleanup(srv.Close)
		sink := deadletter.NewSQS(newSQSClient(srv), srv.URL()+"/123456789012/gone")

		err := sink.Put(context.Background(), throttledLetter())
		var qdne *types.QueueDoesNotExist
		require.ErrorAs(t, err, &qdne)
		require.ErrorContains(t, err, "deadletter: sqs: send letter 42")
	})

	t.Run("ServiceUnavailable", func(t *testing.T) {
		t.Parallel()
		b := setupSQS(t)
		b.srv.Fail(1, 503, "ServiceUnavailable")

		err := b.sink.Put(context.Background(), throttledLetter())
		var api smithy.APIError
		require.ErrorAs(t, err, &api)
		require.Equal(t, "ServiceUnavailable", api.ErrorCode())
		require.Equal(t, smithy.FaultServer, api.ErrorFault())
		require.Empty(t, b.srv.Messages(b.queue))

		require.NoError(t, b.sink.Put(context.Background(), throttledLetter()), "the next try goes through")
		require.Len(t, b.srv.Messages(b.queue), 1)
	})
}

func TestSQSPutTooLarge(t *testing.T) {
	t.Parallel()
	b := setupSQS(t)
	l := throttledLetter()
	// The attributes: RequestID String 3f1c0b7e-req (9+6+12), ErrorCode
	// Number 429 (9+6+3), ErrorMessage String Rate Exceeded. (12+6+14).
	const attrs = 27 + 18 + 32
	at := func(n int) []byte { return []byte(`"` + strings.Repeat("x", n-2) + `"`) }

	l.Payload = at(deadletter.SQSMaxMessageSize - attrs + 1)
	err := b.sink.Put(context.Background(), l)
	require.ErrorIs(t, err, deadletter.ErrTooLarge)
	require.Empty(t, b.srv.Messages(b.queue), "nothing sent")

	l.Payload = at(deadletter.SQSMaxMessageSize - attrs)
	require.NoError(t, b.sink.Put(context.Background(), l), "exactly the limit")
	msgs := b.srv.Messages(b.queue)
	require.Len(t, msgs, 1)
	require.Equal(t, string(l.Payload), msgs[0].Body, "not truncated")
}

func TestSQSWithMaxMessageSize(t *testing.T) {
	t.Parallel()
	var sent int
	client := sendFunc(func(ctx context.Context, in *sqs.SendMessageInput, _ ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
		sent++
		return &sqs.SendMessageOutput{}, nil
	})
	l := deadletter.Letter{ID: "1", Payload: []byte(`{"a":1}`)} // 7 + RequestID String 1 (16)
	require.NoError(t, deadletter.NewSQS(client, "q", deadletter.WithSQSMaxMessageSize(23)).Put(context.Background(), l))
	require.ErrorIs(t, deadletter.NewSQS(client, "q", deadletter.WithSQSMaxMessageSize(22)).Put(context.Background(), l), deadletter.ErrTooLarge)
	require.Equal(t, 1, sent)
}

func TestSQSPutUnsupportedPayload(t *testing.T) {
	t.Parallel()
	for name, payload := range map[string]string{
		"NotUTF8": `{"a":"` + "\xff" + `"}`,
		"U+FFFF":  `{"a":"` + "\uffff" + `"}`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, opts := range [][]deadletter.SQSOption{nil, {deadletter.SQSFullRecord()}} {
				b := setupSQS(t, opts...)
				l := throttledLetter()
				l.Payload = []byte(payload)
				require.ErrorIs(t, b.sink.Put(context.Background(), l), deadletter.ErrUnsupportedPayload)
				require.Empty(t, b.srv.Messages(b.queue))
			}
		})
	}
}

func TestSQSPutOffline(t *testing.T) {
	t.Parallel()
	b := setupSQS(t)
	b.srv.Offline()
	err := b.sink.Put(context.Background(), throttledLetter())
	require.Error(t, err)
	require.ErrorContains(t, err, "deadletter: sqs: send letter 42")
}

func TestSQSPutCanceled(t *testing.T) {
	t.Parallel()
	b := setupSQS(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, b.sink.Put(ctx, throttledLetter()), context.Canceled)
	require.Empty(t, b.srv.Messages(b.queue))
}

// sendFunc adapts a function to deadletter.SQSSender.
type sendFunc func(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)

func (f sendFunc) SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	return f(ctx, in, optFns...)
}

// The SQS sink sends a letter as Lambda sends a failed event to a
// dead-letter queue: the payload as the body, and the last error in the
// attributes RequestID, ErrorCode and ErrorMessage.
func ExampleSQS() {
	srv := sqstest.NewServer() // a stand-in for SQS; use sqs.NewFromConfig
	defer srv.Close()
	client := sqs.New(sqs.Options{
		BaseEndpoint: aws.String(srv.URL()), Region: "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
	})
	queue := srv.CreateQueue("orders-dlq")

	sink := deadletter.NewSQS(client, queue)
	err := sink.Put(context.Background(), deadletter.Letter{
		ID: "42", Function: "orders", Payload: []byte(`{"order":42}`),
		Reason: deadletter.RetriesExhausted, Attempts: 3,
		LastError: deadletter.ErrorInfo{
			Code: "TooManyRequestsException", Message: "Rate Exceeded.",
			StatusCode: 429, RequestID: "3f1c0b7e",
		},
	})
	fmt.Println(err)
	m := srv.Messages(queue)[0]
	fmt.Println(m.Body)
	for _, name := range []string{"RequestID", "ErrorCode", "ErrorMessage"} {
		fmt.Printf("%s (%s): %s\n", name, m.Attributes[name].DataType, m.Attributes[name].StringValue)
	}
	// Output:
	// <nil>
	// {"order":42}
	// RequestID (String): 3f1c0b7e
	// ErrorCode (Number): 429
	// ErrorMessage (String): Rate Exceeded.
}
