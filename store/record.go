package store

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"strings"
	"time"
)

// recordVersion is the first byte of every event record. A later format
// gets a new number and a decoder for each older one, so a file written by
// this version stays readable.
//
// Version 2 is version 1 followed by a CRC-32C of the record: without it,
// one flipped bit in a function name sent the event, unnoticed, to another
// function. Records of version 1 still decode, unchecked.
//
// Version 3 adds, right after the state, the event's priority and a flags
// byte (bit 0: cancelled while leased). They come first so that an ack,
// which only skims a record, finds the priority (its index key needs it)
// without stepping over the strings. Records of versions 1 and 2 read as
// priority 0, not cancelled.
const (
	recordV1      = 1
	recordV2      = 2
	recordVersion = 3
)

// recordSumSize is the length of a checked record's trailing checksum.
const recordSumSize = 4

// recCancelled is bit 0 of a v3 record's flags; the other bits are
// reserved, and a record with one set does not decode, so that a later
// flag is never silently dropped by this version.
const recCancelled = 1 << 0

// Event priorities: higher is more urgent, 0 is normal.
const (
	MaxPriority = 3
	MinPriority = -3
)

// checkPriority refuses a priority the index has no place for.
func checkPriority(p int8) error {
	if p < MinPriority || p > MaxPriority {
		return fmt.Errorf("store: priority %d: want %d to %d", p, MinPriority, MaxPriority)
	}
	return nil
}

// Bounds the decoder enforces so that a corrupt length can never make it
// allocate or read beyond reason.
const (
	maxStringLen  = 1 << 16
	maxPayloadLen = 1 << 30
)

