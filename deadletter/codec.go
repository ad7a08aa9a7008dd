package deadletter

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrInvalidLetter is returned, wrapped with the field at fault, by Put
// and PutTx for a letter the Bolt sink cannot store faithfully: an ID that
// is not a decimal sequence number in canonical form, an empty Function or
// Reason, text that is not UTF-8 in Function, Qualifier, Key or Reason,
// negative Attempts, or a time outside the years 0 to 9999. Nothing is
// written.
var ErrInvalidLetter = errors.New("deadletter: invalid letter")

// CorruptError reports a letter in the file that cannot be read: a value
// that does not decode, or a key that is not an id.
type CorruptError struct {
	// ID is the letter's id, or "" when the key itself is not an id.
	ID string
	// Err says what is wrong.
	Err error
}

// Error returns a message such as "deadletter: corrupt letter 42: empty Function".
func (e *CorruptError) Error() string {
	if e.ID == "" {
		return fmt.Sprintf("deadletter: corrupt letter: %v", e.Err)
	}
	return fmt.Sprintf("deadletter: corrupt letter %s: %v", e.ID, e.Err)
}

// Unwrap returns the cause.
func (e *CorruptError) Unwrap() error { return e.Err }

// letterVersion is the first byte of every stored letter. The decoder
// ignores fields it does not know, so a later version of this library may
// add an optional field to version 1 and this one still reads the letter; a
// change that this decoder would misread (a field that changes meaning or
// becomes required) needs a new version.
const letterVersion = 1

// letterV1 is the JSON after the version byte. The ID is not in it: the
// key holds it. Times are RFC 3339 with nanoseconds, in UTC, and absent
// when zero.
type letterV1 struct {
	Function     string  `json:"function"`
	Qualifier    string  `json:"qualifier,omitempty"`
	Key          string  `json:"key,omitempty"`
	Payload      []byte  `json:"payload,omitempty"` // base64
	Enqueued     string  `json:"enqueued,omitempty"`
	Reason       string  `json:"reason"`
	Attempts     int     `json:"attempts"`
	FirstAttempt string  `json:"firstAttempt,omitempty"`
	LastAttempt  string  `json:"lastAttempt,omitempty"`
	LastError    errorV1 `json:"lastError,omitzero"`
	DeadLettered string  `json:"deadLettered,omitempty"`
}

type errorV1 struct {
	Code       string `json:"code,omitempty"`
	Message    string `json:"message,omitempty"`
	StatusCode int    `json:"statusCode,omitempty"`
	RequestID  string `json:"requestId,omitempty"`
}

// idKey returns the key of id: its value as 8 bytes, big-endian, so that
// letters sort in event order. Only the canonical decimal form is an id
// ("42", not "042" or "+42"), so that the id read back is the id written.
func idKey(id string) ([]byte, error) {
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != id {
		return nil, fmt.Errorf("%q is not a decimal sequence number", id)
	}
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), n), nil
}

// keyID is the inverse of idKey.
func keyID(k []byte) (string, error) {
	if len(k) != 8 {
		return "", &CorruptError{Err: fmt.Errorf("key %x is %d bytes, want 8", k, len(k))}
	}
	return strconv.FormatUint(binary.BigEndian.Uint64(k), 10), nil
}

// encodeLetter returns the key and the stored value of l, or an error
// wrapping ErrInvalidLetter. The strings of LastError are made valid UTF-8
// (invalid bytes become U+FFFD) rather than refused: a transport error's
// text is not worth keeping an event stuck in the queue.
func encodeLetter(l Letter) (key, value []byte, err error) {
	key, err = idKey(l.ID)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: ID: %v", ErrInvalidLetter, err)
	}
	if err := check(l); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalidLetter, err)
	}
	v := letterV1{
		Function: l.Function, Qualifier: l.Qualifier, Key: l.Key, Payload: l.Payload,
		Enqueued: formatTime(l.Enqueued), Reason: string(l.Reason), Attempts: l.Attempts,
		FirstAttempt: formatTime(l.FirstAttempt), LastAttempt: formatTime(l.LastAttempt),
		DeadLettered: formatTime(l.DeadLettered),
		LastError: errorV1{
			Code: strings.ToValidUTF8(l.LastError.Code, "\uFFFD"), Message: strings.ToValidUTF8(l.LastError.Message, "\uFFFD"),
			StatusCode: l.LastError.StatusCode, RequestID: strings.ToValidUTF8(l.LastError.RequestID, "\uFFFD"),
		},
	}
	var buf bytes.Buffer
	buf.Grow(1 + 256 + len(l.Payload)*4/3)
	buf.WriteByte(letterVersion)
	enc := json.NewEncoder(&buf)
	if err := enc.Encode(&v); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalidLetter, err)
	}
	value = buf.Bytes()
	return key, value[:len(value)-1], nil // Encode ends with a newline
}

