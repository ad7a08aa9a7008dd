package retry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
)

// Class is the kind of outcome of a Lambda Invoke call, as returned by
// [Classify]. The zero value is not a valid Class (so a forgotten field never
// reads as Success); [Policy.Decide] treats unknown values as [Transient].
type Class int

// The outcome classes. See the package documentation for what falls in each.
const (
	// Success: Invoke returned no error.
	Success Class = iota + 1
	// Throttled: Lambda refused the call for now (TooManyRequestsException,
	// HTTP 429). Retried, no earlier than Retry-After.
	Throttled
	// Transient: a fault that may pass (service errors, 5xx, resets,
	// timeouts, anything unrecognised). Retried up to MaxRetries.
	Transient
	// Permanent: Lambda rejected the request or the function's configuration
	// is broken; retrying cannot help. Dead-lettered at once.
	Permanent
	// Unreachable: Lambda could not be reached (DNS, connection refused, no
	// route, TLS handshake). No attempt is spent: dispatch pauses.
	Unreachable
	// Credentials: our credentials are missing, expired or rejected, or our
	// principal lacks permission. No attempt is spent: dispatch pauses.
	Credentials
)

// String returns the lower-case name of the class, such as "throttled".
func (c Class) String() string {
	switch c {
	case Success:
		return "success"
	case Throttled:
		return "throttled"
	case Transient:
		return "transient"
	case Permanent:
		return "permanent"
	case Unreachable:
		return "unreachable"
	case Credentials:
		return "credentials"
	}
	return fmt.Sprintf("Class(%d)", int(c))
}

