package retry

import "regexp"

// Redacted stands in for a secret that [Redact] removed.
const Redacted = "[REDACTED]"

// AWS quotes the request it received in some errors: an
// InvalidSignatureException carries the whole canonical request, security
// token header included, and a presigned URL in a transport error carries
// its query string. Such text reaches log lines and dead letters, which are
// read by more people, and kept longer, than the credentials are meant to
// be. The patterns are loose on purpose: removing a little too much from an
// error message costs nothing, leaving a token in it costs a rotation.
var (
	// An Authorization header holds the access key id and a signature over
	// the whole line, so everything after the name goes, to the line's end.
	authorizationRE = regexp.MustCompile(`(?i)(authorization["']?[ \t]*[:=][ \t]*["']?)[^\r\n"\\]*`)
	// Header (name:value) and query (name=value) forms of the token, the
	// signature and the credential scope, which starts with the key id. A
	// name may end a longer one (X-Amz-Signature, X-Amz-Credential).
	secretFieldRE = regexp.MustCompile(`(?i)(security-token|signature|credential)(["']?[ \t]*[:=][ \t]*["']?)[^\s,&;"'\\]+`)
	// Access key ids (long-term AKIA, temporary ASIA) wherever they stand.
	accessKeyRE = regexp.MustCompile(`\b(?:AKIA|ASIA)[A-Z0-9]{12,}`)
)

// Redact returns s with credentials that AWS error messages can quote
// replaced by [Redacted]: the values of x-amz-security-token (as a header
// or a query parameter), Authorization headers, signatures
// (Signature=, X-Amz-Signature) and credential scopes (Credential=,
// X-Amz-Credential), and AKIA/ASIA access key ids. The names are kept, so
// the message still says what was wrong. [FromError] applies it to every
// Message, and [InvokeError.Error] to what it prints.
func Redact(s string) string {
	s = authorizationRE.ReplaceAllString(s, "${1}"+Redacted)
	s = secretFieldRE.ReplaceAllString(s, "${1}${2}"+Redacted)
	return accessKeyRE.ReplaceAllString(s, Redacted)
}
