package deadletter_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher/deadletter"
)

// goawsAccountID is the account id the goaws config below gives, and so
// the one in goaws's queue URLs.
const goawsAccountID = "100010001000"

// goawsBinary returns the goaws binary to run: $GOAWS_BIN, or the one
// .ci/install-goaws installs. Without one the test is skipped, or fails
// when $CI is set, so CI cannot pass without running it.
func goawsBinary(t *testing.T) string {
	t.Helper()
	path := os.Getenv("GOAWS_BIN")
	if path == "" {
		var err error
		// The test runs in the package directory, deadletter/.
		path, err = filepath.Abs(filepath.Join("..", ".ci", "bin", "goaws"))
		require.NoError(t, err)
	}
	fi, err := os.Stat(path)
	if err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
		return path
	}
	msg := fmt.Sprintf("goaws not found at %s (%v): run .ci/install-goaws from the repository root, or set GOAWS_BIN to a goaws v0.5.4 binary", path, err)
	if os.Getenv("CI") != "" {
		t.Fatalf("%s", msg)
	}
	t.Skip(msg)
	return ""
}

// freeLoopbackPort returns a TCP port that was free on 127.0.0.1 a moment
// ago.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	return port
}

// startGoaws runs goaws with one queue, "dlq", and returns its endpoint,
// http://127.0.0.1:port. goaws listens on all interfaces, but the test
// only ever talks to it over loopback. It is killed when the test ends;
// its output is logged if the test failed.
func startGoaws(t *testing.T) string {
	t.Helper()
	bin := goawsBinary(t)
	port := freeLoopbackPort(t)

	dir := t.TempDir()
	config := filepath.Join(dir, "goaws.yaml")
	require.NoError(t, os.WriteFile(config, []byte(fmt.Sprintf(`Local:
  Host: 127.0.0.1
  Port: %d
  Region: us-east-1
  AccountId: "%s"
  LogToFile: false
  EnableDuplicates: false
  QueueAttributeDefaults:
    VisibilityTimeout: 30
    ReceiveMessageWaitTimeSeconds: 0
    MaximumMessageSize: 262144
  Queues:
    - Name: dlq
`, port, goawsAccountID)), 0o600))

	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "-config", config, "Local")
	cmd.Dir = dir
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start goaws: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel() // kills goaws
		err := <-exited
		if t.Failed() {
			t.Logf("goaws exited: %v; its output:\n%s", err, out.String())
		}
	})

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			require.NoError(t, conn.Close())
			break
		}
		select {
		case werr := <-exited:
			exited <- werr // for the cleanup
			t.Fatalf("goaws exited before listening on %s: %v", addr, werr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("goaws not listening on %s after 20s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "http://" + addr
}

// TestSQSAgainstGoaws checks the SQS sink, through the real SDK client,
// against a real SQS-compatible server rather than our fake.
func TestSQSAgainstGoaws(t *testing.T) {
	t.Parallel()
	endpoint := startGoaws(t)

	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections) // for goleak
	client := sqs.New(sqs.Options{
		BaseEndpoint:     aws.String(endpoint),
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		RetryMaxAttempts: 1,
		HTTPClient:       &http.Client{Transport: tr},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// goaws answers GetQueueUrl with http://us-east-1.127.0.0.1:port/...,
	// the region prefixed to its Host. The SDK never dials a queue URL (it
	// sends every request to BaseEndpoint, loopback here) and goaws finds
	// the queue by the URL's last segment, so the sink is given the URL
	// goaws returns, as a user would.
	got, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("dlq")})
	require.NoError(t, err)
	queueURL := aws.ToString(got.QueueUrl)
	t.Logf("goaws queue URL: %s", queueURL)
	require.True(t, strings.HasSuffix(queueURL, "/"+goawsAccountID+"/dlq"), "queue URL %q", queueURL)

	l := deadletter.Letter{
		ID: "42", Function: "orders", Qualifier: "live", Key: "order-42",
		Payload: []byte(`{"order":42,"note":"a & b = c+d <é>"}`),
		Reason:  deadletter.RetriesExhausted, Attempts: 3,
		LastError: deadletter.ErrorInfo{
			Code: "TooManyRequestsException", Message: "Rate Exceeded.",
			StatusCode: 429, RequestID: "3f1c0b7e-req",
		},
	}
	require.NoError(t, deadletter.NewSQS(client, queueURL).Put(ctx, l))

	recv, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:              aws.String(queueURL),
		MaxNumberOfMessages:   10,
		MessageAttributeNames: []string{"All"},
	})
	require.NoError(t, err)
	require.Len(t, recv.Messages, 1)
	msg := recv.Messages[0]
	require.Equal(t, string(l.Payload), aws.ToString(msg.Body))
	attrs := make(map[string][2]string, len(msg.MessageAttributes))
	for name, a := range msg.MessageAttributes {
		attrs[name] = [2]string{aws.ToString(a.DataType), aws.ToString(a.StringValue)}
	}
	require.Equal(t, map[string][2]string{
		deadletter.SQSAttrRequestID:    {"String", l.LastError.RequestID},
		deadletter.SQSAttrErrorCode:    {"Number", strconv.Itoa(l.LastError.StatusCode)},
		deadletter.SQSAttrErrorMessage: {"String", l.LastError.Message},
	}, attrs)

	// A missing queue is an error. goaws reports it with the code
	// AWS.SimpleQueueService.NonExistentQueue, which the SDK does not map
	// to *types.QueueDoesNotExist, so only the error itself is checked.
	missing := endpoint + "/" + goawsAccountID + "/no-such-queue"
	err = deadletter.NewSQS(client, missing).Put(ctx, l)
	require.Error(t, err)
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		t.Logf("missing queue: code %q: %v", apiErr.ErrorCode(), err)
	}
}
