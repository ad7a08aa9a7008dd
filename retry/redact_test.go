package retry_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher/retry"
)

// Secrets shaped like the real ones, so that a pattern tuned to the shape
// is exercised.
const (
	testToken     = "IQoJb3JpZ2luX2VjEHAaCXVzLWVhc3QtMSJHMEUCIQDExampleToken+abc/def=="
	testKeyID     = "ASIAIOSFODNN7EXAMPLE"
	testSignature = "fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024"
)

// invalidSignatureMessage is what Lambda answers a request signed with a
// wrong secret: it quotes the canonical request, security token included.
const invalidSignatureMessage = "The request signature we calculated does not match the signature you provided. " +
	"Check your AWS Secret Access Key and signing method. Consult the service documentation for details.\n\n" +
	"The Canonical String for this request should have been\n'POST\n/2015-03-31/functions/fn/invocations\n\n" +
	"content-type:application/json\nhost:lambda.us-east-1.amazonaws.com\nx-amz-date:20260101T000000Z\n" +
	"x-amz-invocation-type:Event\nx-amz-security-token:" + testToken + "\n\n" +
	"content-type;host;x-amz-date;x-amz-invocation-type;x-amz-security-token\n" +
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'\n\n" +
	"The String-to-Sign should have been\n'AWS4-HMAC-SHA256\n20260101T000000Z\n20260101/us-east-1/lambda/aws4_request\n" +
	"9d2c2a1e7a0e0b5f3f1c0b7a9e1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d'\n"

func TestRedact(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		keep     []string // text that must survive
	}{
		{"CanonicalRequest", invalidSignatureMessage, []string{"x-amz-security-token:" + retry.Redacted, "signature you provided", "host:lambda.us-east-1.amazonaws.com"}},
		{"HeaderWithSpace", "X-Amz-Security-Token: " + testToken + "\r\nHost: x", []string{"X-Amz-Security-Token: " + retry.Redacted, "Host: x"}},
		{"QueryString", "GET /?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=" + testKeyID + "%2F20260101%2Fus-east-1%2Flambda%2Faws4_request&X-Amz-Security-Token=" + url.QueryEscape(testToken) + "&X-Amz-Signature=" + testSignature + "&X-Amz-Date=20260101T000000Z",
			[]string{"X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Date=20260101T000000Z", "X-Amz-Signature=" + retry.Redacted}},
		{"Authorization", "Authorization: AWS4-HMAC-SHA256 Credential=" + testKeyID + "/20260101/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + testSignature + "\nnext line",
			[]string{"Authorization: " + retry.Redacted, "next line"}},
		{"CredentialAndSignature", "Credential=" + testKeyID + "/20260101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=" + testSignature,
			[]string{"SignedHeaders=host", "Signature=" + retry.Redacted}},
		{"SignatureHeader", "x-amz-signature:" + testSignature, []string{"x-amz-signature:" + retry.Redacted}},
		{"JSON", `{"X-Amz-Security-Token":"` + testToken + `","Authorization":"AWS4-HMAC-SHA256 Signature=` + testSignature + `"}`, []string{`"X-Amz-Security-Token":"` + retry.Redacted + `"`}},
		{"BareKeyID", "The security token included in the request is invalid: key " + testKeyID + " unknown", []string{"The security token included in the request is invalid: key " + retry.Redacted + " unknown"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out := retry.Redact(tc.in)
			for _, secret := range []string{testToken, url.QueryEscape(testToken), testKeyID, testSignature} {
				require.NotContains(t, out, secret)
			}
			for _, k := range tc.keep {
				require.Contains(t, out, k)
			}
			require.Equal(t, out, retry.Redact(out), "redacting twice changes nothing")
		})
	}
	// Plain messages pass unchanged.
	for _, s := range []string{
		"Rate Exceeded.",
		"Signature expired: 20260101T000000Z is now earlier than 20260101T000500Z",
		"failed to refresh cached credentials, no EC2 IMDS role found",
		"Function not found: arn:aws:lambda:us-east-1:123456789012:function:fn",
		"",
	} {
		require.Equal(t, s, retry.Redact(s))
	}
}

// TestInvokeErrorRedacts: FromError keeps no secret in Message, and Error
// prints none even for an InvokeError built by hand.
func TestInvokeErrorRedacts(t *testing.T) {
	t.Parallel()
	orig := apiError(403, &smithy.GenericAPIError{Code: "InvalidSignatureException", Message: invalidSignatureMessage})
	ie := retry.FromError(orig)
	require.Equal(t, retry.Credentials, ie.Class)
	require.NotContains(t, ie.Message, testToken)
	require.Contains(t, ie.Message, "x-amz-security-token:"+retry.Redacted)
	require.NotContains(t, ie.Error(), testToken)

	transport := retry.FromError(transportError(errors.New("Post \"https://x/?X-Amz-Security-Token=" + testToken + "\": EOF")))
	require.NotContains(t, transport.Message, testToken)
	require.NotContains(t, transport.Error(), testToken)

	for _, ie := range []*retry.InvokeError{
		{Class: retry.Credentials, Code: "InvalidSignatureException", StatusCode: 403, Message: invalidSignatureMessage},
		{Class: retry.Unreachable, Err: errors.New("Authorization: AWS4-HMAC-SHA256 Credential=" + testKeyID + "/x, Signature=" + testSignature)},
	} {
		s := ie.Error()
		require.NotContains(t, s, testToken)
		require.NotContains(t, s, testKeyID)
		require.NotContains(t, s, testSignature)
		require.True(t, strings.HasPrefix(s, "retry: "))
	}
}

// FuzzRedact: Redact never panics, and a secret standing as the value of a
// header or a query parameter of a sensitive name never survives it,
// whatever surrounds it.
func FuzzRedact(f *testing.F) {
	f.Add("canonical request\n", uint8(0), uint8(0), testToken, "\nhost:x")
	f.Add("GET /?a=b&", uint8(1), uint8(1), url.QueryEscape(testToken), "&X-Amz-Date=1")
	f.Add("", uint8(2), uint8(2), "AWS4-HMAC-SHA256 Credential="+testKeyID+"/x, Signature="+testSignature, "\n")
	f.Add("'", uint8(3), uint8(3), testSignature, "'")
	f.Add(`{"a":1,`, uint8(5), uint8(4), testKeyID+"/20260101/us-east-1/lambda/aws4_request", `"}`)
	f.Add("x", uint8(4), uint8(0), "abcdefgh", "")
	names := []string{"x-amz-security-token", "X-Amz-Security-Token", "Authorization", "Signature", "x-amz-signature", "Credential", "X-Amz-Credential"}
	seps := []string{":", "=", ": ", " = ", `":"`}
	f.Fuzz(func(t *testing.T, prefix string, name, sep uint8, secret, suffix string) {
		in := prefix + names[int(name)%len(names)] + seps[int(sep)%len(seps)] + secret + "\n" + suffix
		out := retry.Redact(in) // must not panic, whatever the input
		if len(secret) < 8 || strings.ContainsAny(secret, " \t\r\n,&;\"'\\") {
			return // not shaped like a credential value
		}
		if strings.Contains(prefix, secret) || strings.Contains(suffix, secret) || strings.Contains(retry.Redacted, secret) {
			return // the secret also stands where no name announces it
		}
		if strings.Contains(out, secret) {
			t.Fatalf("secret %q survived in %q", secret, out)
		}
	})
}