// codes classifies Lambda error codes. It lists every error modelled by
// service/lambda v1.114 (types/errors.go, with its HTTP status), and the
// unmodelled codes Lambda or the AWS front end are known to send. A code not
// listed here is classified by its HTTP status (see classifyStatus).
var codes = map[string]Class{
	// Throttled.
	"TooManyRequestsException": Throttled, // 429
	// Generic AWS throttling codes (the SDK's DefaultThrottleErrorCodes,
	// minus EC2ThrottledException, which Lambda sends for its own EC2 calls
	// and our design table lists as transient). Some come with HTTP 400.
	"Throttling":                             Throttled,
	"ThrottlingException":                    Throttled,
	"ThrottledException":                     Throttled,
	"RequestThrottled":                       Throttled,
	"RequestThrottledException":              Throttled,
	"RequestLimitExceeded":                   Throttled,
	"BandwidthLimitExceeded":                 Throttled,
	"SlowDown":                               Throttled,
	"ProvisionedThroughputExceededException": Throttled,

	// Transient: Lambda service faults.
	"ServiceException":          Transient, // 500
	"EC2ThrottledException":     Transient, // 502
	"EC2UnexpectedException":    Transient, // 502
	"ResourceNotReadyException": Transient, // 502: VPC connection coming back
	"ENINotReadyException":      Transient, // 502: "wait a few moments and try again"
	// Capped by the same retries: they may clear as other functions scale in.
	"ENILimitReachedException":             Transient, // 502
	"SubnetIPAddressLimitReachedException": Transient, // 502
	// A function that is being updated or initialised.
	"ResourceConflictException":  Transient, // 409
	"ResourceInUseException":     Transient, // 400: the resource is in a passing state (not an Invoke error)
	"SnapStartNotReadyException": Transient, // 409
	// Lambda says to wait, or that it retries itself.
	"SnapStartRegenerationFailureException": Transient, // 409
	"CodeArtifactUserPendingException":      Transient, // 409
	"CodeArtifactUserDeletedException":      Transient, // 409: Lambda provisions a new one
	// Timeouts and connectivity between Lambda and the function's resources.
	"EFSMountTimeoutException":          Transient, // 408
	"EFSMountConnectivityException":     Transient, // 408
	"EFSIOException":                    Transient, // 410
	"S3FilesMountTimeoutException":      Transient, // 408
	"S3FilesMountConnectivityException": Transient, // 408
	"SnapStartTimeoutException":         Transient, // 408
	// Generic AWS codes for a server-side fault or timeout.
	"RequestTimeout":              Transient,
	"RequestTimeoutException":     Transient,
	"InternalFailure":             Transient,
	"InternalError":               Transient,
	"InternalServerError":         Transient,
	"ServiceUnavailable":          Transient,
	"ServiceUnavailableException": Transient,
	"PriorRequestNotComplete":     Transient,

	// Permanent: the request is refused.
	"InvalidParameterValueException":           Permanent, // 400
	"InvalidRequestContentException":           Permanent, // 400
	"RecursiveInvocationException":             Permanent, // 400
	"SnapStartException":                       Permanent, // 400
	"ModeNotSupportedException":                Permanent, // 400
	"ResourceNotFoundException":                Permanent, // 404
	"RequestTooLargeException":                 Permanent, // 413
	"RequestEntityTooLargeException":           Permanent, // 413, unmodelled (*smithy.GenericAPIError)
	"SerializedRequestEntityTooLargeException": Permanent, // 413
	"UnsupportedMediaTypeException":            Permanent, // 415
	// A durable execution of that name exists. Permanent for the dispatcher,
	// which does not name durable executions; one that does could read it on
	// a retry as proof that an earlier attempt landed.
	"DurableExecutionAlreadyStartedException": Permanent, // 409
	// Permanent: the function's configuration is broken until someone fixes it.
	"EFSMountFailureException":           Permanent, // 403
	"S3FilesMountFailureException":       Permanent, // 403
	"EC2AccessDeniedException":           Permanent, // 502
	"KMSAccessDeniedException":           Permanent, // 502 (any other KMS*Exception too, see classifyCode)
	"KMSDisabledException":               Permanent, // 502
	"KMSInvalidStateException":           Permanent, // 502
	"KMSNotFoundException":               Permanent, // 502
	"InvalidRuntimeException":            Permanent, // 502
	"InvalidZipFileException":            Permanent, // 502
	"InvalidSubnetIDException":           Permanent, // 502
	"InvalidSecurityGroupIDException":    Permanent, // 502
	"CodeArtifactUserFailedException":    Permanent, // 409: "update the function's code package"
	"CodeVerificationFailedException":    Permanent, // 400
	"InvalidCodeSignatureException":      Permanent, // 400
	"CodeSigningConfigNotFoundException": Permanent, // 404
	"NoPublishedVersionException":        Permanent, // 400
	// Permanent: errors of other Lambda operations, listed so that the table
	// covers every modelled error; none is retryable for an Invoke.
	"AliasLimitExceededException":                               Permanent, // 400
	"CallbackTimeoutException":                                  Permanent, // 400
	"CapacityProviderLimitExceededException":                    Permanent, // 400
	"CodeStorageExceededException":                              Permanent, // 400
	"FunctionVersionsPerCapacityProviderLimitExceededException": Permanent, // 400
	"PolicyLengthExceededException":                             Permanent, // 400
	"PublicPolicyException":                                     Permanent, // 400
	"ServiceQuotaExceededException":                             Permanent, // 402
	"PreconditionFailedException":                               Permanent, // 412
	"ProvisionedConcurrencyConfigNotFoundException":             Permanent, // 404

	// Credentials: unmodelled codes of the AWS front end (HTTP 403, some
	// 400). Missing, malformed, rejected or expired credentials, and a
	// signature outside the allowed clock skew.
	"UnrecognizedClientException":         Credentials,
	"InvalidClientTokenId":                Credentials,
	"InvalidAccessKeyId":                  Credentials,
	"InvalidSignatureException":           Credentials, // also "Signature expired": clock skew
	"SignatureDoesNotMatch":               Credentials,
	"IncompleteSignature":                 Credentials,
	"IncompleteSignatureException":        Credentials,
	"MissingAuthenticationToken":          Credentials,
	"MissingAuthenticationTokenException": Credentials,
	"AuthFailure":                         Credentials,
	"RequestExpired":                      Credentials, // clock skew
	"RequestTimeTooSkewed":                Credentials, // clock skew
	// AccessDeniedException: our principal may not invoke the function. That
	// is a fault of our deployment (IAM policy, role, SCP), not of the event,
	// and it is fixed outside the dispatcher, so we pause instead of
	// dead-lettering: a policy that is missing for an hour must not turn the
	// whole backlog into dead letters. The SDK itself counts the code among
	// its clock-skew codes, which are ours too. The cost: with IAM policies
	// scoped per function ARN, one event for a forbidden function pauses
	// everything (see the package's Caveats).
	"AccessDeniedException": Credentials,
	"AccessDenied":          Credentials,
}

