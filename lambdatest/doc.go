// Package lambdatest runs an HTTP server that speaks AWS Lambda's Invoke REST
// protocol on 127.0.0.1, for tests, examples and users' own tests, in the way
// net/http/httptest serves plain HTTP.
//
// The server is driven by the real aws-sdk-go-v2 Lambda client over real HTTP,
// so everything between the caller and the wire (serialisation, signing,
// error decoding, the transport) is exercised as in production. Functions are
// Go handlers; failures of the Lambda service itself (throttles, 5xx answers,
// slow answers, dropped connections, an unreachable endpoint) are scripted
// per function.
//
// # Basics
//
// [NewServer] listens on 127.0.0.1 with a free port and serves at once.
// [Server.Register] adds a function, [Server.Client] returns a
// *lambda.Client that needs no further setup (endpoint, region, dummy
// credentials and SDK retries off are set), and [Server.Close] stops the
// server and waits for every goroutine it started:
//
//	srv := lambdatest.NewServer()
//	defer srv.Close()
//	srv.Register("orders", lambdatest.Echo())
//	out, err := srv.Client().Invoke(ctx, &lambda.InvokeInput{
//		FunctionName: aws.String("orders"),
//		Payload:      []byte(`{"id":42}`),
//	})
//
// Every request that names a function is recorded as an [Invocation], also
// the ones answered with an error. [Server.Invocations], [Server.Count] and
// [Server.Reset] inspect the record; [Server.WaitFor] and [Server.WaitCount]
// block until a condition holds, without polling or sleeping.
//
// # Answers
//
// The server answers as Lambda does:
//
//   - Event: the handler runs, then 202 with an empty body. The handler's
//     error is recorded but not visible to the caller, as with a real
//     asynchronous invoke. Running the handler before answering keeps tests
//     deterministic.
//   - RequestResponse (the default when the X-Amz-Invocation-Type header is
//     absent): 200 with the handler's payload; when the handler fails, 200
//     with the header X-Amz-Function-Error: Unhandled and a body
//     {"errorMessage": ..., "errorType": ...}.
//   - DryRun: 204 without running the handler.
//
// Errors of the service are JSON bodies with the X-Amzn-ErrorType header, so
// the SDK decodes them into typed errors (*types.ResourceNotFoundException,
// *types.TooManyRequestsException with RetryAfterSeconds and Reason, and so
// on); codes the SDK does not model, such as RequestEntityTooLargeException,
// arrive as *smithy.GenericAPIError. Every answer carries x-amzn-RequestId,
// which (*awshttp.ResponseError).ServiceRequestID returns on failure.
//
// Checks are made in this order: route and function name (400
// ValidationException), qualifier and client context (400
// InvalidParameterValueException), payload size (413
// RequestEntityTooLargeException), scripted faults, the function's existence
// (404 ResourceNotFoundException), and the payload being JSON or empty (400
// InvalidRequestContentException).
//
// # Function names
//
// A function is addressed as Lambda allows: bare name ("orders"), with a
// qualifier ("orders:live"), partial ARN ("123456789012:function:orders")
// or full ARN ("arn:aws:lambda:us-east-1:123456789012:function:orders"),
// the last two optionally followed by ":qualifier"; the qualifier may also be
// given as the Qualifier query parameter. Handlers are registered, faults
// scripted and invocations counted by the bare name; any of the forms above
// is accepted wherever this package takes a function name.
//
// # Faults
//
// [Server.Fail] queues a [Fault] for the next requests to a function (or to
// every function, with the empty name): an error answer with any status and
// code, a Retry-After header, added latency, or a connection closed without
// an answer. Faults apply in the order queued; [Throttle], [ServerError],
// [Error], [Latency] and [DropConnection] build the common ones.
// [Server.Offline] closes the listener and every connection, so that callers
// get "connection refused"; [Server.Online] listens again on the same
// address.
//
// # Caveats
//
// The server keeps every recorded invocation, payload included, until
// [Server.Reset]; long benchmarks should use [WithRecordLimit]. Payloads
// handed to handlers and returned by [Server.Invocations] are shared and
// must not be modified. [Server.Close] waits for running handlers, like
// httptest's Close: a handler must return once its context is done. Aliases
// are not modelled: a qualifier is passed to the handler as given, and the
// X-Amz-Executed-Version header is the qualifier when it is a version number
// and $LATEST otherwise.
package lambdatest
