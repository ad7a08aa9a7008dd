package sqstest_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/lambdadispatch/dispatcher/internal/sqstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type bundle struct {
	srv    *sqstest.Server
	client *sqs.Client
	queue  string
}

// setup starts a server with the queue "dlq" and a real SDK client, its
// retries off, pointed at it.
func setup(t *testing.T) bundle {
	t.Helper()
	srv := sqstest.NewServer()
	t.Cleanup(srv.Close)
	client := sqs.New(sqs.Options{
		BaseEndpoint:     aws.String(srv.URL()),
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		RetryMaxAttempts: 1,
	})
	return bundle{srv: srv, client: client, queue: srv.CreateQueue("dlq")}
}

func strAttr(dataType, v string) types.MessageAttributeValue {
	return types.MessageAttributeValue{DataType: aws.String(dataType), StringValue: aws.String(v)}
}

// apiError returns err's SQS error code, HTTP status and fault.
func apiError(t *testing.T, err error) (string, int, smithy.ErrorFault) {
	t.Helper()
	var api smithy.APIError
	require.ErrorAs(t, err, &api)
	var resp *awshttp.ResponseError
	require.ErrorAs(t, err, &resp)
	return api.ErrorCode(), resp.HTTPStatusCode(), api.ErrorFault()
}

func TestMD5OfMessageAttributes(t *testing.T) {
	t.Parallel()
	// The first is the example of SQS's developer guide; the second is
	// checked against another emulator's tests.
	require.Equal(t, "cd28f3b68aeee4b2eac9c66f2f694b58", sqstest.MD5OfMessageAttributes(map[string]sqstest.MessageAttribute{
		"SellerName": {DataType: "String", StringValue: "Example Store"},
	}))
	require.Equal(t, "d21ae90c49061e927f57df5f5d72be1f", sqstest.MD5OfMessageAttributes(map[string]sqstest.MessageAttribute{
		"ordinal":  {DataType: "Number", StringValue: "1"},
		"category": {DataType: "String", StringValue: "test"},
	}))
}

func TestSendMessage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, b.srv.URL()+"/123456789012/dlq", b.queue)
	require.Equal(t, b.queue, b.srv.CreateQueue("dlq"), "creating again gives the same queue")

	out, err := b.client.SendMessage(context.Background(), &sqs.SendMessageInput{
		QueueUrl:    aws.String(b.queue),
		MessageBody: aws.String(`{"order":42}`),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"RequestID": strAttr("String", "req-1"),
			"ErrorCode": strAttr("Number", "429"),
			"Blob":      {DataType: aws.String("Binary"), BinaryValue: []byte{0, 1, 2}},
		},
	})
	require.NoError(t, err) // the SDK checked MD5OfMessageBody
	require.NotEmpty(t, aws.ToString(out.MessageId))

	msgs := b.srv.Messages(b.queue)
	require.Len(t, msgs, 1)
	want := map[string]sqstest.MessageAttribute{
		"RequestID": {DataType: "String", StringValue: "req-1"},
		"ErrorCode": {DataType: "Number", StringValue: "429"},
		"Blob":      {DataType: "Binary", BinaryValue: []byte{0, 1, 2}},
	}
	require.Equal(t, sqstest.Message{Body: `{"order":42}`, Attributes: want, MessageID: *out.MessageId}, msgs[0])
	require.Equal(t, sqstest.MD5OfMessageAttributes(want), aws.ToString(out.MD5OfMessageAttributes))

	msgs[0].Attributes["RequestID"] = sqstest.MessageAttribute{}
	require.Equal(t, "req-1", b.srv.Messages(b.queue)[0].Attributes["RequestID"].StringValue, "Messages returns a copy")
	require.Nil(t, b.srv.Messages(b.srv.URL()+"/123456789012/other"))
}

func TestSendMessageUnknownQueue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.client.SendMessage(context.Background(), &sqs.SendMessageInput{
		QueueUrl:    aws.String(b.srv.URL() + "/123456789012/nope"),
		MessageBody: aws.String("x"),
	})
	var qdne *types.QueueDoesNotExist
	require.ErrorAs(t, err, &qdne)
	code, status, fault := apiError(t, err)
	require.Equal(t, "AWS.SimpleQueueService.NonExistentQueue", code, "the query error code, as SQS answers")
	require.Equal(t, 400, status)
	require.Equal(t, smithy.FaultClient, fault)
}