// Classify returns the class of err, an error returned by the AWS SDK's
// lambda.Client.Invoke (or anything wrapping one). nil is [Success].
//
// In order:
//
//  1. nil → [Success]; an [*InvokeError] in the chain → its Class.
//  2. A failure of the SDK's credential providers → [Credentials]. This comes
//     first because such a failure may wrap an HTTP status or transport error
//     from the credential endpoint (IMDS, STS) that says nothing about Lambda.
//  3. An error code (interface{ ErrorCode() string }) → the code table; an
//     unknown code falls through to its HTTP status.
//  4. An HTTP status (interface{ HTTPStatusCode() int }, 0 meaning none):
//     429 → [Throttled]; 408 → [Transient]; other 4xx → [Permanent];
//     5xx and anything else → [Transient] (a 2xx with an error, say a body
//     that failed to decode, is retried: delivery is at least once).
//  5. context.Canceled, context.DeadlineExceeded → [Transient]. Callers check
//     their own context first: a cancelled dispatcher is not a failed event.
//  6. The SDK's "retry quota exceeded" → [Transient].
//  7. Transport errors: DNS failure, connection refused, host or network
//     unreachable or down, a dial timeout, TLS handshake failure →
//     [Unreachable]; connection reset, broken pipe, EOF, any other timeout or
//     send failure → [Transient].
//  8. Anything else → [Transient], so that an unforeseen error is retried a
//     bounded number of times and can never pause dispatch forever.
func Classify(err error) Class {
	if err == nil {
		return Success
	}
	var ie *InvokeError
	if errors.As(err, &ie) {
		return ie.Class
	}
	if isCredentialsFailure(err) {
		return Credentials
	}
	var coded interface{ ErrorCode() string }
	if errors.As(err, &coded) {
		if c, ok := classifyCode(coded.ErrorCode()); ok {
			return c
		}
	}
	if status := statusCode(err); status != 0 {
		return classifyStatus(status)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return Transient
	}
	var quota ratelimit.QuotaExceededError
	if errors.As(err, &quota) {
		return Transient
	}
	if isUnreachable(err) {
		return Unreachable
	}
	return Transient
}

// classifyCode looks code up in the table. Codes that start with
// "ExpiredToken" (ExpiredToken, ExpiredTokenException) are [Credentials], and
// any KMS*Exception is [Permanent], as the design names them by pattern.
func classifyCode(code string) (Class, bool) {
	if c, ok := codes[code]; ok {
		return c, true
	}
	switch {
	case strings.HasPrefix(code, "ExpiredToken"):
		return Credentials, true
	case strings.HasPrefix(code, "KMS") && strings.HasSuffix(code, "Exception"):
		return Permanent, true
	}
	return 0, false
}

// classifyStatus classifies an HTTP status whose error code is unknown or
// absent.
func classifyStatus(status int) Class {
	switch {
	case status == http.StatusTooManyRequests:
		return Throttled
	case status == http.StatusRequestTimeout:
		return Transient
	case status >= 400 && status < 500:
		return Permanent
	}
	return Transient
}

// statusCode returns the HTTP status in err's chain, or 0. The SDK wraps
// transport errors in a response error with status 0 too.
func statusCode(err error) int {
	var hs interface{ HTTPStatusCode() int }
	if errors.As(err, &hs) {
		return hs.HTTPStatusCode()
	}
	return 0
}

