// Package sqstest provides an HTTP server that answers Amazon SQS's
// SendMessage as SQS does over its JSON protocol (AWS JSON 1.0), so that
// tests can point the real SDK client (service/sqs) at it over real HTTP on
// 127.0.0.1, as net/http/httptest does for handlers.
//
// Only SendMessage is served; any other operation is answered with a 400
// UnknownOperationException. Queues are created with [Server.CreateQueue]
// and the messages they received are read with [Server.Messages].
// [Server.Fail] and [Server.Offline] inject faults.
//
// The server checks what real SQS checks and the SDK does not: the queue
// exists, the body is not empty and holds only the characters SQS allows,
// attributes are well formed (at most 10, a data type of String, Number or
// Binary with an optional ".label", a non-empty value, a Number that is a
// number), and the message with its attributes is at most [MaxMessageSize]
// bytes. It answers with MD5OfMessageBody, which the SDK verifies, and with
// MD5OfMessageAttributes, computed as SQS computes it. It does not check
// signatures, only that the request is signed at all.
package sqstest

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// AccountID is the account that queue URLs name.
const AccountID = "123456789012"

// MaxMessageSize is the largest message the server accepts, in bytes: the
// body plus, for each attribute, its name, data type and value. It is the
// 256 KiB that SQS has long allowed, and that queues created before SQS's
// 1 MiB limit (2025) still default to.
const MaxMessageSize = 262_144

// MaxAttributes is the most message attributes a message may carry.
const MaxAttributes = 10

// Message is a message a queue received.
type Message struct {
	Body       string
	Attributes map[string]MessageAttribute
	MessageID  string
}

// MessageAttribute is a message attribute as sent.
type MessageAttribute struct {
	DataType    string
	StringValue string
	BinaryValue []byte
}

// Server is an SQS endpoint for tests. Its methods may be called from
// several goroutines at once.
type Server struct {
	srv *httptest.Server

	mu     sync.Mutex
	queues map[string][]Message // by queue URL
	fails  int
	status int
	code   string
}

