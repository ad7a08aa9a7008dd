package retry_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	awsretry "github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher/retry"
)

// The fixtures below wrap errors the way the SDK delivers them from
// lambda.Client.Invoke (checked against TestRealClient*, which drives a real
// client over real HTTP):
//
//	*smithy.OperationError            ("operation error Lambda: Invoke")
//	  [*retry.MaxAttemptsError]        (only when the SDK deems it retryable)
//	    *awshttp.ResponseError         (RequestID, status; status 0 for transport errors)
//	      *smithyhttp.ResponseError
//	        the API error, or *smithyhttp.RequestSendError → *url.Error → *net.OpError → ...

// httpResponse returns a smithy response with the given status and headers.
func httpResponse(status int, header http.Header) *smithyhttp.Response {
	if header == nil {
		header = http.Header{}
	}
	return &smithyhttp.Response{Response: &http.Response{StatusCode: status, Header: header, Body: http.NoBody}}
}

// responseError wraps err as the SDK's response-error middleware does.
func responseError(status int, requestID string, header http.Header, err error) *awshttp.ResponseError {
	return &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{Response: httpResponse(status, header), Err: err},
		RequestID:     requestID,
	}
}

// operationError wraps err as the SDK's operation does.
func operationError(err error) error {
	return &smithy.OperationError{ServiceID: "Lambda", OperationName: "Invoke", Err: err}
}

// apiError is an API error as Invoke returns it for an HTTP response with
// the given status.
func apiError(status int, err error) error {
	return operationError(responseError(status, "req-1", nil, err))
}

// retriedAPIError is apiError after the SDK's retryer gave up (RetryMaxAttempts 1).
func retriedAPIError(status int, err error) error {
	return operationError(&awsretry.MaxAttemptsError{Attempt: 1, Err: responseError(status, "req-1", nil, err)})
}

// transportError is a transport failure as Invoke returns it: net/http's
// *url.Error inside the SDK's RequestSendError, in a response error with
// status 0 and no request id.
func transportError(err error) error {
	return operationError(&awsretry.MaxAttemptsError{Attempt: 1, Err: responseError(0, "", nil,
		&smithyhttp.RequestSendError{Err: &url.Error{
			Op:  "Post",
			URL: "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/fn/invocations",
			Err: err,
		}})})
}

// dialError is a failed connect(2) as net.Dialer reports it.
func dialError(errno syscall.Errno) error {
	return &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 443},
		Err: &os.SyscallError{Syscall: "connect", Err: errno}}
}

// connError is a failure on an established connection.
func connError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 443},
		Err: &os.SyscallError{Syscall: op, Err: errno}}
}

// credentialsError is a credentials provider failure as Invoke returns it:
// the client's GetIdentity middleware wraps it with fmt.Errorf.
func credentialsError(err error) error {
	return operationError(fmt.Errorf("get identity: %w", fmt.Errorf("get credentials: %w", err)))
}

type classCase struct {
	name string
	err  error
	want retry.Class
}

// modelled returns a case for a modelled Lambda error type delivered with its
// HTTP status.
func modelled(status int, apiErr smithy.APIError, want retry.Class) classCase {
	return classCase{name: apiErr.ErrorCode(), err: apiError(status, apiErr), want: want}
}

// generic returns a case for an unmodelled code, which the SDK delivers as a
// *smithy.GenericAPIError.
func generic(status int, code string, want retry.Class) classCase {
	return classCase{
		name: fmt.Sprintf("%s/%d", code, status),
		err:  apiError(status, &smithy.GenericAPIError{Code: code, Message: "message of " + code}),
		want: want,
	}
}

