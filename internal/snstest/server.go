// Package snstest provides an HTTP server on 127.0.0.1 that answers the
// Amazon SNS Publish action as SNS does, in the AWS Query protocol, so that
// tests can point the real SDK client (service/sns) at it, as they would
// use net/http/httptest:
//
//	srv := snstest.NewServer()
//	defer srv.Close()
//	arn := srv.CreateTopic("dead-letters")
//	client := sns.New(sns.Options{BaseEndpoint: aws.String(srv.URL()), ...})
//
// The server understands Publish only; any other action is answered with
// SNS's InvalidAction error. It checks what SNS checks and a test is likely
// to meet: the topic must exist (404 NotFound), the message must not be
// empty and, with its attributes, must fit in [MaxMessageSize] bytes (400
// InvalidParameter), and every message attribute needs a data type of
// String, Number or Binary, a non-empty value and, for a Number, a number
// (400 ParameterValueInvalid). A request must carry a SigV4 Authorization
// header, but the signature is not checked. [Server.Fail] and
// [Server.Offline] inject faults.
package snstest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// MaxMessageSize is the most bytes a Publish may carry, 256 KiB: the
// message plus, for each message attribute, its name, data type and value.
const MaxMessageSize = 256 << 10

// topicArnPrefix is the ARN of a topic in the server, less its name.
const topicArnPrefix = "arn:aws:sns:us-east-1:123456789012:"

// Message is a message published to a topic of the server.
type Message struct {
	// Message is the message as published.
	Message string
	// Attributes are the message attributes by name, nil when there are
	// none.
	Attributes map[string]MessageAttribute
	// MessageID is the id the server answered Publish with.
	MessageID string
}

// MessageAttribute is a message attribute as published.
type MessageAttribute struct {
	// DataType is "String", "Number" or "Binary", optionally followed by a
	// custom type (".json").
	DataType string
	// StringValue is the value of a String or Number attribute.
	StringValue string
	// BinaryValue is the value of a Binary attribute, decoded from base64.
	BinaryValue []byte
}

// Server is a fake SNS endpoint. Its methods may be called from several
// goroutines at once.
type Server struct {
	srv *httptest.Server

	mu      sync.Mutex
	topics  map[string][]Message // by topic ARN
	failN   int                  // requests still to fail
	failSt  int
	failErr string
}

// NewServer starts a server on 127.0.0.1 with no topics. Close it when
// done.
func NewServer() *Server {
	s := &Server{topics: make(map[string][]Message)}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	return s
}

// URL returns the server's base URL ("http://127.0.0.1:port"), for the
// client's BaseEndpoint.
func (s *Server) URL() string { return s.srv.URL }

// Close shuts the server down and waits for the requests in flight. It may
// be called more than once, and after [Server.Offline].
func (s *Server) Close() { s.srv.Close() }

// Offline closes the listener, as Close does, so that from now on a client
// finds the connection refused, as when the network is down. The recorded
// messages can still be read.
func (s *Server) Offline() { s.srv.Close() }

// CreateTopic creates the standard topic name, if it does not exist yet,
// and returns its ARN, "arn:aws:sns:us-east-1:123456789012:" + name.
func (s *Server) CreateTopic(name string) (topicArn string) {
	topicArn = topicArnPrefix + name
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.topics[topicArn]; !ok {
		s.topics[topicArn] = []Message{}
	}
	return topicArn
}

// Messages returns a copy of the messages published to topicArn, oldest
// first; nil for an unknown topic.
func (s *Server) Messages(topicArn string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	msgs, ok := s.topics[topicArn]
	if !ok {
		return nil
	}
	out := make([]Message, len(msgs))
	for i, m := range msgs {
		out[i] = m
		if m.Attributes != nil {
			out[i].Attributes = make(map[string]MessageAttribute, len(m.Attributes))
			for k, a := range m.Attributes {
				a.BinaryValue = append([]byte(nil), a.BinaryValue...)
				out[i].Attributes[k] = a
			}
		}
	}
	return out
}

// Fail makes the server answer the next n requests, whatever they are,
// with the HTTP status and the SNS error code given (for instance 500 and
// "InternalError", or 403 and "AuthorizationError"), and publish nothing
// for them. A later call replaces an earlier one; n <= 0 stops failing.
func (s *Server) Fail(n, status int, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN, s.failSt, s.failErr = max(n, 0), status, code
}

// apiError is an error answer.
type apiError struct {
	status  int
	code    string
	message string
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := newUUID()
	w.Header().Set("x-amzn-RequestId", reqID)
	if e := s.injected(); e != nil {
		writeError(w, reqID, e)
		return
	}
	if r.Method != http.MethodPost {
		writeError(w, reqID, &apiError{http.StatusMethodNotAllowed, "InvalidAction", "Only POST is served"})
		return
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		writeError(w, reqID, &apiError{http.StatusForbidden, "MissingAuthenticationToken", "Request is missing Authentication Token"})
		return
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, reqID, &apiError{http.StatusBadRequest, "MalformedQueryString", err.Error()})
		return
	}
	switch action := r.PostForm.Get("Action"); action {
	case "Publish":
		id, e := s.publish(r.PostForm)
		if e != nil {
			writeError(w, reqID, e)
			return
		}
		writeXML(w, http.StatusOK, publishResponse{
			XMLNS:     xmlns,
			MessageID: id,
			RequestID: reqID,
		})
	default:
		writeError(w, reqID, &apiError{http.StatusBadRequest, "InvalidAction",
			fmt.Sprintf("The action %s is not valid for this web service.", action)})
	}
}

