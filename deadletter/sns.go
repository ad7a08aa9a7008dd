package deadletter

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sns/types"
)

// snsMaxSize is the most bytes one SNS Publish may carry, 256 KiB: the
// message plus, for each message attribute, its name, data type and value.
const snsMaxSize = 256 << 10

// snsErrorMessageMax is how much of the error message Lambda puts in the
// ErrorMessage attribute: the first 1 KB.
const snsErrorMessageMax = 1024

// snsEmptyMessage is the message published for a letter whose payload is
// empty, since SNS refuses an empty message: the event Lambda hands a
// function invoked with no payload.
const snsEmptyMessage = "{}"

// SNSPublisher is the one method of *sns.Client the SNS sink calls.
type SNSPublisher interface {
	Publish(ctx context.Context, params *sns.PublishInput, optFns ...func(*sns.Options)) (*sns.PublishOutput, error)
}

// SNS is a [Sink] that publishes each letter to an Amazon SNS topic in the
// form Lambda's own dead-letter queue for asynchronous invocations uses, so
// that a subscriber written for Lambda's reads ours unchanged:
//
//   - The message is the event's payload, unchanged; or, with
//     [SNSFullRecord], the letter's record ([Letter.MarshalRecord]). SNS
//     refuses an empty message, so an empty payload is published as "{}",
//     the event Lambda gives a function invoked with no payload. SNS
//     messages are text: for a payload that is not valid UTF-8, Put returns
//     an error wrapping [ErrUnsupportedPayload] and publishes nothing.
//   - The message attributes are those Lambda sets: "RequestID" (String),
//     Lambda's request id for the last attempt, or the letter's ID when
//     there is none, as in [Letter.Record]; "ErrorCode" (Number), the HTTP
//     status of the last attempt; and "ErrorMessage" (String), the first
//     1 KB (1,024 bytes, whole characters) of its error message. SNS refuses
//     an empty attribute value, so ErrorCode is left out when the status is
//     0 (no attempt, or a transport error) and ErrorMessage when the message
//     is empty.
//   - SNS takes at most 256 KiB, counting the message and each attribute's
//     name, data type and value. For a larger letter Put returns an error
//     wrapping [ErrTooLarge] and publishes nothing.
//
// SNS delivers a message published twice twice: as with every [Sink], a
// subscriber may see a letter more than once, and can tell a repeat by its
// RequestID. FIFO topics, which need a message group id, are not supported.
type SNS struct {
	client     SNSPublisher
	topicArn   string
	fullRecord bool
}

// SNSOption configures an [SNS] sink.
type SNSOption func(*SNS)

// SNSFullRecord makes the sink publish the letter's record,
// [Letter.MarshalRecord], as the message, instead of the event's payload.
// The message attributes are the same.
func SNSFullRecord() SNSOption {
	return func(s *SNS) { s.fullRecord = true }
}

// NewSNS returns a sink that publishes to the standard topic topicArn with
// client, typically an *sns.Client. The client's own retries add to the
// dispatcher's, since a failed Put is tried again later anyway.
func NewSNS(client SNSPublisher, topicArn string, opts ...SNSOption) *SNS {
	s := &SNS{client: client, topicArn: topicArn}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Put publishes l to the topic. It returns an error wrapping [ErrTooLarge],
// and publishes nothing, when the message and its attributes would exceed
// SNS's 256 KiB; an error wrapping [ErrUnsupportedPayload], and publishes
// nothing, when the message is not valid UTF-8; and the client's error, wrapped, when Publish fails, so that
// errors.As finds the SDK's typed errors (such as *types.NotFoundException).
// A letter put twice is published twice.
func (s *SNS) Put(ctx context.Context, l Letter) error {
	msg, err := s.message(l)
	if err != nil {
		return err
	}
	attrs := snsAttributes(l)
	if size := snsSize(msg, attrs); size > snsMaxSize {
		return fmt.Errorf("deadletter: SNS message for letter %s is %d bytes, over SNS's %d: %w", l.ID, size, snsMaxSize, ErrTooLarge)
	}
	_, err = s.client.Publish(ctx, &sns.PublishInput{
		TopicArn:          aws.String(s.topicArn),
		Message:           aws.String(msg),
		MessageAttributes: attrs,
	})
	if err != nil {
		return fmt.Errorf("deadletter: SNS publish of letter %s: %w", l.ID, err)
	}
	return nil
}

// message returns what Put publishes for l.
func (s *SNS) message(l Letter) (string, error) {
	if s.fullRecord {
		rec, err := l.MarshalRecord()
		if err != nil {
			return "", fmt.Errorf("deadletter: SNS message for letter %s: %w", l.ID, err)
		}
		if !utf8.Valid(rec) { // a JSON payload may hold invalid UTF-8 in its strings
			return "", fmt.Errorf("deadletter: SNS message for letter %s: the record is not valid UTF-8: %w", l.ID, ErrUnsupportedPayload)
		}
		return string(rec), nil
	}
	if len(l.Payload) == 0 {
		return snsEmptyMessage, nil
	}
	if !utf8.Valid(l.Payload) {
		return "", fmt.Errorf("deadletter: SNS message for letter %s: the payload is not valid UTF-8: %w", l.ID, ErrUnsupportedPayload)
	}
	return string(l.Payload), nil
}

// snsAttributes returns the message attributes of l, those Lambda's
// dead-letter queue sets: RequestID (String), ErrorCode (Number, the HTTP
// status) and ErrorMessage (String, the first 1 KB). SNS refuses an empty
// attribute value, so ErrorCode is left out when the status is 0 and
// ErrorMessage when the message is empty; RequestID is the letter's ID when
// Lambda gave none, as in [Letter.Record].
func snsAttributes(l Letter) map[string]types.MessageAttributeValue {
	reqID := l.LastError.RequestID
	if reqID == "" {
		reqID = l.ID
	}
	attrs := make(map[string]types.MessageAttributeValue, 3)
	if reqID = strings.ToValidUTF8(reqID, "\uFFFD"); reqID != "" {
		attrs["RequestID"] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(reqID)}
	}
	if code := l.LastError.StatusCode; code != 0 {
		attrs["ErrorCode"] = types.MessageAttributeValue{DataType: aws.String("Number"), StringValue: aws.String(strconv.Itoa(code))}
	}
	if m := truncateUTF8(strings.ToValidUTF8(l.LastError.Message, "\uFFFD"), snsErrorMessageMax); m != "" {
		attrs["ErrorMessage"] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(m)}
	}
	if len(attrs) == 0 {
		return nil
	}
	return attrs
}

// snsSize returns the bytes a Publish of msg with attrs counts toward SNS's
// limit.
func snsSize(msg string, attrs map[string]types.MessageAttributeValue) int {
	n := len(msg)
	for name, a := range attrs {
		n += len(name) + len(aws.ToString(a.DataType)) + len(aws.ToString(a.StringValue)) + len(a.BinaryValue)
	}
	return n
}

// truncateUTF8 returns the longest prefix of the valid UTF-8 string s that
// is at most n bytes and does not split a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

var _ Sink = (*SNS)(nil)
