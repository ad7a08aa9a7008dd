// Package lambdaname checks function names and qualifiers as Lambda's
// Invoke takes them: loosely enough never to refuse what Invoke accepts,
// strictly enough to refuse at Enqueue what Lambda would refuse on every
// attempt. Each check returns the reason a value is refused, "" when it is
// not; the dispatcher turns a reason into its ValidationError.
package lambdaname

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Bounds from Lambda's Invoke API.
const (
	// MaxFunctionLen bounds FunctionName, in any form.
	MaxFunctionLen = 170
	// MaxQualifierLen bounds a version or alias.
	MaxQualifierLen = 128
	maxNameLen      = 64 // the function's own name
	accountIDLen    = 12
	latest          = "$LATEST"
)

// Function accepts the forms Invoke documents for FunctionName:
//
//	name
//	name:qualifier
//	account:function:name[:qualifier]                              (partial ARN)
//	arn:partition:lambda:region:account:function:name[:qualifier]  (full ARN)
//
// It returns the qualifier the string carries, if any, or the reason it is
// refused.
func Function(fn string) (qualifier, reason string) {
	if fn == "" {
		return "", "function is required"
	}
	if len(fn) > MaxFunctionLen {
		if strings.IndexByte(fn, ':') < 0 {
			return "", checkName(fn) // a bare name has the tighter limit
		}
		return "", fmt.Sprintf("function is %d characters, limit %d", len(fn), MaxFunctionLen)
	}
	first, rest, ok := strings.Cut(fn, ":")
	if !ok {
		return "", checkName(fn)
	}
	resource, tail, ok := strings.Cut(rest, ":")
	if !ok {
		return checkNameQualifier(fn) // even "arn:x": a function may be named "arn"
	}
	// Three or more parts: only an ARN has them.
	if first == "arn" {
		return checkARN(rest)
	}
	if !allDigits(first) {
		return "", fmt.Sprintf("function %q has too many ':' parts for name:qualifier; a partial ARN is account:function:name", clip(fn))
	}
	if reason := checkAccount(first); reason != "" {
		return "", reason
	}
	if resource != "function" {
		return "", fmt.Sprintf("partial ARN has %q after the account id, want \"function\"", clip(resource))
	}
	return checkNameQualifier(tail)
}

// checkARN checks what follows "arn:" in a full function ARN.
func checkARN(s string) (qualifier, reason string) {
	const tooFew = "ARN has too few parts, want arn:partition:lambda:region:account:function:name"
	partition, s, ok := strings.Cut(s, ":")
	if !ok {
		return "", tooFew
	}
	if reason := checkPartition(partition); reason != "" {
		return "", reason
	}
	service, s, ok := strings.Cut(s, ":")
	if !ok {
		return "", tooFew
	}
	if service != "lambda" {
		return "", fmt.Sprintf("ARN service is %q, want \"lambda\"", clip(service))
	}
	region, s, ok := strings.Cut(s, ":")
	if !ok {
		return "", tooFew
	}
	if reason := checkRegion(region); reason != "" {
		return "", reason
	}
	account, s, ok := strings.Cut(s, ":")
	if !ok {
		return "", tooFew
	}
	if reason := checkAccount(account); reason != "" {
		return "", reason
	}
	resource, s, ok := strings.Cut(s, ":")
	if !ok {
		return "", tooFew
	}
	if resource != "function" {
		return "", fmt.Sprintf("ARN resource type is %q, want \"function\"", clip(resource))
	}
	return checkNameQualifier(s)
}

// checkPartition accepts aws[a-zA-Z-]*: aws, aws-cn, aws-us-gov, aws-iso-b...
func checkPartition(p string) string {
	rest, ok := strings.CutPrefix(p, "aws")
	if !ok {
		return fmt.Sprintf("ARN partition %q must start with \"aws\"", clip(p))
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; !isLetter(c) && c != '-' {
			return fmt.Sprintf("ARN partition %q has a character Lambda does not accept: %s", clip(p), charAt(rest, i))
		}
	}
	return ""
}

