package deadletter

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// SQSSender is the one method of *sqs.Client the SQS sink calls.
type SQSSender interface {
	SendMessage(ctx context.Context, params *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
}

// ErrTooLarge is returned, wrapped with the letter's id and size, by a sink
// whose service cannot take the letter: by [SQS] and [SNS] when the message
// with its attributes is over the service's maximum size. Nothing is sent
// and nothing is truncated; such a letter can never be delivered to that
// sink, so a fallback chain should keep it elsewhere.
var ErrTooLarge = errors.New("deadletter: letter too large for the sink")

// ErrUnsupportedPayload is returned, wrapped with the letter's id, by
// [SQS.Put] when the message body would hold characters SQS refuses:
// invalid UTF-8, control characters other than tab, line feed and carriage
// return, or U+FFFE and U+FFFF. Nothing is sent; as with [ErrTooLarge],
// such a letter can never be delivered to SQS.
var ErrUnsupportedPayload = errors.New("deadletter: payload holds characters the sink does not accept")

// The limits the SQS sink keeps to.
const (
	// SQSMaxMessageSize is the default largest message the SQS sink sends,
	// in bytes, counted as SQS counts it: the body and, for each
	// attribute, its name, data type and value. It is SQS's limit of
	// 256 KiB; SQS raised it to 1 MiB in 2025, but a queue's
	// MaximumMessageSize may be lower, and queues created earlier keep
	// 256 KiB. See [WithSQSMaxMessageSize].
	SQSMaxMessageSize = 262_144
	// SQSMaxErrorMessage is the most bytes of the last error's message
	// kept in the ErrorMessage attribute, as Lambda truncates it to 1 KB.
	SQSMaxErrorMessage = 1024
)

// The message attributes the SQS sink sets, as Lambda sets them on the
// messages of a function's dead-letter queue.
const (
	SQSAttrRequestID    = "RequestID"
	SQSAttrErrorCode    = "ErrorCode"
	SQSAttrErrorMessage = "ErrorMessage"
)

// SQS is a [Sink] that sends each letter to an Amazon SQS queue as Lambda
// sends a failed asynchronous event to a function's dead-letter queue, so
// a consumer written for Lambda's DLQ reads ours unchanged:
//
//   - The body is the event's payload, unchanged. An empty payload is sent
//     as "{}", since SQS refuses an empty body and a function invoked with
//     an empty payload receives {}. [SQSFullRecord] sends the letter's
//     Lambda destination record ([Letter.MarshalRecord]) instead.
//   - The attribute RequestID (String) is LastError.RequestID, Lambda's id
//     for the last attempt, or the letter's ID when there is none.
//   - The attribute ErrorCode (Number) is LastError.StatusCode, the HTTP
//     status of the last attempt, as Lambda's is a 3-digit HTTP status. It
//     is left out when the status is 0 (no attempt was made, or the
//     transport failed), rather than filled with a status never received.
//   - The attribute ErrorMessage (String) is LastError.Message, truncated
//     to [SQSMaxErrorMessage] bytes at a character boundary, with the
//     characters SQS refuses replaced by U+FFFD.
//
// An attribute whose value would be empty is left out, as SQS refuses empty
// values. The same attributes go with [SQSFullRecord].
//
// Put sends one SendMessage per letter. A letter that, with its
// attributes, is larger than the maximum message size is not truncated:
// Put returns an error wrapping [ErrTooLarge] and sends nothing. A payload
// SQS cannot carry gives [ErrUnsupportedPayload]. Any error of SQS or of
// the transport is returned wrapped, so errors.As finds the SDK's typed
// errors (such as *types.QueueDoesNotExist). SQS keeps no memory of what it
// was sent, so a letter put twice is sent twice; consumers should key on
// RequestID, or on the record, to drop repeats.
//
// The queue must be a standard queue: the sink sets no message group id,
// which a FIFO queue requires. An SQS is safe for concurrent use.
type SQS struct {
	client     SQSSender
	queueURL   string
	fullRecord bool
	maxSize    int
}

// SQSOption configures an [SQS] sink.
type SQSOption func(*SQS)

// SQSFullRecord makes the SQS sink send, as the message body, the letter's
// Lambda destination record (the JSON of [Letter.Record]) instead of the
// payload, so that the message carries the reason, the attempts and the
// last error as well as the payload.
func SQSFullRecord() SQSOption { return func(s *SQS) { s.fullRecord = true } }

// WithSQSMaxMessageSize sets the largest message, in bytes, the SQS sink
// sends (default [SQSMaxMessageSize]): set it to the queue's
// MaximumMessageSize, which may be up to 1 MiB. n < 1 means the default.
func WithSQSMaxMessageSize(n int) SQSOption {
	return func(s *SQS) {
		if n >= 1 {
			s.maxSize = n
		}
	}
}

// NewSQS returns a sink that sends letters to the queue at queueURL through
// client, usually an *sqs.Client. Turn the client's retries off
// (RetryMaxAttempts = 1) when the dispatcher's own retries of a failing
// sink suffice.
func NewSQS(client SQSSender, queueURL string, opts ...SQSOption) *SQS {
	s := &SQS{client: client, queueURL: queueURL, maxSize: SQSMaxMessageSize}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Put sends l to the queue and returns nil once SQS has accepted it.
func (s *SQS) Put(ctx context.Context, l Letter) error {
	body, err := s.body(l)
	if err != nil {
		return err
	}
	attrs := sqsAttributes(l)
	if size := sqsMessageSize(body, attrs); size > s.maxSize {
		return fmt.Errorf("deadletter: sqs: letter %s is %d bytes with its attributes, over the limit of %d: %w", l.ID, size, s.maxSize, ErrTooLarge)
	}
	_, err = s.client.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:          &s.queueURL,
		MessageBody:       &body,
		MessageAttributes: attrs,
	})
	if err != nil {
		return fmt.Errorf("deadletter: sqs: send letter %s: %w", l.ID, err)
	}
	return nil
}

