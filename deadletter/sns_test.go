package deadletter_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/internal/snstest"
)

// snsBundle is what an SNS sink test needs: a fake SNS server with a topic,
// and the real SDK client pointed at it.
type snsBundle struct {
	srv    *snstest.Server
	client *sns.Client
	topic  string
}

func snsSetup(t *testing.T) snsBundle {
	t.Helper()
	srv := snstest.NewServer()
	t.Cleanup(srv.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections) // for goleak
	client := sns.New(sns.Options{
		BaseEndpoint:     aws.String(srv.URL()),
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		RetryMaxAttempts: 1,
		HTTPClient:       &http.Client{Transport: tr},
	})
	return snsBundle{srv: srv, client: client, topic: srv.CreateTopic("dead-letters")}
}

// snsLetter is a letter whose last attempt was throttled.
func snsLetter() deadletter.Letter {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	return deadletter.Letter{
		ID:           "42",
		Function:     "my-function",
		Qualifier:    "prod",
		Key:          "order-42",
		Payload:      []byte(`{"order":42,"note":"a & b = c+d"}`),
		Enqueued:     t0,
		Reason:       deadletter.RetriesExhausted,
		Attempts:     3,
		FirstAttempt: t0.Add(time.Second),
		LastAttempt:  t0.Add(time.Minute),
		LastError: deadletter.ErrorInfo{
			Code:       "TooManyRequestsException",
			Message:    "Rate Exceeded.",
			StatusCode: 429,
			RequestID:  "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
		},
		DeadLettered: t0.Add(2 * time.Minute),
	}
}

func snsString(v string) snstest.MessageAttribute {
	return snstest.MessageAttribute{DataType: "String", StringValue: v}
}

// snsAttrSize is the size SNS counts for attrs.
func snsAttrSize(attrs map[string]snstest.MessageAttribute) int {
	n := 0
	for name, a := range attrs {
		n += len(name) + len(a.DataType) + len(a.StringValue)
	}
	return n
}