// modelledCases covers every error type in service/lambda/types/errors.go,
// each with the HTTP status its schema gives it.
func modelledCases() []classCase {
	msg := aws.String("the message")
	return []classCase{
		// Throttled.
		modelled(429, &types.TooManyRequestsException{Message: msg, RetryAfterSeconds: aws.String("3"),
			Reason: types.ThrottleReasonConcurrentInvocationLimitExceeded}, retry.Throttled),

		// Transient.
		modelled(500, &types.ServiceException{Message: msg}, retry.Transient),
		modelled(502, &types.EC2ThrottledException{Message: msg}, retry.Transient),
		modelled(502, &types.ResourceNotReadyException{Message: msg}, retry.Transient),
		modelled(502, &types.EC2UnexpectedException{Message: msg}, retry.Transient),
		modelled(502, &types.ENILimitReachedException{Message: msg}, retry.Transient),
		modelled(502, &types.ENINotReadyException{Message: msg}, retry.Transient),
		modelled(502, &types.SubnetIPAddressLimitReachedException{Message: msg}, retry.Transient),
		modelled(409, &types.ResourceConflictException{Message: msg}, retry.Transient),
		modelled(409, &types.SnapStartNotReadyException{Message: msg}, retry.Transient),
		modelled(409, &types.SnapStartRegenerationFailureException{Message: msg}, retry.Transient),
		modelled(409, &types.CodeArtifactUserPendingException{Message: msg}, retry.Transient),
		modelled(409, &types.CodeArtifactUserDeletedException{Message: msg}, retry.Transient),
		modelled(400, &types.ResourceInUseException{Message: msg}, retry.Transient),
		modelled(408, &types.EFSMountTimeoutException{Message: msg}, retry.Transient),
		modelled(408, &types.EFSMountConnectivityException{Message: msg}, retry.Transient),
		modelled(408, &types.SnapStartTimeoutException{Message: msg}, retry.Transient),
		modelled(408, &types.S3FilesMountTimeoutException{Message: msg}, retry.Transient),
		modelled(408, &types.S3FilesMountConnectivityException{Message: msg}, retry.Transient),
		modelled(410, &types.EFSIOException{Message: msg}, retry.Transient),

		// Permanent: the request is refused.
		modelled(400, &types.InvalidParameterValueException{Message: msg}, retry.Permanent),
		modelled(400, &types.InvalidRequestContentException{Message: msg}, retry.Permanent),
		modelled(400, &types.RecursiveInvocationException{Message: msg}, retry.Permanent),
		modelled(400, &types.SnapStartException{Message: msg}, retry.Permanent),
		modelled(400, &types.ModeNotSupportedException{Message: msg}, retry.Permanent),
		modelled(404, &types.ResourceNotFoundException{Message: msg}, retry.Permanent),
		modelled(413, &types.RequestTooLargeException{Message: msg}, retry.Permanent),
		modelled(413, &types.SerializedRequestEntityTooLargeException{Message: msg}, retry.Permanent),
		modelled(415, &types.UnsupportedMediaTypeException{Message: msg}, retry.Permanent),
		modelled(409, &types.DurableExecutionAlreadyStartedException{Message: msg}, retry.Permanent),
		// Permanent: the function's configuration.
		modelled(403, &types.EFSMountFailureException{Message: msg}, retry.Permanent),
		modelled(403, &types.S3FilesMountFailureException{Message: msg}, retry.Permanent),
		modelled(502, &types.EC2AccessDeniedException{Message: msg}, retry.Permanent),
		modelled(502, &types.KMSAccessDeniedException{Message: msg}, retry.Permanent),
		modelled(502, &types.KMSDisabledException{Message: msg}, retry.Permanent),
		modelled(502, &types.KMSInvalidStateException{Message: msg}, retry.Permanent),
		modelled(502, &types.KMSNotFoundException{Message: msg}, retry.Permanent),
		modelled(502, &types.InvalidRuntimeException{Message: msg}, retry.Permanent),
		modelled(502, &types.InvalidZipFileException{Message: msg}, retry.Permanent),
		modelled(502, &types.InvalidSubnetIDException{Message: msg}, retry.Permanent),
		modelled(502, &types.InvalidSecurityGroupIDException{Message: msg}, retry.Permanent),
		modelled(409, &types.CodeArtifactUserFailedException{Message: msg}, retry.Permanent),
		modelled(400, &types.CodeVerificationFailedException{Message: msg}, retry.Permanent),
		modelled(400, &types.InvalidCodeSignatureException{Message: msg}, retry.Permanent),
		modelled(404, &types.CodeSigningConfigNotFoundException{Message: msg}, retry.Permanent),
		modelled(400, &types.NoPublishedVersionException{Message: msg}, retry.Permanent),
		// Permanent: errors of other operations.
		modelled(400, &types.AliasLimitExceededException{Message: msg}, retry.Permanent),
		modelled(400, &types.CallbackTimeoutException{Message: msg}, retry.Permanent),
		modelled(400, &types.CapacityProviderLimitExceededException{Message: msg}, retry.Permanent),
		modelled(400, &types.CodeStorageExceededException{Message: msg}, retry.Permanent),
		modelled(400, &types.FunctionVersionsPerCapacityProviderLimitExceededException{Message: msg}, retry.Permanent),
		modelled(400, &types.PolicyLengthExceededException{Message: msg}, retry.Permanent),
		modelled(400, &types.PublicPolicyException{Message: msg}, retry.Permanent),
		modelled(402, &types.ServiceQuotaExceededException{Message: msg}, retry.Permanent),
		modelled(412, &types.PreconditionFailedException{Message: msg}, retry.Permanent),
		modelled(404, &types.ProvisionedConcurrencyConfigNotFoundException{Message: msg}, retry.Permanent),
	}
}

func TestClassifyModelledErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range modelledCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, retry.Classify(tc.err), "%v", tc.err)
			// The same outcome after the SDK's retryer gave up on it.
			var api smithy.APIError
			require.True(t, errors.As(tc.err, &api))
			var hs interface{ HTTPStatusCode() int }
			require.True(t, errors.As(tc.err, &hs))
			require.Equal(t, tc.want, retry.Classify(retriedAPIError(hs.HTTPStatusCode(), api)))
			// And the bare API error, without status, classifies by code.
			require.Equal(t, tc.want, retry.Classify(api))
		})
	}
}

// TestClassifyCoversEveryModelledError fails when the SDK models an error
// the table test does not list: classify it, then add it.
func TestClassifyCoversEveryModelledError(t *testing.T) {
	t.Parallel()
	listed := map[string]bool{}
	for _, tc := range modelledCases() {
		listed[tc.name] = true
	}
	var missing []string
	seen := 0
	for _, entry := range lambda.TypeRegistry.Entries {
		api, ok := entry.New().(smithy.APIError)
		if !ok {
			continue
		}
		seen++
		if !listed[api.ErrorCode()] {
			missing = append(missing, api.ErrorCode())
		}
	}
	require.Equal(t, len(listed), seen, "modelledCases lists an error the SDK does not model")
	sort.Strings(missing)
	require.Empty(t, missing, "modelled Lambda errors missing from modelledCases")
}

func TestClassifyUnmodelledCodes(t *testing.T) {
	t.Parallel()
	cases := []classCase{
		generic(413, "RequestEntityTooLargeException", retry.Permanent),
		// Credentials.
		generic(403, "UnrecognizedClientException", retry.Credentials),
		generic(403, "InvalidSignatureException", retry.Credentials),
		generic(403, "SignatureDoesNotMatch", retry.Credentials),
		generic(403, "ExpiredToken", retry.Credentials),
		generic(403, "ExpiredTokenException", retry.Credentials),
		generic(400, "ExpiredTokenException", retry.Credentials),
		generic(403, "RequestExpired", retry.Credentials),
		generic(403, "RequestTimeTooSkewed", retry.Credentials),
		generic(403, "IncompleteSignatureException", retry.Credentials),
		generic(403, "MissingAuthenticationTokenException", retry.Credentials),
		generic(403, "InvalidClientTokenId", retry.Credentials),
		generic(403, "AccessDeniedException", retry.Credentials),
		generic(403, "AccessDenied", retry.Credentials),
		// Throttling codes the SDK knows, some sent with 400.
		generic(400, "ThrottlingException", retry.Throttled),
		generic(400, "Throttling", retry.Throttled),
		generic(503, "SlowDown", retry.Throttled),
		generic(400, "RequestLimitExceeded", retry.Throttled),
		// Generic server-side faults.
		generic(400, "RequestTimeoutException", retry.Transient),
		generic(500, "InternalFailure", retry.Transient),
		generic(503, "ServiceUnavailableException", retry.Transient),
		// Patterns: KMS*Exception.
		generic(502, "KMSSomethingNewException", retry.Permanent),
		// Unknown codes go by status: 4xx permanent except 408 and 429,
		// 5xx transient.
		generic(400, "SomethingNewException", retry.Permanent),
		generic(401, "SomethingNewException", retry.Permanent),
		generic(403, "SomethingNewException", retry.Permanent),
		generic(404, "SomethingNewException", retry.Permanent),
		generic(413, "SomethingNewException", retry.Permanent),
		generic(415, "SomethingNewException", retry.Permanent),
		generic(408, "SomethingNewException", retry.Transient),
		generic(429, "SomethingNewException", retry.Throttled),
		generic(500, "SomethingNewException", retry.Transient),
		generic(502, "SomethingNewException", retry.Transient),
		generic(503, "SomethingNewException", retry.Transient),
		generic(504, "SomethingNewException", retry.Transient),
		// The SDK's placeholder when the response names no code.
		generic(429, "UnknownError", retry.Throttled),
		generic(404, "UnknownError", retry.Permanent),
		generic(503, "UnknownError", retry.Transient),
		{
			name: "UnknownCodeWithoutStatus",
			err:  &smithy.GenericAPIError{Code: "SomethingNewException", Message: "?"},
			want: retry.Transient,
		},
		{
			// A Lambda message never triggers the credentials rule.
			name: "MessageLooksLikeCredentialsFailure",
			err:  apiError(400, &types.InvalidParameterValueException{Message: aws.String("get identity: no")}),
			want: retry.Permanent,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, retry.Classify(tc.err), "%v", tc.err)
		})
	}
}