// NewServer starts a server on 127.0.0.1. The caller must Close it.
func NewServer() *Server {
	s := &Server{queues: make(map[string][]Message)}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// URL returns the server's base URL ("http://127.0.0.1:port"), to pass as
// sqs.Options.BaseEndpoint.
func (s *Server) URL() string { return s.srv.URL }

// Close shuts the server down and waits for its requests to finish.
func (s *Server) Close() { s.srv.Close() }

// Offline closes the listener and the open connections, so that every
// request from then on fails to connect, as when SQS is unreachable. Close
// must still be called.
func (s *Server) Offline() {
	s.srv.Listener.Close()
	s.srv.CloseClientConnections()
}

// CreateQueue creates the queue name, if it does not exist, and returns its
// URL: URL()/AccountID/name.
func (s *Server) CreateQueue(name string) (queueURL string) {
	queueURL = s.srv.URL + "/" + AccountID + "/" + name
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.queues[queueURL]; !ok {
		s.queues[queueURL] = []Message{}
	}
	return queueURL
}

// Messages returns a copy of the messages queueURL received, oldest first;
// nil if the queue does not exist.
func (s *Server) Messages(queueURL string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	msgs, ok := s.queues[queueURL]
	if !ok {
		return nil
	}
	out := make([]Message, len(msgs))
	for i, m := range msgs {
		m.Attributes = maps.Clone(m.Attributes)
		for k, a := range m.Attributes {
			a.BinaryValue = bytes.Clone(a.BinaryValue)
			m.Attributes[k] = a
		}
		out[i] = m
	}
	return out
}

// Fail makes the next n requests fail with the HTTP status and the SQS
// error code (such as "RequestThrottled" or "InternalError"), before they
// are looked at: the body is {"__type":"com.amazonaws.sqs#<code>",
// "message":...} and the x-amzn-query-error header is "<code>;Sender", or
// "<code>;Receiver" for a status of 500 or more.
func (s *Server) Fail(n int, status int, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails, s.status, s.code = n, status, code
}

// sendMessageInput is SendMessage's request as the SDK serializes it.
type sendMessageInput struct {
	QueueUrl          *string
	MessageBody       *string
	DelaySeconds      *int
	MessageAttributes map[string]attributeValue
}

type attributeValue struct {
	DataType         string
	StringValue      *string
	BinaryValue      []byte // base64 in JSON
	StringListValues []string
	BinaryListValues [][]byte
}

// apiError is an SQS error answer.
type apiError struct {
	status    int
	code      string // the shape name, in __type
	queryCode string // x-amzn-query-error's code, the code of SQS's query API
	message   string
}

func invalidParameter(format string, args ...any) *apiError {
	return &apiError{http.StatusBadRequest, "InvalidParameterValue", "InvalidParameterValue", fmt.Sprintf(format, args...)}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if e := s.injected(); e != nil {
		writeError(w, e)
		return
	}
	out, e := s.handle(w, r)
	if e != nil {
		writeError(w, e)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// injected returns the error Fail asked for, if any is left.
func (s *Server) injected() *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fails <= 0 {
		return nil
	}
	s.fails--
	return &apiError{s.status, s.code, s.code, "injected by sqstest"}
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) (any, *apiError) {
	const target = "AmazonSQS.SendMessage"
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		return nil, &apiError{http.StatusNotFound, "UnknownOperationException", "", "sqstest: want POST /"}
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-amz-json-1.0" {
		return nil, &apiError{http.StatusBadRequest, "UnsupportedMediaType", "", "sqstest: Content-Type " + ct}
	}
	if op := r.Header.Get("X-Amz-Target"); op != target {
		return nil, &apiError{http.StatusBadRequest, "UnknownOperationException", "", "sqstest: serves only " + target + ", not " + op}
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		return nil, &apiError{http.StatusBadRequest, "MissingAuthenticationToken", "", "Request is missing Authentication Token"}
	}
	var in sendMessageInput
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8*MaxMessageSize))
	if err := dec.Decode(&in); err != nil {
		return nil, &apiError{http.StatusBadRequest, "SerializationException", "", "sqstest: " + err.Error()}
	}
	if in.QueueUrl == nil {
		return nil, invalidParameter("The request must contain the parameter QueueUrl.")
	}
	if in.MessageBody == nil || *in.MessageBody == "" {
		return nil, &apiError{http.StatusBadRequest, "MissingParameter", "MissingParameter", "The request must contain the parameter MessageBody."}
	}
	body := *in.MessageBody
	if d := in.DelaySeconds; d != nil && (*d < 0 || *d > 900) {
		return nil, invalidParameter("Value %d for parameter DelaySeconds is invalid. Reason: must be between 0 and 900, if provided.", *d)
	}
	if !allowed(body) {
		return nil, &apiError{http.StatusBadRequest, "InvalidMessageContents", "InvalidMessageContents", "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF"}
	}
	attrs, size, e := attributes(in.MessageAttributes)
	if e != nil {
		return nil, e
	}
	if size += len(body); size > MaxMessageSize {
		return nil, invalidParameter("One or more parameters are invalid. Reason: Message must be shorter than %d bytes.", MaxMessageSize)
	}

	msg := Message{Body: body, Attributes: attrs, MessageID: newID()}
	s.mu.Lock()
	msgs, ok := s.queues[*in.QueueUrl]
	if ok {
		s.queues[*in.QueueUrl] = append(msgs, msg)
	}
	s.mu.Unlock()
	if !ok {
		return nil, &apiError{http.StatusBadRequest, "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue", "The specified queue does not exist."}
	}

	out := map[string]string{
		"MD5OfMessageBody": md5Hex([]byte(body)),
		"MessageId":        msg.MessageID,
	}
	if len(attrs) > 0 {
		out["MD5OfMessageAttributes"] = MD5OfMessageAttributes(attrs)
	}
	return out, nil
}

