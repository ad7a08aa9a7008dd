package lambdatest_test

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/lambdadispatch/dispatcher/lambdatest"
)

// A function written in Go, invoked by the real SDK client over HTTP.
func Example() {
	srv := lambdatest.NewServer()
	defer srv.Close()
	srv.Register("greet", func(_ context.Context, inv lambdatest.Invocation) ([]byte, error) {
		return fmt.Appendf(nil, `{"greeting":"hello from %s"}`, inv.Function), nil
	})

	ctx := context.Background()
	out, err := srv.Client().Invoke(ctx, &lambda.InvokeInput{
		FunctionName: aws.String("arn:aws:lambda:us-east-1:123456789012:function:greet"),
		Payload:      []byte(`{}`),
	})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println(out.StatusCode, string(out.Payload))
	fmt.Println("invocations of greet:", srv.Count("greet"))
	// Output:
	// 200 {"greeting":"hello from greet"}
	// invocations of greet: 1
}

// Asynchronous invocations are answered 202 after the handler has run, so
// the record is complete when Invoke returns.
func Example_event() {
	srv := lambdatest.NewServer()
	defer srv.Close()
	srv.Register("orders", lambdatest.OK())

	out, err := srv.Client().Invoke(context.Background(), &lambda.InvokeInput{
		FunctionName:   aws.String("orders"),
		InvocationType: types.InvocationTypeEvent,
		Payload:        []byte(`{"order":42}`),
	})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	inv := srv.Invocations("orders")[0]
	fmt.Println(out.StatusCode, inv.InvocationType, string(inv.Payload))
	// Output:
	// 202 Event {"order":42}
}

// A throttle the SDK decodes into *types.TooManyRequestsException, with the
// Retry-After header in RetryAfterSeconds; the next request succeeds.
func ExampleServer_Fail() {
	srv := lambdatest.NewServer()
	defer srv.Close()
	srv.Register("orders", lambdatest.OK())
	srv.Fail("orders", lambdatest.Throttle(1, 2*time.Second))

	client := srv.Client()
	in := &lambda.InvokeInput{FunctionName: aws.String("orders"), InvocationType: types.InvocationTypeEvent}
	for range 2 {
		out, err := client.Invoke(context.Background(), in)
		var throttled *types.TooManyRequestsException
		switch {
		case errors.As(err, &throttled):
			fmt.Println("throttled:", throttled.Reason, "retry after", aws.ToString(throttled.RetryAfterSeconds), "s")
		case err != nil:
			fmt.Println("error:", err)
		default:
			fmt.Println("status", out.StatusCode)
		}
	}
	fmt.Println("attempts:", srv.Count("orders"))
	// Output:
	// throttled: ReservedFunctionConcurrentInvocationLimitExceeded retry after 2 s
	// status 202
	// attempts: 2
}

// Every error answer carries a request id, which the SDK exposes through
// *awshttp.ResponseError.
func ExampleServer_Invocations() {
	srv := lambdatest.NewServer()
	defer srv.Close()

	_, err := srv.Client().Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String("missing")})
	var notFound *types.ResourceNotFoundException
	var re *awshttp.ResponseError
	if errors.As(err, &notFound) && errors.As(err, &re) {
		inv := srv.Invocations("missing")[0]
		fmt.Println(re.HTTPStatusCode(), inv.ErrorCode, inv.RequestID == re.ServiceRequestID())
	}
	// Output:
	// 404 ResourceNotFoundException true
}

// An unreachable endpoint: connection refused while offline, served again
// on the same address once online.
func ExampleServer_Offline() {
	srv := lambdatest.NewServer()
	defer srv.Close()
	srv.Register("orders", lambdatest.OK())
	client := srv.Client()
	in := &lambda.InvokeInput{FunctionName: aws.String("orders")}

	srv.Offline()
	_, err := client.Invoke(context.Background(), in)
	fmt.Println("offline, connection refused:", errors.Is(err, syscall.ECONNREFUSED))

	if err := srv.Online(); err != nil {
		fmt.Println("error:", err)
		return
	}
	out, err := client.Invoke(context.Background(), in)
	fmt.Println("online:", out.StatusCode, err)
	// Output:
	// offline, connection refused: true
	// online: 200 <nil>
}

// Waiting, with a deadline, for invocations made by another goroutine (a
// dispatcher's workers, say) instead of sleeping.
func ExampleServer_WaitCount() {
	srv := lambdatest.NewServer()
	defer srv.Close()
	srv.Register("orders", lambdatest.OK())

	client := srv.Client()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 3 {
			_, _ = client.Invoke(context.Background(), &lambda.InvokeInput{
				FunctionName:   aws.String("orders"),
				InvocationType: types.InvocationTypeEvent,
			})
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.WaitCount(ctx, "orders", 3)
	<-done
	fmt.Println(err, srv.Count("orders"))
	// Output:
	// <nil> 3
}
