package retry_test

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/lambdadispatch/dispatcher/retry"
)

// throttledInvokeError builds, offline, the error lambda.Client.Invoke
// returns when Lambda answers 429 TooManyRequestsException with
// Retry-After: 3.
func throttledInvokeError() error {
	return &smithy.OperationError{
		ServiceID:     "Lambda",
		OperationName: "Invoke",
		Err: &awshttp.ResponseError{
			ResponseError: &smithyhttp.ResponseError{
				Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 429, Header: http.Header{}}},
				Err: &types.TooManyRequestsException{
					Message:           aws.String("Rate Exceeded."),
					RetryAfterSeconds: aws.String("3"),
					Reason:            types.ThrottleReasonConcurrentInvocationLimitExceeded,
				},
			},
			RequestID: "5f1b6c2e",
		},
	}
}

func ExampleClassify() {
	fmt.Println(retry.Classify(nil))
	fmt.Println(retry.Classify(throttledInvokeError()))
	fmt.Println(retry.Classify(&types.InvalidRequestContentException{Message: aws.String("Could not parse request body into json")}))
	fmt.Println(retry.Classify(errors.New("something nobody foresaw")))
	// Output:
	// success
	// throttled
	// permanent
	// transient
}

func ExampleFromError() {
	ie := retry.FromError(throttledInvokeError())
	fmt.Println(ie.Class, ie.Code, ie.StatusCode, ie.RequestID, ie.RetryAfter, ie.Reason)
	fmt.Println(ie)

	// The original error stays reachable.
	var tooMany *types.TooManyRequestsException
	fmt.Println(errors.As(ie, &tooMany))
	// Output:
	// throttled TooManyRequestsException 429 5f1b6c2e 3s ConcurrentInvocationLimitExceeded
	// retry: throttled: TooManyRequestsException (HTTP 429, request 5f1b6c2e, reason ConcurrentInvocationLimitExceeded, retry after 3s): Rate Exceeded.
	// true
}

func ExampleDefaultPolicy() {
	p := retry.DefaultPolicy()
	fmt.Println(p.MaxRetries, p.InitialInterval, p.Multiplier, p.MaxInterval, p.RandomizationFactor, p.MaxEventAge)
	fmt.Println(p.Validate())
	// Output:
	// 2 1s 2 5m0s 0.5 6h0m0s
	// <nil>
}

func ExamplePolicy_Validate() {
	p := retry.DefaultPolicy()
	p.MaxRetries = -1
	p.Multiplier = 0.5
	err := p.Validate()
	fmt.Println(errors.Is(err, retry.ErrInvalidPolicy))
	fmt.Println(err)
	// Output:
	// true
	// retry: invalid policy: MaxRetries is -1, must be >= 0
	// retry: invalid policy: Multiplier is 0.5, must be a finite number >= 1
}

func ExamplePolicy_Delay() {
	p := retry.DefaultPolicy()
	// rnd 0.5 is the middle of the jitter range; 0 and 0.999 its ends.
	for attempt := 1; attempt <= 3; attempt++ {
		fmt.Println(attempt, p.Delay(attempt, 0), p.Delay(attempt, 0.5), p.Delay(attempt, 0.999).Round(time.Millisecond))
	}
	fmt.Println(p.Delay(20, 0.5)) // capped at MaxInterval
	// Output:
	// 1 500ms 1s 1.499s
	// 2 1s 2s 2.998s
	// 3 2s 4s 5.996s
	// 5m0s
}

func ExamplePolicy_ProbeDelay() {
	p := retry.DefaultPolicy()
	p.RandomizationFactor = 0
	for n := 1; n <= 8; n++ {
		fmt.Print(p.ProbeDelay(n, 0.5), " ")
	}
	fmt.Println()
	// Output:
	// 1s 2s 4s 8s 16s 32s 1m0s 1m0s
}

func ExamplePolicy_NextDue() {
	p := retry.DefaultPolicy()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ie := retry.FromError(throttledInvokeError())

	// After the first failed attempt the backoff is 1s, but Lambda asked for 3s.
	fmt.Println(p.NextDue(1, now, ie.RetryAfter, 0.5).Format(time.TimeOnly))
	// After the third, the backoff of 4s is later than Retry-After.
	fmt.Println(p.NextDue(3, now, ie.RetryAfter, 0.5).Format(time.TimeOnly))
	// Output:
	// 12:00:03
	// 12:00:04
}

func ExamplePolicy_Decide() {
	p := retry.DefaultPolicy()
	enqueued := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	now := enqueued.Add(time.Minute)

	show := func(d retry.Decision, r retry.Reason) { fmt.Printf("%v %q\n", d, r) }
	show(p.Decide(retry.Success, 1, enqueued, now))
	show(p.Decide(retry.Throttled, 1, enqueued, now))
	show(p.Decide(retry.Transient, 3, enqueued, now))
	show(p.Decide(retry.Permanent, 1, enqueued, now))
	show(p.Decide(retry.Unreachable, 1, enqueued, now))
	show(p.Decide(retry.Transient, 1, enqueued, enqueued.Add(7*time.Hour)))
	// Output:
	// done ""
	// retry ""
	// dead-letter "retries exhausted"
	// dead-letter "rejected"
	// pause ""
	// dead-letter "event age exceeded"
}
