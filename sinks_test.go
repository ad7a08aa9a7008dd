package dispatcher_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/internal/sqstest"
)

// TestSQSSinkWithFallback dead-letters through the real SQS client: letters
// reach the queue with Lambda's attributes; one too large for SQS, and all
// of them while SQS is down, stay in the queue's file; none is lost.
func TestSQSSinkWithFallback(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	q := sqstest.NewServer()
	t.Cleanup(q.Close)
	queueURL := q.CreateQueue("dlq")
	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	client := sqs.New(sqs.Options{
		BaseEndpoint: aws.String(q.URL()), Region: "us-east-1", RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		HTTPClient:  &http.Client{Transport: transport},
	})
	b := setup(t, withServer(), with(dispatcher.WithDeadLetter(deadletter.NewSQS(client, queueURL)), dispatcher.WithMaxPayload(1<<20)))
	b.enqueue(t, "missing", 3)
	big := []byte(`"` + strings.Repeat("x", 300<<10) + `"`)
	_, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "missing", Payload: big})
	require.NoError(t, err)
	b.start(t)
	waitStats(t, b.d, "dead-lettered", func(s dispatcher.Stats) bool { return s.DeadLettered == 4 })

	msgs := q.Messages(queueURL)
	require.Len(t, msgs, 3)
	for _, m := range msgs {
		require.Contains(t, m.Body, `"n":`, "the body is the event's payload")
		require.Equal(t, "404", m.Attributes["ErrorCode"].StringValue)
		require.Equal(t, "Number", m.Attributes["ErrorCode"].DataType)
		require.NotEmpty(t, m.Attributes["RequestID"].StringValue)
		require.Contains(t, m.Attributes["ErrorMessage"].StringValue, "Function not found")
	}
	local, _, err := b.d.DeadLetters().List(ctx, "", 10)
	require.NoError(t, err)
	require.Len(t, local, 1, "the letter over SQS's limit is kept in the file, not truncated")
	require.Equal(t, big, local[0].Payload)

	q.Fail(2, 500, "InternalError")
	b.enqueue(t, "missing", 3)
	waitStats(t, b.d, "dead-lettered while SQS errs", func(s dispatcher.Stats) bool { return s.DeadLettered == 7 })
	c, err := b.d.DeadLetters().Count()
	require.NoError(t, err)
	require.Equal(t, 3, c, "the two letters SQS refused with an error land locally")
	require.Len(t, q.Messages(queueURL), 4)

	q.Offline()
	b.enqueue(t, "missing", 2)
	waitStats(t, b.d, "dead-lettered while SQS is down", func(s dispatcher.Stats) bool { return s.DeadLettered == 9 })
	c, err = b.d.DeadLetters().Count()
	require.NoError(t, err)
	require.Equal(t, 5, c, "letters land locally while the remote sink is down")
}