// credentialsPrefixes are how the SDK's credential failures begin.
//
// String matching, because there is no other way: the SDK reports a failing
// credentials provider with fmt.Errorf ("get identity: %w" in the client's
// GetIdentity middleware, "failed to refresh cached credentials, %w" in
// aws.CredentialsCache, "failed to retrieve credentials: %w" in the SigV4
// signer, "no EC2 IMDS role found, %w" in ec2rolecreds, ...), wrapping
// whatever the provider returned: often an untyped error, sometimes a
// transport or API error from IMDS or STS. We match a layer of the chain that
// starts with one of these, never a substring of the whole message, so
// Lambda's own messages cannot trigger it.
var credentialsPrefixes = []string{
	"get identity: ",
	"get credentials: ",
	"failed to refresh cached credentials",
	"failed to retrieve credentials",
	"no EC2 IMDS role found",
	"the AnonymousCredentials is not a valid credential provider",
	"could not select an auth scheme",
	"static credentials are empty",
}

// isCredentialsFailure reports whether a layer of err's chain is a failure to
// obtain credentials.
func isCredentialsFailure(err error) bool {
	// One look at the whole text first: most errors are not credential
	// failures, and formatting every layer of the chain is not free.
	whole := err.Error()
	if !slices.ContainsFunc(credentialsPrefixes, func(p string) bool { return strings.Contains(whole, p) }) {
		return false
	}
	return walk(err, func(e error) bool {
		msg := e.Error()
		for _, p := range credentialsPrefixes {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	})
}

// unreachableErrnos are the system errors that mean the network path to
// Lambda is missing, as opposed to a connection that broke (ECONNRESET,
// EPIPE: transient).
var unreachableErrnos = []error{
	syscall.ECONNREFUSED,
	syscall.EHOSTUNREACH,
	syscall.ENETUNREACH,
	syscall.ENETDOWN,
	syscall.EHOSTDOWN,
}

// isUnreachable reports whether err is a transport error that means Lambda
// cannot be reached at all.
func isUnreachable(err error) bool {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true
	}
	for _, errno := range unreachableErrnos {
		if errors.Is(err, errno) {
			return true
		}
	}
	if isTLSHandshakeFailure(err) {
		return true
	}
	// A dial that timed out never reached Lambda: a black-holed network.
	// net.OpError.Op is a field, not a message.
	return walk(err, func(e error) bool {
		op, ok := e.(*net.OpError)
		return ok && op.Op == "dial" && op.Timeout()
	})
}

// isTLSHandshakeFailure reports whether err is a failed TLS handshake: an
// untrusted or mismatched certificate (a captive portal, an intercepting
// proxy), a plain-HTTP answer, an alert from either side, or net/http's
// handshake timeout.
func isTLSHandshakeFailure(err error) bool {
	var (
		verifyErr     *tls.CertificateVerificationError
		recordErr     tls.RecordHeaderError
		alertErr      tls.AlertError
		unknownAuth   x509.UnknownAuthorityError
		hostnameErr   x509.HostnameError
		invalidCert   x509.CertificateInvalidError
		systemRootErr x509.SystemRootsError
	)
	switch {
	case errors.As(err, &verifyErr), errors.As(err, &recordErr), errors.As(err, &alertErr),
		errors.As(err, &unknownAuth), errors.As(err, &hostnameErr), errors.As(err, &invalidCert),
		errors.As(err, &systemRootErr):
		return true
	}
	return walk(err, func(e error) bool {
		// crypto/tls reports alerts as *net.OpError with Op "remote error"
		// (received) or "local error" (sent) around an unexported type; Op
		// is a field, not a message.
		if op, ok := e.(*net.OpError); ok && (op.Op == "remote error" || op.Op == "local error") {
			return true
		}
		// String matching, because there is no other way: net/http's
		// handshake timeout is an unexported type whose only behaviour,
		// Timeout(), it shares with every other timeout.
		t, ok := e.(interface{ Timeout() bool })
		return ok && t.Timeout() && e.Error() == "net/http: TLS handshake timeout"
	})
}

// walk calls fn on err and every error in its chain, depth first, following
// both Unwrap() error and Unwrap() []error, and reports whether fn returned
// true for any of them.
func walk(err error, fn func(error) bool) bool {
	for err != nil {
		if fn(err) {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if walk(e, fn) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}