// state of an event record.
const (
	stateReady  = 0
	stateLeased = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrorInfo is the last error recorded against an event: what Lambda (or
// the transport) answered to its latest failed attempt. It is zero when
// there was no attempt. Package deadletter's ErrorInfo is this type, so a
// letter carries its event's last error unconverted.
type ErrorInfo struct {
	// Code is Lambda's error code, such as "ResourceNotFoundException";
	// empty for transport errors.
	Code string `json:"code,omitempty"`
	// Message is Lambda's error message, or the transport error's text,
	// with anything secret-looking redacted (see retry.Redact).
	Message string `json:"message,omitempty"`
	// StatusCode is the HTTP status, 0 for transport errors.
	StatusCode int `json:"statusCode,omitempty"`
	// RequestID is Lambda's request id, empty when none was received.
	RequestID string `json:"requestId,omitempty"`
}

// IsZero reports whether no error is recorded.
func (e ErrorInfo) IsZero() bool { return e == ErrorInfo{} }

// String returns the error as a line for people, such as
// "ServiceException (HTTP 500, request 1f2e...): internal error", and ""
// when none is recorded.
func (e ErrorInfo) String() string {
	if e.IsZero() {
		return ""
	}
	var b strings.Builder
	b.WriteString(cmp.Or(e.Code, "error"))
	var details []string
	if e.StatusCode != 0 {
		details = append(details, fmt.Sprintf("HTTP %d", e.StatusCode))
	}
	if e.RequestID != "" {
		details = append(details, "request "+e.RequestID)
	}
	if len(details) > 0 {
		b.WriteString(" (" + strings.Join(details, ", ") + ")")
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

// record is the mutable metadata of one event as stored in the events
// bucket. The payload lives apart, in the payloads bucket, so that leasing
// and rescheduling rewrite a hundred bytes rather than the whole payload.
type record struct {
	state        byte
	priority     int8
	cancelled    bool // leased, and to be removed rather than kept when its lease ends
	attempts     uint32
	enqueued     int64 // unix nanoseconds
	due          int64
	firstAttempt int64 // 0: never attempted
	lastAttempt  int64
	leaseUntil   int64 // 0 unless leased
	function     string
	qualifier    string
	key          string
	payloadLen   uint32
	payloadCRC   uint32
	lastErr      ErrorInfo
}

// encode appends the v3 binary form of r to b:
//
//	version byte, state byte,
//	priority byte (int8) and flags byte (bit 0: cancelled) (v3 only),
//	uvarint attempts,
//	varint enqueued, due, firstAttempt, lastAttempt, leaseUntil,
//	string function, qualifier, key (uvarint length + bytes),
//	uvarint payload length, 4-byte big-endian CRC-32C of the payload,
//	flag byte (1: an error follows), then string code, string message,
//	uvarint status, string request id,
//	4-byte big-endian CRC-32C of every byte before it (v2 and v3).
func (r *record) encode(b []byte) []byte {
	start := len(b)
	var flags byte
	if r.cancelled {
		flags |= recCancelled
	}
	b = append(b, recordVersion, r.state, byte(r.priority), flags)
	b = r.appendFields(b)
	return binary.BigEndian.AppendUint32(b, checksum(b[start:]))
}

// encodeV1 appends the v1 form, which v2 and v3 extend. Only tests and
// the checks of old files write it: the store writes v3.
func (r *record) encodeV1(b []byte) []byte {
	return r.appendFields(append(b, recordV1, r.state))
}

// encodeV2 appends the v2 form: v1 and its checksum.
func (r *record) encodeV2(b []byte) []byte {
	start := len(b)
	b = r.encodeV1(b)
	b[start] = recordV2
	return binary.BigEndian.AppendUint32(b, checksum(b[start:]))
}

// appendFields appends the fields every version has, from attempts on.
func (r *record) appendFields(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(r.attempts))
	b = binary.AppendVarint(b, r.enqueued)
	b = binary.AppendVarint(b, r.due)
	b = binary.AppendVarint(b, r.firstAttempt)
	b = binary.AppendVarint(b, r.lastAttempt)
	b = binary.AppendVarint(b, r.leaseUntil)
	b = appendString(b, r.function)
	b = appendString(b, r.qualifier)
	b = appendString(b, r.key)
	b = binary.AppendUvarint(b, uint64(r.payloadLen))
	b = binary.BigEndian.AppendUint32(b, r.payloadCRC)
	if r.lastErr.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	b = appendString(b, r.lastErr.Code)
	b = appendString(b, r.lastErr.Message)
	b = binary.AppendUvarint(b, uint64(r.lastErr.StatusCode))
	return appendString(b, r.lastErr.RequestID)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeRecord parses an event record. It never panics: any input that is
// not a well-formed record yields an error naming the first thing wrong.
func decodeRecord(b []byte) (record, error) {
	var r record
	version, body, err := recordBody(b)
	if err != nil {
		return r, err
	}
	d := decoder{b: body}
	r.state = d.byte("state")
	if d.err == nil && r.state != stateReady && r.state != stateLeased {
		d.fail("state", fmt.Sprintf("unknown state %d", r.state))
	}
	if version >= recordVersion {
		r.priority, r.cancelled = d.priorityFlags()
	}
	r.attempts = uint32(d.uvarint("attempts", math.MaxUint32))
	r.enqueued = d.varint("enqueue time")
	r.due = d.varint("due time")
	r.firstAttempt = d.varint("first attempt time")
	r.lastAttempt = d.varint("last attempt time")
	r.leaseUntil = d.varint("lease expiry")
	r.function = d.string("function")
	r.qualifier = d.string("qualifier")
	r.key = d.string("key")
	r.payloadLen = uint32(d.uvarint("payload length", maxPayloadLen))
	r.payloadCRC = d.uint32("payload checksum")
	switch flag := d.byte("error flag"); {
	case d.err != nil:
	case flag == 1:
		r.lastErr.Code = d.string("error code")
		r.lastErr.Message = d.string("error message")
		r.lastErr.StatusCode = int(d.uvarint("error status", 999))
		r.lastErr.RequestID = d.string("error request id")
		if d.err == nil && r.lastErr.IsZero() {
			d.fail("error", "flag set but every field empty")
		}
	case flag != 0:
		d.fail("error flag", fmt.Sprintf("unknown value %d", flag))
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("end", fmt.Sprintf("%d trailing bytes", len(d.b)))
	}
	return r, d.err
}

// priorityFlags reads a v3 record's priority and flags bytes.
func (d *decoder) priorityFlags() (int8, bool) {
	p := int8(d.byte("priority"))
	flags := d.byte("flags")
	switch {
	case d.err != nil:
	case checkPriority(p) != nil:
		d.fail("priority", fmt.Sprintf("%d is out of range", p))
	case flags&^recCancelled != 0:
		d.fail("flags", fmt.Sprintf("unknown bits %#x", flags&^recCancelled))
	}
	return p, flags&recCancelled != 0
}

// recordBody checks the version and, for v2 and v3, the checksum of
// record b, and returns its version and the fields that follow the
// version byte.
func recordBody(b []byte) (byte, []byte, error) {
	if len(b) == 0 {
		return 0, nil, fmt.Errorf("empty record")
	}
	switch b[0] {
	case recordV1:
		return b[0], b[1:], nil
	case recordV2, recordVersion:
		n := len(b) - recordSumSize
		if n < 1 {
			return 0, nil, fmt.Errorf("record checksum: truncated")
		}
		if checksum(b[:n]) != binary.BigEndian.Uint32(b[n:]) {
			return 0, nil, fmt.Errorf("record checksum mismatch")
		}
		return b[0], b[1:n], nil
	}
	return 0, nil, fmt.Errorf("unknown record version %d (this library reads versions %d to %d)", b[0], recordV1, recordVersion)
}

// recordHead is what removing an event needs of its record.
type recordHead struct {
	state     byte
	priority  int8
	cancelled bool
	due       int64
	size      int64  // as record.size
	function  []byte // aliases the record: valid only in its transaction
	key       []byte // likewise
}

// skimRecord reads the head of a record without building its strings: an
// ack removes thousands of records a second and needs none of them.
func skimRecord(b []byte) (recordHead, error) {
	version, body, err := recordBody(b)
	if err != nil {
		return recordHead{}, err
	}
	return skimBody(version, body)
}

// skimLenient is skimRecord without the checksum, for a record already
// found damaged: what it reads is a best guess at the function that
// counted the event and the size it counted, never a reason to send it.
func skimLenient(b []byte) (recordHead, error) {
	switch {
	case len(b) > recordSumSize && (b[0] == recordV2 || b[0] == recordVersion):
		return skimBody(b[0], b[1:len(b)-recordSumSize])
	case len(b) > 0 && b[0] == recordV1:
		return skimBody(b[0], b[1:])
	}
	return recordHead{}, errors.New("unknown record version")
}

func skimBody(version byte, body []byte) (recordHead, error) {
	var h recordHead
	d := decoder{b: body}
	h.state = d.byte("state")
	if version >= recordVersion {
		h.priority, h.cancelled = d.priorityFlags()
	}
	d.uvarint("attempts", math.MaxUint32)
	d.varint("enqueue time")
	h.due = d.varint("due time")
	for _, f := range []string{"first attempt time", "last attempt time", "lease expiry"} {
		d.varint(f)
	}
	h.function = d.stringBytes("function")
	strs := uint64(len(h.function))
	strs += d.skipString("qualifier")
	h.key = d.stringBytes("key")
	strs += uint64(len(h.key))
	h.size = int64(d.uvarint("payload length", maxPayloadLen)) + int64(strs) + recordOverhead
	if d.err == nil && h.state != stateReady && h.state != stateLeased {
		d.fail("state", fmt.Sprintf("unknown state %d", h.state))
	}
	return h, d.err
}

// decoder reads fields in order and remembers the first failure, so that
// decodeRecord reads as the list of fields it checks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(field, why string) {
	if d.err == nil {
		d.err = fmt.Errorf("%s: %s", field, why)
	}
	d.b = nil
}

func (d *decoder) byte(field string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.fail(field, "truncated")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uint32(field string) uint32 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 4 {
		d.fail(field, "truncated")
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decoder) uvarint(field string, max uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || (n > 1 && d.b[n-1] == 0) {
		// A trailing zero byte is a longer spelling of a shorter number:
		// the encoder never writes one, so it means damage.
		d.fail(field, "truncated or malformed varint")
		return 0
	}
	if v > max {
		d.fail(field, fmt.Sprintf("value %d exceeds %d", v, max))
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(field string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 || (n > 1 && d.b[n-1] == 0) {
		d.fail(field, "truncated or malformed varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string(field string) string {
	n := d.uvarint(field+" length", maxStringLen)
	if d.err != nil {
		return ""
	}
	if uint64(len(d.b)) < n {
		d.fail(field, fmt.Sprintf("length %d but %d bytes left", n, len(d.b)))
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// skipString steps over a string and returns its length.
func (d *decoder) skipString(field string) uint64 {
	return uint64(len(d.stringBytes(field)))
}

// stringBytes reads a string without copying it: the result aliases the
// input, and is nil when empty.
func (d *decoder) stringBytes(field string) []byte {
	n := d.uvarint(field+" length", maxStringLen)
	if d.err != nil {
		return nil
	}
	if uint64(len(d.b)) < n {
		d.fail(field, fmt.Sprintf("length %d but %d bytes left", n, len(d.b)))
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	if n == 0 {
		return nil
	}
	return s
}

func checksum(payload []byte) uint32 { return crc32.Checksum(payload, castagnoli) }

// Keys. Sequence numbers are big-endian so that bbolt's byte order is their
// numeric order. A key of the ready index (bucket fnready) is the
// function's id, a priority byte, the due time, then the sequence: a
// cursor from a function's first key walks its events due first, first-in
// first among equals, and one function's backlog never lies between two
// others' keys.

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq) }

const (
	fnReadyKeyLen = 4 + 1 + 8 + 8
	// priorityNormal is the priority byte of priority 0, the byte every
	// key had before priorities: files written then keep their order.
	priorityNormal = 0x80
)

// readyPriority is priority p's byte in the ready index: a lower byte
// sorts, and so leases, first within a function, so the most urgent
// priority has the lowest.
func readyPriority(p int8) byte { return byte(priorityNormal - int(p)) }

func fnReadyKey(id uint32, p int8, due int64, seq uint64) []byte {
	k := make([]byte, 0, fnReadyKeyLen)
	k = binary.BigEndian.AppendUint32(k, id)
	k = append(k, readyPriority(p))
	k = binary.BigEndian.AppendUint64(k, orderedTime(due))
	return binary.BigEndian.AppendUint64(k, seq)
}

// fnPrefix is the first key any of function id's keys can be.
func fnPrefix(id uint32) []byte { return binary.BigEndian.AppendUint32(make([]byte, 0, 4), id) }

// fnPrioPrefix sorts before every key of function id at priority p.
func fnPrioPrefix(id uint32, p byte) []byte { return append(fnPrefix(id), p) }

// fnDueKey sorts before every key of function id at priority p due at or
// after due (an ordered time), and after every one due before.
func fnDueKey(id uint32, p byte, due uint64) []byte {
	return binary.BigEndian.AppendUint64(fnPrioPrefix(id, p), due)
}

// ofFunction reports whether index key k is one of function id's.
func ofFunction(k []byte, id uint32) bool {
	return len(k) >= 4 && binary.BigEndian.Uint32(k) == id
}

// fnKeyDue is the ordered due time of a well-formed index key.
func fnKeyDue(k []byte) uint64 { return binary.BigEndian.Uint64(k[5:]) }

// fnKeySeq is the sequence number of a well-formed index key.
func fnKeySeq(k []byte) uint64 { return binary.BigEndian.Uint64(k[13:]) }

// readyKey is a key of format 1's ready index, bucket "ready": the due time
// then the sequence. Only migration and the checks of a format 1 file use
// it.
func readyKey(due int64, seq uint64) []byte {
	k := make([]byte, 0, 16)
	k = binary.BigEndian.AppendUint64(k, orderedTime(due))
	return binary.BigEndian.AppendUint64(k, seq)
}

// orderedTime maps signed nanoseconds onto unsigned ones with the same order,
// so that a clock set before 1970 still sorts.
func orderedTime(ns int64) uint64 { return uint64(ns) ^ (1 << 63) }

func fromUnixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}