// check is what encodeLetter requires of every field but the ID, and what
// decodeLetter requires of what it read: whatever decodes encodes again.
func check(l Letter) error {
	for _, f := range []struct{ name, v string }{
		{"Function", l.Function}, {"Qualifier", l.Qualifier}, {"Key", l.Key}, {"Reason", string(l.Reason)},
	} {
		if !utf8.ValidString(f.v) {
			return fmt.Errorf("%s: not valid UTF-8", f.name)
		}
	}
	switch {
	case l.Function == "":
		return errors.New("empty Function")
	case l.Reason == "":
		return errors.New("empty Reason")
	case l.Attempts < 0:
		return fmt.Errorf("negative Attempts (%d)", l.Attempts)
	}
	for _, f := range []struct {
		name string
		t    time.Time
	}{
		{"Enqueued", l.Enqueued}, {"FirstAttempt", l.FirstAttempt}, {"LastAttempt", l.LastAttempt}, {"DeadLettered", l.DeadLettered},
	} {
		if y := f.t.UTC().Year(); y < 0 || y > 9999 {
			return fmt.Errorf("%s: year %d is outside 0 to 9999", f.name, y)
		}
	}
	return nil
}

// decodeLetter decodes the stored value of the letter id. It never panics;
// its errors are *CorruptError naming what is wrong.
func decodeLetter(id string, b []byte) (Letter, error) {
	l, err := decodeValue(b)
	if err != nil {
		return Letter{}, &CorruptError{ID: id, Err: err}
	}
	l.ID = id
	return l, nil
}

func decodeValue(b []byte) (Letter, error) {
	switch {
	case len(b) == 0:
		return Letter{}, errors.New("empty value")
	case b[0] != letterVersion:
		return Letter{}, fmt.Errorf("unknown format version %d (this library reads %d)", b[0], letterVersion)
	}
	// Unmarshal, not a Decoder: it refuses data after the object, and its
	// work does not depend on how a reader happens to chunk the input.
	var v letterV1
	if err := json.Unmarshal(b[1:], &v); err != nil {
		return Letter{}, fmt.Errorf("version %d: %w", letterVersion, err)
	}
	l := Letter{
		Function: v.Function, Qualifier: v.Qualifier, Key: v.Key, Payload: v.Payload,
		Reason: Reason(v.Reason), Attempts: v.Attempts,
		LastError: ErrorInfo{Code: v.LastError.Code, Message: v.LastError.Message, StatusCode: v.LastError.StatusCode, RequestID: v.LastError.RequestID},
	}
	if len(l.Payload) == 0 {
		l.Payload = nil // an empty payload is stored as none
	}
	for _, f := range []struct {
		name string
		s    string
		t    *time.Time
	}{
		{"enqueued", v.Enqueued, &l.Enqueued}, {"firstAttempt", v.FirstAttempt, &l.FirstAttempt},
		{"lastAttempt", v.LastAttempt, &l.LastAttempt}, {"deadLettered", v.DeadLettered, &l.DeadLettered},
	} {
		t, err := parseTime(f.s)
		if err != nil {
			return Letter{}, fmt.Errorf("%s: %w", f.name, err)
		}
		*f.t = t
	}
	if err := check(l); err != nil {
		return Letter{}, err
	}
	return l, nil
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}