// attributes checks the message attributes and returns them with their
// size: names, data types and values.
func attributes(in map[string]attributeValue) (map[string]MessageAttribute, int, *apiError) {
	if len(in) == 0 {
		return nil, 0, nil
	}
	if len(in) > MaxAttributes {
		return nil, 0, invalidParameter("Number of message attributes [%d] exceeds the allowed maximum [%d].", len(in), MaxAttributes)
	}
	out := make(map[string]MessageAttribute, len(in))
	size := 0
	for name, v := range in {
		if name == "" || len(name) > 256 {
			return nil, 0, invalidParameter("Message (user) attribute name must be 1 to 256 characters, not %d.", len(name))
		}
		base, _, _ := strings.Cut(v.DataType, ".")
		if base != "String" && base != "Number" && base != "Binary" {
			return nil, 0, invalidParameter("The type of message (user) attribute '%s' is invalid. You must use only the following supported type prefixes: Binary, Number, String.", name)
		}
		if len(v.StringListValues) > 0 || len(v.BinaryListValues) > 0 {
			return nil, 0, invalidParameter("Message (user) attribute '%s': list values are not supported.", name)
		}
		a := MessageAttribute{DataType: v.DataType}
		if base == "Binary" {
			if len(v.BinaryValue) == 0 {
				return nil, 0, invalidParameter("Message (user) attribute '%s' must contain a non-empty value of type 'Binary'.", name)
			}
			a.BinaryValue = v.BinaryValue
			size += len(v.BinaryValue)
		} else {
			if v.StringValue == nil || *v.StringValue == "" {
				return nil, 0, invalidParameter("Message (user) attribute '%s' must contain a non-empty value of type '%s'.", name, base)
			}
			if !allowed(*v.StringValue) {
				return nil, 0, &apiError{http.StatusBadRequest, "InvalidMessageContents", "InvalidMessageContents", fmt.Sprintf("Message (user) attribute '%s' value contains invalid characters.", name)}
			}
			if base == "Number" {
				if _, err := strconv.ParseFloat(*v.StringValue, 64); err != nil {
					return nil, 0, invalidParameter("Can't cast the value of message (user) attribute '%s' to a number.", name)
				}
			}
			a.StringValue = *v.StringValue
			size += len(*v.StringValue)
		}
		size += len(name) + len(v.DataType)
		out[name] = a
	}
	return out, size, nil
}

// allowed reports whether s holds only the characters SQS accepts in a
// message: #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to
// #x10FFFF, as valid UTF-8.
func allowed(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		switch {
		case r == 0x9, r == 0xA, r == 0xD:
		case r >= 0x20 && r <= 0xD7FF:
		case r >= 0xE000 && r <= 0xFFFD:
		case r >= 0x10000 && r <= 0x10FFFF:
		default:
			return false
		}
	}
	return true
}

// MD5OfMessageAttributes returns the MD5 digest, in hex, of attrs as SQS
// computes it: for each attribute in the order of its name, the name, the
// data type, a transport byte (1 for String and Number, 2 for Binary) and
// the value, each string preceded by its length as 4 bytes, big-endian.
func MD5OfMessageAttributes(attrs map[string]MessageAttribute) string {
	var b []byte
	field := func(p []byte) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	for _, name := range slices.Sorted(maps.Keys(attrs)) {
		a := attrs[name]
		field([]byte(name))
		field([]byte(a.DataType))
		if strings.HasPrefix(a.DataType, "Binary") {
			b = append(b, 2)
			field(a.BinaryValue)
		} else {
			b = append(b, 1)
			field([]byte(a.StringValue))
		}
	}
	return md5Hex(b)
}

func md5Hex(p []byte) string {
	sum := md5.Sum(p)
	return hex.EncodeToString(sum[:])
}

// newID returns a random id in the form of SQS's message ids, a UUID.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func writeError(w http.ResponseWriter, e *apiError) {
	if e.queryCode != "" {
		fault := "Sender"
		if e.status >= 500 {
			fault = "Receiver"
		}
		w.Header().Set("x-amzn-query-error", e.queryCode+";"+fault)
	}
	writeJSON(w, e.status, map[string]string{
		"__type":  "com.amazonaws.sqs#" + e.code,
		"message": e.message,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v) // maps of strings always marshal
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.Header().Set("x-amzn-RequestId", newID())
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}