// timeoutError is an error with Timeout() true, like net/http's internal
// handshake timeout.
type timeoutError struct{ msg string }

func (e timeoutError) Error() string { return e.msg }
func (e timeoutError) Timeout() bool { return true }

func TestClassifyTransportErrors(t *testing.T) {
	t.Parallel()
	cases := []classCase{
		// Unreachable.
		{"ConnectionRefused", transportError(dialError(syscall.ECONNREFUSED)), retry.Unreachable},
		{"HostUnreachable", transportError(dialError(syscall.EHOSTUNREACH)), retry.Unreachable},
		{"NetworkUnreachable", transportError(dialError(syscall.ENETUNREACH)), retry.Unreachable},
		{"NetworkDown", transportError(dialError(syscall.ENETDOWN)), retry.Unreachable},
		{"DialTimeout", transportError(&net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}), retry.Unreachable},
		{"DNSNotFound", transportError(&net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{
			Err: "no such host", Name: "lambda.us-east-1.amazonaws.com", IsNotFound: true}}), retry.Unreachable},
		{"DNSTimeout", transportError(&net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{
			Err: "i/o timeout", Name: "lambda.us-east-1.amazonaws.com", Server: "10.0.0.2:53", IsTimeout: true}}), retry.Unreachable},
		{"DNSServerFailure", transportError(&net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{
			Err: "server misbehaving", Name: "lambda.us-east-1.amazonaws.com", IsTemporary: true}}), retry.Unreachable},
		{"TLSUnknownAuthority", transportError(&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), retry.Unreachable},
		{"TLSHostname", transportError(x509.HostnameError{Certificate: &x509.Certificate{}, Host: "lambda.us-east-1.amazonaws.com"}), retry.Unreachable},
		{"TLSNotTLS", transportError(tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}), retry.Unreachable},
		{"TLSRemoteAlert", transportError(&net.OpError{Op: "remote error", Err: errors.New("tls: handshake failure")}), retry.Unreachable},
		{"TLSAlertError", transportError(tls.AlertError(40)), retry.Unreachable},
		{"TLSHandshakeTimeout", transportError(timeoutError{"net/http: TLS handshake timeout"}), retry.Unreachable},

		// Transient: the connection was there and broke, or timed out.
		{"ConnectionReset", transportError(connError("read", syscall.ECONNRESET)), retry.Transient},
		{"ConnectionResetSyscall", transportError(syscall.ECONNRESET), retry.Transient},
		{"BrokenPipe", transportError(connError("write", syscall.EPIPE)), retry.Transient},
		{"UnexpectedEOF", transportError(io.ErrUnexpectedEOF), retry.Transient},
		{"EOF", transportError(io.EOF), retry.Transient},
		{"ClosedConnection", transportError(&net.OpError{Op: "read", Net: "tcp", Err: net.ErrClosed}), retry.Transient},
		{"ReadTimeout", transportError(&net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}), retry.Transient},
		{"ClientTimeout", transportError(timeoutError{"context deadline exceeded (Client.Timeout exceeded while awaiting headers)"}), retry.Transient},
		{"PerCallDeadline", operationError(&smithy.CanceledError{Err: context.DeadlineExceeded}), retry.Transient},
		{"Canceled", operationError(&smithy.CanceledError{Err: context.Canceled}), retry.Transient},
		{"BareCanceled", context.Canceled, retry.Transient},
		{"BodyReadTimeout", operationError(responseError(200, "req-1", nil,
			&smithy.DeserializationError{Err: &awshttp.ResponseTimeoutError{TimeoutDur: 1}})), retry.Transient},
		{"RetryQuotaExceeded", operationError(fmt.Errorf("failed to get retry Send token, %w",
			ratelimit.QuotaExceededError{Available: 0, Requested: 5})), retry.Transient},
		{"RetryQuotaExceededJoined", operationError(errors.Join(
			responseError(0, "", nil, &smithyhttp.RequestSendError{Err: io.ErrUnexpectedEOF}),
			ratelimit.QuotaExceededError{Available: 0, Requested: 5})), retry.Transient},
		{"Unrecognised", errors.New("something nobody foresaw"), retry.Transient},

		// A response without a code classifies by status.
		{"HTMLFrom503", operationError(responseError(503, "", nil,
			&smithy.DeserializationError{Err: errors.New("failed to decode response body, invalid character '<'")})), retry.Transient},
		{"HTMLFrom429", operationError(responseError(429, "", nil,
			&smithy.DeserializationError{Err: errors.New("failed to decode response body")})), retry.Throttled},
		{"HTMLFrom413", operationError(responseError(413, "", nil,
			&smithy.DeserializationError{Err: errors.New("failed to decode response body")})), retry.Permanent},
		{"ResetWhileReading429", operationError(responseError(429, "req-1", nil,
			&smithy.DeserializationError{Err: fmt.Errorf("failed to copy error response body, %w", io.ErrUnexpectedEOF)})), retry.Throttled},
		{"2xxThatFailedToDecode", operationError(responseError(202, "req-1", nil,
			&smithy.DeserializationError{Err: io.ErrUnexpectedEOF})), retry.Transient},

		// Nil and pre-classified errors.
		{"Nil", nil, retry.Success},
		{"InvokeError", fmt.Errorf("send: %w", &retry.InvokeError{Class: retry.Permanent, Code: "X"}), retry.Permanent},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, retry.Classify(tc.err), "%v", tc.err)
		})
	}
}

