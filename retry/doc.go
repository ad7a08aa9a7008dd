// Package retry holds the dispatcher's retry policy and the classification of
// AWS Lambda Invoke outcomes.
//
// It answers two questions for a worker that has just called Invoke: what kind
// of outcome was this ([Classify], [FromError]), and what happens to the event
// next ([Policy.Decide], [Policy.NextDue]). Both are pure functions of their
// arguments: the attempt count and the enqueue time live on disk with the
// event, the random number for jitter and the current time are passed in, and
// nothing here keeps state between calls, so one [Policy] value is safe to
// share between any number of goroutines.
//
// # Classification
//
// [Classify] maps an error returned by the AWS SDK's lambda.Client.Invoke to a
// [Class]:
//
//   - [Success]: a nil error.
//   - [Throttled]: TooManyRequestsException (HTTP 429). The Retry-After header
//     is exposed as [InvokeError.RetryAfter] and sets the earliest next try.
//   - [Transient]: Lambda service faults (500 ServiceException, 502
//     EC2ThrottledException and friends, 409 ResourceConflictException, 408
//     timeouts, any other 5xx), connection resets, EOF in the middle of a
//     response, timeouts, and anything not recognised. Transient errors are
//     retried, but only as many times as the policy allows, so an error nobody
//     foresaw can never stall dispatch forever.
//   - [Permanent]: the request itself is refused (every 400/404/413/415 such as
//     InvalidRequestContentException or ResourceNotFoundException, 403
//     EFSMountFailureException) or the function is misconfigured (502
//     KMS*Exception, EC2AccessDeniedException, InvalidRuntimeException, ...).
//     Retrying cannot help: the event is dead-lettered at once.
//   - [Unreachable]: Lambda cannot be reached at all: DNS failure, connection
//     refused, no route to the host or network, TLS handshake failure.
//   - [Credentials]: our credentials are missing, expired, rejected or lack
//     permission (ExpiredToken*, UnrecognizedClientException,
//     InvalidSignatureException, AccessDeniedException, clock skew, and every
//     failure of the SDK's credential providers).
//
// Unreachable and Credentials faults are ours, not the event's: the dispatcher
// does not spend an attempt on them but pauses and probes with
// [Policy.ProbeDelay] until Lambda answers again.
//
// Classification follows the error chain with errors.As against the behaviour
// interfaces the SDK's own retryer uses (ErrorCode, HTTPStatusCode,
// ServiceRequestID, Timeout) and a few concrete types (net.DNSError,
// syscall errors, TLS and x509 errors). It reads the text of an error only
// where the SDK or the standard library gives no other handle; each such
// place says so in a comment.
//
// # Policy
//
// [DefaultPolicy] mirrors Lambda's own asynchronous invocation: two retries
// after the first attempt (three attempts in all) and a maximum event age of
// six hours, with exponential backoff from one second, doubling, up to five
// minutes, and ±50% jitter. [Policy.Delay] computes the backoff with
// github.com/cenkalti/backoff/v4 from the attempt number alone.
//
// [Policy.Decide] turns a class into a [Decision]: [Done], [Retry],
// [DeadLetter] with a [Reason], or [Pause].
//
// # Caveats
//
// The maximum event age is checked only when a retryable attempt fails, and
// against the time the caller passes to [Policy.Decide]. The dispatcher
// passes the time of the event's first attempt that reached Lambda, not its
// enqueue time: a backlog buffered while offline, or waiting behind a long
// queue, is never dead-lettered for its age; an event whose retries drag on
// for longer than MaxEventAge after its first attempt is.
//
// A per-call context deadline that fires while the SDK is still dialling
// surfaces as context.DeadlineExceeded and is classified [Transient], not
// [Unreachable]: the SDK drops the underlying dial error. Give the HTTP
// client's dialer a timeout shorter than the per-call deadline so that a
// black-holed network is reported as a dial timeout, which is [Unreachable].
//
// context.Canceled is classified [Transient]. Cancellation is not a failure of
// the event: callers must check their own context before classifying and give
// the attempt back when it is done.
//
// AccessDeniedException pauses the whole dispatcher (see [Credentials]). With
// IAM policies scoped to specific function ARNs, an event for a function the
// principal may not invoke therefore blocks every other event until the
// policy is fixed or the event is removed.
package retry
