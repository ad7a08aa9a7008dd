package snstest_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/lambdadispatch/dispatcher/internal/snstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type bundle struct {
	srv    *snstest.Server
	client *sns.Client
	topic  string
}

func setup(t *testing.T) bundle {
	t.Helper()
	srv := snstest.NewServer()
	t.Cleanup(srv.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client := sns.New(sns.Options{
		BaseEndpoint:     aws.String(srv.URL()),
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		RetryMaxAttempts: 1,
		HTTPClient:       &http.Client{Transport: tr},
	})
	return bundle{srv: srv, client: client, topic: srv.CreateTopic("dlq")}
}

func publish(ctx context.Context, b bundle, msg string, attrs map[string]types.MessageAttributeValue) (*sns.PublishOutput, error) {
	return b.client.Publish(ctx, &sns.PublishInput{TopicArn: aws.String(b.topic), Message: aws.String(msg), MessageAttributes: attrs})
}

func str(v string) types.MessageAttributeValue {
	return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
}

func TestServer(t *testing.T) {
	t.Parallel()

	t.Run("CreateTopic", func(t *testing.T) {
		t.Parallel()
		srv := snstest.NewServer()
		defer srv.Close()
		arn := srv.CreateTopic("orders")
		require.Equal(t, "arn:aws:sns:us-east-1:123456789012:orders", arn)
		require.Equal(t, arn, srv.CreateTopic("orders"))
		require.Empty(t, srv.Messages(arn))
		require.NotNil(t, srv.Messages(arn))
		require.Nil(t, srv.Messages("arn:aws:sns:us-east-1:123456789012:other"))
		require.True(t, strings.HasPrefix(srv.URL(), "http://127.0.0.1:"), srv.URL())
	})

	t.Run("Publish", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		out, err := publish(context.Background(), b, `{"a":"b & c=d+e"}`, map[string]types.MessageAttributeValue{
			"RequestID": str("r-1"),
			"ErrorCode": {DataType: aws.String("Number"), StringValue: aws.String("429")},
			"Blob":      {DataType: aws.String("Binary"), BinaryValue: []byte{0, 1, 2}},
			"Custom":    {DataType: aws.String("String.json"), StringValue: aws.String("ünï")},
		})
		require.NoError(t, err)
		require.NotEmpty(t, aws.ToString(out.MessageId))
		reqID, ok := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
		require.True(t, ok)
		require.NotEmpty(t, reqID)

		_, err = publish(context.Background(), b, "second", nil)
		require.NoError(t, err)

		msgs := b.srv.Messages(b.topic)
		require.Equal(t, []snstest.Message{
			{
				Message: `{"a":"b & c=d+e"}`,
				Attributes: map[string]snstest.MessageAttribute{
					"RequestID": {DataType: "String", StringValue: "r-1"},
					"ErrorCode": {DataType: "Number", StringValue: "429"},
					"Blob":      {DataType: "Binary", BinaryValue: []byte{0, 1, 2}},
					"Custom":    {DataType: "String.json", StringValue: "ünï"},
				},
				MessageID: aws.ToString(out.MessageId),
			},
			{Message: "second", MessageID: msgs[1].MessageID},
		}, msgs)
		require.NotEqual(t, msgs[0].MessageID, msgs[1].MessageID)

		// Messages returns a copy.
		msgs[0].Attributes["Blob"].BinaryValue[0] = 9
		msgs[0].Message = "changed"
		again := b.srv.Messages(b.topic)
		require.Equal(t, `{"a":"b & c=d+e"}`, again[0].Message)
		require.Equal(t, []byte{0, 1, 2}, again[0].Attributes["Blob"].BinaryValue)
	})

	t.Run("TargetArn", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := b.client.Publish(context.Background(), &sns.PublishInput{TargetArn: aws.String(b.topic), Message: aws.String("m")})
		require.NoError(t, err)
		require.Len(t, b.srv.Messages(b.topic), 1)
	})

	t.Run("UnknownTopic", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.topic += "-missing"
		_, err := publish(context.Background(), b, "m", nil)
		var nf *types.NotFoundException
		require.ErrorAs(t, err, &nf)
		require.Equal(t, "NotFound", nf.ErrorCode())
		require.Equal(t, "Topic does not exist", nf.ErrorMessage())
		requireStatus(t, err, http.StatusNotFound)
	})

	t.Run("SizeLimit", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		attrs := map[string]types.MessageAttributeValue{"Name": str("value")}
		attrSize := len("Name") + len("String") + len("value")
		_, err := publish(context.Background(), b, strings.Repeat("x", snstest.MaxMessageSize-attrSize), attrs)
		require.NoError(t, err)

		_, err = publish(context.Background(), b, strings.Repeat("x", snstest.MaxMessageSize-attrSize+1), attrs)
		var ip *types.InvalidParameterException
		require.ErrorAs(t, err, &ip)
		require.Equal(t, "Invalid parameter: Message too long", ip.ErrorMessage())
		requireStatus(t, err, http.StatusBadRequest)
		require.Len(t, b.srv.Messages(b.topic), 1)
	})

	t.Run("EmptyMessage", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := publish(context.Background(), b, "", nil)
		var ip *types.InvalidParameterException
		require.ErrorAs(t, err, &ip)
		require.Equal(t, "Invalid parameter: Empty message", ip.ErrorMessage())
	})

	t.Run("InvalidAttributes", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for name, v := range map[string]types.MessageAttributeValue{
			"EmptyString": str(""),
			"BadNumber":   {DataType: aws.String("Number"), StringValue: aws.String("4x")},
			"BadType":     {DataType: aws.String("Text"), StringValue: aws.String("v")},
		} {
			_, err := publish(context.Background(), b, "m", map[string]types.MessageAttributeValue{name: v})
			var pv *types.InvalidParameterValueException
			require.ErrorAs(t, err, &pv, name)
			require.Contains(t, pv.ErrorMessage(), "'"+name+"'")
		}
		require.Empty(t, b.srv.Messages(b.topic))
	})

	t.Run("Fail", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.srv.Fail(2, http.StatusInternalServerError, "InternalError")
		for range 2 {
			_, err := publish(context.Background(), b, "m", nil)
			var ie *types.InternalErrorException
			require.ErrorAs(t, err, &ie)
			require.Equal(t, "snstest: injected failure", ie.ErrorMessage())
			requireStatus(t, err, http.StatusInternalServerError)
		}
		_, err := publish(context.Background(), b, "m", nil)
		require.NoError(t, err)
		require.Len(t, b.srv.Messages(b.topic), 1)

		// An unmodelled code comes back as a generic API error.
		b.srv.Fail(1, http.StatusBadRequest, "Throttling")
		_, err = publish(context.Background(), b, "m", nil)
		var ae smithy.APIError
		require.ErrorAs(t, err, &ae)
		require.Equal(t, "Throttling", ae.ErrorCode())
		requireStatus(t, err, http.StatusBadRequest)

		b.srv.Fail(5, http.StatusForbidden, "AuthorizationError")
		b.srv.Fail(0, 0, "")
		_, err = publish(context.Background(), b, "m", nil)
		require.NoError(t, err)
	})

	t.Run("Offline", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := publish(context.Background(), b, "before", nil)
		require.NoError(t, err)
		b.srv.Offline()
		_, err = publish(context.Background(), b, "after", nil)
		require.Error(t, err)
		var ae smithy.APIError
		require.False(t, errors.As(err, &ae), "a refused connection is no API error: %v", err)
		require.Len(t, b.srv.Messages(b.topic), 1)
	})

	t.Run("NotSigned", func(t *testing.T) {
		t.Parallel()
		srv := snstest.NewServer()
		defer srv.Close()
		resp, err := http.PostForm(srv.URL(), url.Values{"Action": {"Publish"}})
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		http.DefaultClient.CloseIdleConnections()
	})

	t.Run("UnknownAction", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := b.client.ListTopics(context.Background(), &sns.ListTopicsInput{})
		var ae smithy.APIError
		require.ErrorAs(t, err, &ae)
		require.Equal(t, "InvalidAction", ae.ErrorCode())
	})
}

// requireStatus checks err's HTTP status and that it carries the request id.
func requireStatus(t *testing.T, err error, status int) {
	t.Helper()
	var re *awshttp.ResponseError
	require.ErrorAs(t, err, &re)
	require.Equal(t, status, re.HTTPStatusCode())
	require.NotEmpty(t, re.ServiceRequestID())
}