func TestClassifyCredentialsFailures(t *testing.T) {
	t.Parallel()
	imdsNotFound := &smithy.OperationError{ServiceID: "ec2imds", OperationName: "GetMetadata",
		Err: responseError(404, "", nil, &smithy.GenericAPIError{Code: "NotFound", Message: "not found"})}
	imdsRefused := &smithy.OperationError{ServiceID: "ec2imds", OperationName: "GetMetadata",
		Err: responseError(0, "", nil, &smithyhttp.RequestSendError{Err: &url.Error{Op: "Get",
			URL: "http://169.254.169.254/latest/api/token", Err: dialError(syscall.ECONNREFUSED)}})}
	stsDenied := &smithy.OperationError{ServiceID: "STS", OperationName: "AssumeRole",
		Err: responseError(400, "sts-1", nil, &smithy.GenericAPIError{Code: "ValidationError", Message: "bad role"})}
	cases := []classCase{
		{"StaticEmpty", credentialsError(&credentials.StaticCredentialsEmptyError{}), retry.Credentials},
		{"CacheRefreshFailed", credentialsError(fmt.Errorf("failed to refresh cached credentials, %w",
			errors.New("boom"))), retry.Credentials},
		// Whatever the credential endpoint answered, it says nothing about
		// Lambda: a 404, a refused connection or an STS 400 is still a
		// credentials failure.
		{"NoIMDSRole", credentialsError(fmt.Errorf("failed to refresh cached credentials, %w",
			fmt.Errorf("no EC2 IMDS role found, %w", imdsNotFound))), retry.Credentials},
		{"IMDSRefused", credentialsError(fmt.Errorf("failed to refresh cached credentials, %w",
			fmt.Errorf("no EC2 IMDS role found, %w", imdsRefused))), retry.Credentials},
		{"AssumeRoleRejected", credentialsError(fmt.Errorf("failed to refresh cached credentials, %w",
			stsDenied)), retry.Credentials},
		{"Anonymous", credentialsError(errors.New(
			"the AnonymousCredentials is not a valid credential provider, and cannot be used to sign AWS requests with")), retry.Credentials},
		{"SignerRetrieve", operationError(&v4.SigningError{Err: fmt.Errorf("failed to retrieve credentials: %w",
			errors.New("boom"))}), retry.Credentials},
		{"NoAuthScheme", operationError(errors.New("could not select an auth scheme")), retry.Credentials},
		{"Joined", operationError(errors.Join(errors.New("first"),
			fmt.Errorf("get identity: %w", errors.New("boom")))), retry.Credentials},
		// The text alone, in the middle of a Lambda message, is not enough.
		{"JoinedNotCredentials", operationError(errors.Join(errors.New("first"),
			responseError(400, "req-1", nil, &types.InvalidParameterValueException{Message: aws.String("get identity: no")}))),
			retry.Permanent},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, retry.Classify(tc.err), "%v", tc.err)
		})
	}
}

func TestClassString(t *testing.T) {
	t.Parallel()
	for c, want := range map[retry.Class]string{
		retry.Success:     "success",
		retry.Throttled:   "throttled",
		retry.Transient:   "transient",
		retry.Permanent:   "permanent",
		retry.Unreachable: "unreachable",
		retry.Credentials: "credentials",
		0:                 "Class(0)",
		42:                "Class(42)",
	} {
		require.Equal(t, want, c.String())
	}
}