// injected returns the error Fail asked for, if a request is still to fail.
func (s *Server) injected() *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failN == 0 {
		return nil
	}
	s.failN--
	return &apiError{s.failSt, s.failErr, "snstest: injected failure"}
}

// publish checks a Publish request and records its message.
func (s *Server) publish(form map[string][]string) (messageID string, _ *apiError) {
	get := func(k string) string {
		if v := form[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	topicArn := get("TopicArn")
	if topicArn == "" {
		topicArn = get("TargetArn")
	}
	if topicArn == "" {
		return "", &apiError{http.StatusBadRequest, "InvalidParameter",
			"Invalid parameter: TopicArn or TargetArn Reason: no value for required parameter"}
	}
	msg := get("Message")
	if msg == "" {
		return "", &apiError{http.StatusBadRequest, "InvalidParameter", "Invalid parameter: Empty message"}
	}
	if !utf8.ValidString(msg) {
		return "", &apiError{http.StatusBadRequest, "InvalidParameter", "Invalid parameter: Message is not valid UTF-8"}
	}
	attrs, size, e := parseAttributes(get)
	if e != nil {
		return "", e
	}
	if size += len(msg); size > MaxMessageSize {
		return "", &apiError{http.StatusBadRequest, "InvalidParameter", "Invalid parameter: Message too long"}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	msgs, ok := s.topics[topicArn]
	if !ok {
		return "", &apiError{http.StatusNotFound, "NotFound", "Topic does not exist"}
	}
	messageID = newUUID()
	s.topics[topicArn] = append(msgs, Message{Message: msg, Attributes: attrs, MessageID: messageID})
	return messageID, nil
}

// parseAttributes reads the message attributes of a Publish request,
// MessageAttributes.entry.N.Name and .Value.DataType, .Value.StringValue
// or .Value.BinaryValue, N counting from 1, and returns them with the bytes
// they count toward the size limit.
func parseAttributes(get func(string) string) (map[string]MessageAttribute, int, *apiError) {
	var attrs map[string]MessageAttribute
	size := 0
	for n := 1; ; n++ {
		p := "MessageAttributes.entry." + strconv.Itoa(n) + "."
		name := get(p + "Name")
		if name == "" {
			return attrs, size, nil
		}
		a := MessageAttribute{
			DataType:    get(p + "Value.DataType"),
			StringValue: get(p + "Value.StringValue"),
		}
		invalid := func(format string, args ...any) (map[string]MessageAttribute, int, *apiError) {
			return nil, 0, &apiError{http.StatusBadRequest, "ParameterValueInvalid", fmt.Sprintf(format, args...)}
		}
		if b := get(p + "Value.BinaryValue"); b != "" {
			v, err := base64.StdEncoding.DecodeString(b)
			if err != nil {
				return invalid("The message attribute '%s' has an invalid binary value.", name)
			}
			a.BinaryValue = v
		}
		base, _, _ := strings.Cut(a.DataType, ".")
		switch base {
		case "String", "Number":
			if a.StringValue == "" {
				return invalid("The message attribute '%s' must contain non-empty message attribute value for message attribute type '%s'.", name, base)
			}
			if base == "Number" {
				if _, err := strconv.ParseFloat(a.StringValue, 64); err != nil {
					return invalid("Could not cast message attribute '%s' value to number.", name)
				}
			}
			size += len(a.StringValue)
		case "Binary":
			if len(a.BinaryValue) == 0 {
				return invalid("The message attribute '%s' must contain non-empty message attribute value for message attribute type 'Binary'.", name)
			}
			size += len(a.BinaryValue)
		default:
			return invalid("The message attribute '%s' has an invalid message attribute type, the set of supported type prefixes is Binary, Number, and String.", name)
		}
		if _, dup := attrs[name]; dup {
			return invalid("Message attribute name '%s' is repeated.", name)
		}
		if attrs == nil {
			attrs = make(map[string]MessageAttribute)
		}
		attrs[name] = a
		size += len(name) + len(a.DataType)
	}
}

const xmlns = "http://sns.amazonaws.com/doc/2010-03-31/"

type publishResponse struct {
	XMLName   xml.Name `xml:"PublishResponse"`
	XMLNS     string   `xml:"xmlns,attr"`
	MessageID string   `xml:"PublishResult>MessageId"`
	RequestID string   `xml:"ResponseMetadata>RequestId"`
}

type errorResponse struct {
	XMLName   xml.Name `xml:"ErrorResponse"`
	XMLNS     string   `xml:"xmlns,attr"`
	Type      string   `xml:"Error>Type"`
	Code      string   `xml:"Error>Code"`
	Message   string   `xml:"Error>Message"`
	RequestID string   `xml:"RequestId"`
}

func writeError(w http.ResponseWriter, reqID string, e *apiError) {
	typ := "Sender"
	if e.status >= 500 {
		typ = "Receiver"
	}
	writeXML(w, e.status, errorResponse{XMLNS: xmlns, Type: typ, Code: e.code, Message: e.message, RequestID: reqID})
}

func writeXML(w http.ResponseWriter, status int, v any) {
	body, err := xml.Marshal(v)
	if err != nil { // the types above always marshal
		panic(err)
	}
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(xml.Header)+len(body)))
	w.WriteHeader(status)
	w.Write([]byte(xml.Header))
	w.Write(body)
}

// newUUID returns a random (version 4) UUID, as SNS's ids are.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
