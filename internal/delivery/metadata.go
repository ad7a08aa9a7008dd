package delivery

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/lambdadispatch/dispatcher/store"
)

// withMetadata returns payload with one more member, field, holding the
// event's id, key, attempt number and enqueue time, when payload is a JSON
// object; any other payload is returned unchanged. Lambda passes
// ClientContext to synchronous invocations only, so for Event invocations
// the payload is the one channel to the function.
//
// A payload that already has a top-level member named field, however its
// name is spelled ("_dispatch" or "_disp\u0061tch"), is returned
// unchanged: the payload's own wins, as WithPayloadMetadata documents, and
// the result never holds two members of one name, which RFC 8259 leaves
// to each decoder to resolve its own way.
func withMetadata(payload []byte, field string, ev store.Event) []byte {
	body := bytes.TrimLeft(payload, " \t\r\n")
	if len(body) == 0 || body[0] != '{' {
		return payload
	}
	if !utf8.ValidString(field) {
		// The member is written with invalid bytes replaced, as
		// encoding/json writes them; compare under that name.
		_ = json.Unmarshal(appendJSONString(nil, field), &field)
	}
	if hasMember(body, field) {
		return payload
	}
	rest := bytes.TrimLeft(body[1:], " \t\r\n")
	out := make([]byte, 0, len(payload)+len(field)+len(ev.Key)+96)
	out = append(out, '{')
	out = appendJSONString(out, field)
	out = append(out, `:{"id":`...)
	out = appendJSONString(out, formatID(ev.Seq))
	if ev.Key != "" {
		out = append(out, `,"key":`...)
		out = appendJSONString(out, ev.Key)
	}
	out = append(out, `,"attempt":`...)
	out = strconv.AppendInt(out, int64(ev.Attempts), 10)
	out = append(out, `,"enqueuedAt":"`...)
	out = ev.Enqueued.UTC().AppendFormat(out, time.RFC3339Nano)
	out = append(out, `"}`...)
	if len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, rest...)
}

// hasMember reports whether the JSON object obj (starting at its '{') has a
// top-level member whose name, unescaped, is name. It reads obj as far as
// it is well formed; payloads were validated at Enqueue.
func hasMember(obj []byte, name string) bool {
	// Most payloads neither spell the name plainly nor escape anything
	// (invalid UTF-8 decodes to U+FFFD, a spelling of its own): then no
	// member can have it, and the scan is skipped.
	if !bytes.Contains(obj, []byte(name)) && bytes.IndexByte(obj, '\\') < 0 && utf8.Valid(obj) {
		return false
	}
	i := 1 // past '{'
	for {
		i = skipSpace(obj, i)
		if i >= len(obj) || obj[i] != '"' {
			return false // '}', or not well formed
		}
		end := stringEnd(obj, i)
		if end < 0 {
			return false
		}
		if nameIs(obj[i:end], name) {
			return true
		}
		i = skipSpace(obj, end)
		if i >= len(obj) || obj[i] != ':' {
			return false
		}
		if i = skipValue(obj, i+1); i < 0 {
			return false
		}
		i = skipSpace(obj, i)
		if i >= len(obj) || obj[i] != ',' {
			return false
		}
		i++
	}
}

// nameIs reports whether the JSON string quoted (quotes included) decodes
// to name.
func nameIs(quoted []byte, name string) bool {
	raw := quoted[1 : len(quoted)-1]
	if bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		return string(raw) == name
	}
	var s string
	return json.Unmarshal(quoted, &s) == nil && s == name
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just past the string starting at b[i] ('"'),
// or -1 when it does not end.
func stringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// skipValue returns the index just past the value starting at or after
// b[i], or -1 when it does not end.
func skipValue(b []byte, i int) int {
	i = skipSpace(b, i)
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				if i = stringEnd(b, i); i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	}
	// A number, true, false or null.
	for ; i < len(b); i++ {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return i
		}
	}
	return i
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}