func TestSNS(t *testing.T) {
	t.Parallel()

	wantAttrs := map[string]snstest.MessageAttribute{
		"RequestID":    snsString("e4b46cbf-b738-xmpl-8880-a18cdf61200e"),
		"ErrorCode":    {DataType: "Number", StringValue: "429"},
		"ErrorMessage": snsString("Rate Exceeded."),
	}

	t.Run("Payload", func(t *testing.T) {
		t.Parallel()
		b := snsSetup(t)
		sink := deadletter.NewSNS(b.client, b.topic)
		require.NoError(t, sink.Put(context.Background(), snsLetter()))

		msgs := b.srv.Messages(b.topic)
		require.Len(t, msgs, 1)
		require.NotEmpty(t, msgs[0].MessageID)
		require.Equal(t, snstest.Message{
			Message:    `{"order":42,"note":"a & b = c+d"}`,
			Attributes: wantAttrs,
			MessageID:  msgs[0].MessageID,
		}, msgs[0])
	})

	t.Run("FullRecord", func(t *testing.T) {
		t.Parallel()
		b := snsSetup(t)
		sink := deadletter.NewSNS(b.client, b.topic, deadletter.SNSFullRecord())
		l := snsLetter()
		require.NoError(t, sink.Put(context.Background(), l))

		rec, err := l.MarshalRecord()
		require.NoError(t, err)
		msgs := b.srv.Messages(b.topic)
		require.Len(t, msgs, 1)
		require.Equal(t, string(rec), msgs[0].Message)
		require.JSONEq(t, `{
			"version": "1.0",
			"timestamp": "2025-03-01T12:02:00.000Z",
			"requestContext": {
				"requestId": "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
				"functionArn": "my-function:prod",
				"condition": "RetriesExhausted",
				"approximateInvokeCount": 3
			},
			"requestPayload": {"order":42,"note":"a & b = c+d"},
			"responseContext": {"statusCode": 429, "functionError": "TooManyRequestsException"},
			"responsePayload": {"errorMessage": "Rate Exceeded.", "errorType": "TooManyRequestsException"}
		}`, msgs[0].Message)
		require.Equal(t, wantAttrs, msgs[0].Attributes)
	})

	t.Run("EmptyPayloadNoAttempt", func(t *testing.T) {
		t.Parallel()
		b := snsSetup(t)
		sink := deadletter.NewSNS(b.client, b.topic)
		l := deadletter.Letter{ID: "7", Function: "fn", Reason: deadletter.EventAgeExceeded}
		require.NoError(t, sink.Put(context.Background(), l))

		msgs := b.srv.Messages(b.topic)
		require.Len(t, msgs, 1)
		require.Equal(t, "{}", msgs[0].Message)
		// No status, no message: only the letter's ID stands in for the
		// request id, since SNS refuses empty attribute values.
		require.Equal(t, map[string]snstest.MessageAttribute{"RequestID": snsString("7")}, msgs[0].Attributes)
	})

	t.Run("TransportError", func(t *testing.T) {
		t.Parallel()
		b := snsSetup(t)
		l := snsLetter()
		l.LastError = deadletter.ErrorInfo{Message: "dial tcp: connection refused"}
		require.NoError(t, deadletter.NewSNS(b.client, b.topic).Put(context.Background(), l))
		require.Equal(t, map[string]snstest.MessageAttribute{
			"RequestID":    snsString("42"),
			"ErrorMessage": snsString("dial tcp: connection refused"),
		}, b.srv.Messages(b.topic)[0].Attributes)
	})

	t.Run("ErrorMessageTruncated", func(t *testing.T) {
		t.Parallel()
		b := snsSetup(t)
		l := snsLetter()
		// 1,201 bytes; byte 1,024 is in the middle of an "é".
		l.LastError.Message = "a" + strings.Repeat("é", 600)
		require.NoError(t, deadletter.NewSNS(b.client, b.topic).Put(context.Background(), l))
		got := b.srv.Messages(b.topic)[0].Attributes["ErrorMessage"]
		require.Equal(t, snsString("a"+strings.Repeat("é", 511)), got)
	})

	t.Run("InvalidUTF8ErrorMessage", func(t *testing.T) {
		t.Parallel()
		b := snsSetup(t)
		l := snsLetter()
		l.LastError.Message = "bad \xff byte"
		require.NoError(t, deadletter.NewSNS(b.client, b.topic).Put(context.Background(), l))
		got := b.srv.Messages(b.topic)[0].Attributes["ErrorMessage"]
		require.Equal(t, snsString("bad \uFFFD byte"), got)
	})

	t.Run("InvalidUTF8Payload", func(t *testing.T) {
		t.Parallel()
		b := snsSetup(t)
		l := snsLetter()
		l.Payload = []byte("\"\xff\"")
		err := deadletter.NewSNS(b.client, b.topic).Put(context.Background(), l)
		require.ErrorIs(t, err, deadletter.ErrUnsupportedPayload)
		require.ErrorContains(t, err, "not valid UTF-8")
		err = deadletter.NewSNS(b.client, b.topic, deadletter.SNSFullRecord()).Put(context.Background(), l)
		require.ErrorIs(t, err, deadletter.ErrUnsupportedPayload)
		require.Empty(t, b.srv.Messages(b.topic))
	})

	t.Run("TooLarge", func(t *testing.T) {
		t.Parallel()
		b := snsSetup(t)
		sink := deadletter.NewSNS(b.client, b.topic)
		l := snsLetter()
		room := snstest.MaxMessageSize - snsAttrSize(wantAttrs)

		// Exactly at the limit: SNS takes it.
		l.Payload = []byte(`"` + strings.Repeat("x", room-2) + `"`)
		require.NoError(t, sink.Put(context.Background(), l))
		require.Len(t, b.srv.Messages(b.topic), 1)

		// One byte more: refused before anything is sent.
		l.Payload = []byte(`"` + strings.Repeat("x", room-1) + `"`)
		err := sink.Put(context.Background(), l)
		require.ErrorIs(t, err, deadletter.ErrTooLarge)
		require.Len(t, b.srv.Messages(b.topic), 1)

		// The payload fits, the record around it does not.
		l.Payload = []byte(`"` + strings.Repeat("x", room-100) + `"`)
		err = deadletter.NewSNS(b.client, b.topic, deadletter.SNSFullRecord()).Put(context.Background(), l)
		require.ErrorIs(t, err, deadletter.ErrTooLarge)
		require.Len(t, b.srv.Messages(b.topic), 1)
		require.NoError(t, sink.Put(context.Background(), l))
		require.Len(t, b.srv.Messages(b.topic), 2)
	})

	t.Run("UnknownTopic", func(t *testing.T) {
		t.Parallel()
		b := snsSetup(t)
		sink := deadletter.NewSNS(b.client, b.topic+"-gone")
		err := sink.Put(context.Background(), snsLetter())
		var nf *types.NotFoundException
		require.ErrorAs(t, err, &nf)
		require.Equal(t, "NotFound", nf.ErrorCode())
		require.ErrorContains(t, err, "deadletter: SNS publish of letter 42")
		require.NotErrorIs(t, err, deadletter.ErrTooLarge)
		require.Empty(t, b.srv.Messages(b.topic))
	})

	t.Run("ServiceError", func(t *testing.T) {
		t.Parallel()
		b := snsSetup(t)
		sink := deadletter.NewSNS(b.client, b.topic)
		b.srv.Fail(1, http.StatusInternalServerError, "InternalError")
		err := sink.Put(context.Background(), snsLetter())
		var ie *types.InternalErrorException
		require.ErrorAs(t, err, &ie)
		require.Empty(t, b.srv.Messages(b.topic))

		b.srv.Fail(1, http.StatusBadRequest, "Throttling") // not modelled for Publish
		err = sink.Put(context.Background(), snsLetter())
		var ae smithy.APIError
		require.ErrorAs(t, err, &ae)
		require.Equal(t, "Throttling", ae.ErrorCode())

		// The next Put goes through.
		require.NoError(t, sink.Put(context.Background(), snsLetter()))
		require.Len(t, b.srv.Messages(b.topic), 1)
	})

	t.Run("Offline", func(t *testing.T) {
		t.Parallel()
		b := snsSetup(t)
		b.srv.Offline()
		err := deadletter.NewSNS(b.client, b.topic).Put(context.Background(), snsLetter())
		require.Error(t, err)
		var ae smithy.APIError
		require.False(t, errors.As(err, &ae), "a refused connection is no API error: %v", err)
		require.NotErrorIs(t, err, deadletter.ErrTooLarge)
		require.Empty(t, b.srv.Messages(b.topic))
	})

	t.Run("Canceled", func(t *testing.T) {
		t.Parallel()
		b := snsSetup(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := deadletter.NewSNS(b.client, b.topic).Put(ctx, snsLetter())
		require.ErrorIs(t, err, context.Canceled)
		require.Empty(t, b.srv.Messages(b.topic))
	})
}

// An SNS sink publishes each letter as Lambda's dead-letter queue does: the
// payload as the message, the last error in the message attributes. Here
// the client talks to a local fake of SNS.
func ExampleNewSNS() {
	srv := snstest.NewServer()
	defer srv.Close()
	topic := srv.CreateTopic("dead-letters")

	client := sns.New(sns.Options{
		BaseEndpoint: aws.String(srv.URL()),
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
	})
	sink := deadletter.NewSNS(client, topic)
	err := sink.Put(context.Background(), deadletter.Letter{
		ID:        "42",
		Function:  "my-function",
		Payload:   []byte(`{"order":42}`),
		Reason:    deadletter.RetriesExhausted,
		Attempts:  3,
		LastError: deadletter.ErrorInfo{Code: "TooManyRequestsException", Message: "Rate Exceeded.", StatusCode: 429, RequestID: "req-1"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	m := srv.Messages(topic)[0]
	fmt.Println(m.Message)
	for _, name := range []string{"RequestID", "ErrorCode", "ErrorMessage"} {
		a := m.Attributes[name]
		fmt.Printf("%s (%s): %s\n", name, a.DataType, a.StringValue)
	}
	// Output:
	// {"order":42}
	// RequestID (String): req-1
	// ErrorCode (Number): 429
	// ErrorMessage (String): Rate Exceeded.
}