func TestFail(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.Fail(2, 500, "InternalError")
	send := func() error {
		_, err := b.client.SendMessage(context.Background(), &sqs.SendMessageInput{
			QueueUrl: aws.String(b.queue), MessageBody: aws.String("x"),
		})
		return err
	}
	for range 2 {
		err := send()
		code, status, fault := apiError(t, err)
		require.Equal(t, "InternalError", code)
		require.Equal(t, 500, status)
		require.Equal(t, smithy.FaultServer, fault)
	}
	require.NoError(t, send())
	require.Len(t, b.srv.Messages(b.queue), 1)

	b.srv.Fail(1, 400, "RequestThrottled") // a modelled error
	var throttled *types.RequestThrottled
	require.ErrorAs(t, send(), &throttled)
}

func TestSendMessageInvalid(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		body  string
		attrs map[string]types.MessageAttributeValue
		code  string
	}{
		"EmptyBody": {body: "", code: "MissingParameter"},
		"TooLarge":  {body: strings.Repeat("x", sqstest.MaxMessageSize+1), code: "InvalidParameterValue"},
		"TooLargeWithAttr": {
			body:  strings.Repeat("x", sqstest.MaxMessageSize-10),
			attrs: map[string]types.MessageAttributeValue{"Name": strAttr("String", "value")}, // 4+6+5 = 15 bytes
			code:  "InvalidParameterValue",
		},
		"InvalidCharacter": {body: "a\x00b", code: "InvalidMessageContents"},
		"U+FFFF":           {body: "a\uffffb", code: "InvalidMessageContents"},
		"EmptyAttribute":   {body: "x", attrs: map[string]types.MessageAttributeValue{"A": strAttr("String", "")}, code: "InvalidParameterValue"},
		"BadType":          {body: "x", attrs: map[string]types.MessageAttributeValue{"A": strAttr("Text", "a")}, code: "InvalidParameterValue"},
		"BadNumber":        {body: "x", attrs: map[string]types.MessageAttributeValue{"A": strAttr("Number", "four")}, code: "InvalidParameterValue"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			_, err := b.client.SendMessage(context.Background(), &sqs.SendMessageInput{
				QueueUrl: aws.String(b.queue), MessageBody: aws.String(tc.body), MessageAttributes: tc.attrs,
			})
			code, status, _ := apiError(t, err)
			require.Equal(t, tc.code, code)
			require.Equal(t, 400, status)
			require.Empty(t, b.srv.Messages(b.queue))
		})
	}
}

// TestSendMessageNotUTF8 shows why a sender must check its body is valid
// UTF-8: the SDK replaces invalid bytes with U+FFFD as it serializes, SQS
// keeps that, and the SDK then fails the call on the body's checksum,
// although the message was sent.
func TestSendMessageNotUTF8(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.client.SendMessage(context.Background(), &sqs.SendMessageInput{
		QueueUrl: aws.String(b.queue), MessageBody: aws.String("a\xffb"),
	})
	require.ErrorContains(t, err, "checksum")
	msgs := b.srv.Messages(b.queue)
	require.Len(t, msgs, 1)
	require.Equal(t, "a\uFFFDb", msgs[0].Body)
}

func TestSendMessageAtLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.client.SendMessage(context.Background(), &sqs.SendMessageInput{
		QueueUrl:          aws.String(b.queue),
		MessageBody:       aws.String(strings.Repeat("é", (sqstest.MaxMessageSize-16)/2) + "x"), // 262,129 bytes
		MessageAttributes: map[string]types.MessageAttributeValue{"Name": strAttr("String", "value")},
	})
	require.NoError(t, err, "the body and the attribute's 15 bytes are exactly the limit")
}

func TestOffline(t *testing.T) {
	t.Parallel()
	b := setup(t)
	send := func() error {
		_, err := b.client.SendMessage(context.Background(), &sqs.SendMessageInput{
			QueueUrl: aws.String(b.queue), MessageBody: aws.String("x"),
		})
		return err
	}
	require.NoError(t, send()) // leaves a kept-alive connection for Offline to close
	b.srv.Offline()
	err := send()
	require.Error(t, err)
	var api smithy.APIError
	require.False(t, errors.As(err, &api), "a transport error, not an answer: %v", err)
}
