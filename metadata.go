package dispatcher

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"

	"github.com/lambdadispatch/dispatcher/store"
)

// withMetadata returns payload with one more member, field, holding the
// event's id, key, attempt number and enqueue time, when payload is a JSON
// object; any other payload is returned unchanged. Lambda passes
// ClientContext to synchronous invocations only, so for Event invocations
// the payload is the one channel to the function.
//
// The member goes first, so that a payload that already has a member of the
// same name keeps its own: JSON decoders take the last of duplicate names.
func withMetadata(payload []byte, field string, ev store.Event) []byte {
	body := bytes.TrimLeft(payload, " \t\r\n")
	if len(body) == 0 || body[0] != '{' {
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

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}