// checkRegion accepts, loosely, [a-z]{2,}(-[a-z]+)+-[0-9]+: us-east-1,
// us-gov-west-1, cn-north-1, us-isob-east-1, eu-isoe-west-1, eusc-de-east-1.
func checkRegion(r string) string {
	bad := func() string {
		return fmt.Sprintf("ARN region %q is not a region such as us-east-1", clip(r))
	}
	head, rest, ok := strings.Cut(r, "-")
	if !ok || len(head) < 2 || !allLower(head) {
		return bad()
	}
	i := strings.LastIndexByte(rest, '-')
	if i < 0 || !allDigits(rest[i+1:]) {
		return bad()
	}
	for middle := rest[:i]; ; {
		part, more, ok := strings.Cut(middle, "-")
		if !allLower(part) {
			return bad()
		}
		if !ok {
			return ""
		}
		middle = more
	}
}

func checkAccount(a string) string {
	if len(a) != accountIDLen || !allDigits(a) {
		return fmt.Sprintf("account id %q must be 12 digits", clip(a))
	}
	return ""
}

// checkNameQualifier checks name[:qualifier] and returns the qualifier.
func checkNameQualifier(s string) (qualifier, reason string) {
	name, q, hasQ := strings.Cut(s, ":")
	if reason := checkName(name); reason != "" {
		return "", reason
	}
	if !hasQ {
		return "", ""
	}
	if q == "" {
		return "", "qualifier after ':' is empty"
	}
	if q == latest {
		return q, ""
	}
	if reason := checkQualifierChars(q, false); reason != "" {
		return "", reason
	}
	return q, ""
}

// checkName accepts 1 to 64 letters, digits, '-', '_' and '.' (Invoke's
// pattern allows '.' although CreateFunction does not).
func checkName(name string) string {
	if name == "" {
		return "function name is empty"
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !isLetter(c) && !isDigit(c) && c != '-' && c != '_' && c != '.' {
			return fmt.Sprintf("name %q has a character Lambda does not accept: %s", clip(name), charAt(name, i))
		}
	}
	if len(name) > maxNameLen {
		return fmt.Sprintf("name is %d characters, limit %d", len(name), maxNameLen)
	}
	return ""
}

// checkQualifierChars accepts 1 to 128 letters, digits, '-', '_', and '$'
// when dollar is set (the Qualifier field's pattern is [a-zA-Z0-9$_-]+).
func checkQualifierChars(q string, dollar bool) string {
	for i := 0; i < len(q); i++ {
		c := q[i]
		if !isLetter(c) && !isDigit(c) && c != '-' && c != '_' && (c != '$' || !dollar) {
			return fmt.Sprintf("qualifier %q has a character Lambda does not accept: %s", clip(q), charAt(q, i))
		}
	}
	if len(q) > MaxQualifierLen {
		return fmt.Sprintf("qualifier is %d characters, limit %d", len(q), MaxQualifierLen)
	}
	return ""
}

// Qualifier checks an event's Qualifier field against its pattern and
// against the qualifier carried by Function, if any.
func Qualifier(q, fnQualifier string) string {
	if q == "" {
		return ""
	}
	if reason := checkQualifierChars(q, true); reason != "" {
		return reason
	}
	if fnQualifier != "" && q != fnQualifier {
		return fmt.Sprintf("qualifier %q does not match %q in function", q, fnQualifier)
	}
	return ""
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool  { return '0' <= c && c <= '9' }

// allDigits reports whether s is one or more ASCII digits.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// allLower reports whether s is one or more ASCII lowercase letters.
func allLower(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// charAt quotes the character starting at byte i of s for a reason, or
// names the byte when it does not begin valid UTF-8.
func charAt(s string, i int) string {
	r, size := utf8.DecodeRuneInString(s[i:])
	if r == utf8.RuneError && size <= 1 {
		return fmt.Sprintf("byte 0x%02x", s[i])
	}
	return fmt.Sprintf("%q", r)
}

// clip shortens s for quoting in a reason.
func clip(s string) string {
	const n = 80
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