// body returns the message body for l.
func (s *SQS) body(l Letter) (string, error) {
	var body string
	if s.fullRecord {
		b, err := l.MarshalRecord()
		if err != nil {
			return "", fmt.Errorf("deadletter: sqs: letter %s: %w", l.ID, err)
		}
		body = string(b)
	} else {
		body = string(l.Payload)
	}
	if body == "" {
		body = "{}"
	}
	if !sqsAllowed(body) {
		return "", fmt.Errorf("deadletter: sqs: letter %s: %w", l.ID, ErrUnsupportedPayload)
	}
	return body, nil
}

// sqsAttributes returns the message attributes Lambda sets on a DLQ
// message, as [SQS] documents them.
func sqsAttributes(l Letter) map[string]types.MessageAttributeValue {
	attrs := make(map[string]types.MessageAttributeValue, 3)
	str := func(name, dataType, v string) {
		if v != "" {
			attrs[name] = types.MessageAttributeValue{DataType: &dataType, StringValue: &v}
		}
	}
	id := l.LastError.RequestID
	if id == "" {
		id = l.ID
	}
	str(SQSAttrRequestID, "String", sqsSanitize(id, SQSMaxErrorMessage))
	if c := l.LastError.StatusCode; c != 0 {
		str(SQSAttrErrorCode, "Number", strconv.Itoa(c))
	}
	str(SQSAttrErrorMessage, "String", sqsSanitize(l.LastError.Message, SQSMaxErrorMessage))
	if len(attrs) == 0 {
		return nil
	}
	return attrs
}

// sqsMessageSize returns the size SQS counts for a message: the body and,
// for each attribute, its name, data type and value.
func sqsMessageSize(body string, attrs map[string]types.MessageAttributeValue) int {
	n := len(body)
	for name, a := range attrs {
		n += len(name)
		if a.DataType != nil {
			n += len(*a.DataType)
		}
		if a.StringValue != nil {
			n += len(*a.StringValue)
		}
		n += len(a.BinaryValue)
	}
	return n
}

// sqsAllowedRune reports whether SQS accepts r in a message: #x9 | #xA |
// #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF.
func sqsAllowedRune(r rune) bool {
	switch {
	case r == '\t', r == '\n', r == '\r':
		return true
	case r >= 0x20 && r <= 0xD7FF, r >= 0xE000 && r <= 0xFFFD, r >= 0x10000 && r <= 0x10FFFF:
		return true
	}
	return false
}

// sqsAllowed reports whether s is valid UTF-8 holding only characters SQS
// accepts.
func sqsAllowed(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !sqsAllowedRune(r) {
			return false
		}
	}
	return true
}

// sqsSanitize returns s as SQS accepts it, invalid UTF-8 and refused
// characters replaced by U+FFFD, cut to at most max bytes at a character
// boundary.
func sqsSanitize(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if sqsAllowedRune(r) {
			return r
		}
		return utf8.RuneError
	}, strings.ToValidUTF8(s, string(utf8.RuneError)))
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

var _ Sink = (*SQS)(nil)
