package delivery

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher/store"
)

func TestWithMetadata(t *testing.T) {
	t.Parallel()
	ev := store.Event{Seq: 42, Key: "order-\x01\"42\"", Attempts: 2, Enqueued: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)}
	for name, tc := range map[string]struct {
		in     string
		object bool
	}{
		"Object":           {`{"a":1}`, true},
		"EmptyObject":      {`{}`, true},
		"SpacedObject":     {" \n{ \"a\" : [1] } ", true},
		"OwnMemberWins":    {`{"_dispatch":"mine"}`, true},
		"OwnMemberEscaped": {`{"_disp\u0061tch":"mine"}`, true},
		"OwnMemberLast":    {`{"a":{"_dispatch":1},"b":["_dispatch",{"_dispatch":2}],"c":"\"_dispatch\"", "_dispatch" : "mine" }`, true},
		"NestedOnly":       {`{"a":{"_dispatch":1},"b":[{"_dispatch":2}],"_dispatchx":3}`, true},
		"Array":            {`[1,2]`, false},
		"String":           {`"x"`, false},
		"Empty":            {``, false},
		"WhitespaceNumber": {` 7`, false},
	} {
		t.Run(name, func(t *testing.T) {
			out := withMetadata([]byte(tc.in), "_dispatch", ev)
			if !tc.object {
				require.Equal(t, tc.in, string(out), "not an object: unchanged")
				return
			}
			require.True(t, json.Valid(out), "%s", out)
			var m map[string]json.RawMessage
			require.NoError(t, json.Unmarshal(out, &m))
			require.Equal(t, uniqueNames(t, out), len(m), "no name twice in %s", out)
			if strings.HasPrefix(name, "OwnMember") {
				require.Equal(t, `"mine"`, string(m["_dispatch"]))
				require.Equal(t, tc.in, string(out), "the payload's own member wins: unchanged")
				return
			}
			var md struct {
				ID, Key    string
				Attempt    int
				EnqueuedAt time.Time
			}
			require.NoError(t, json.Unmarshal(m["_dispatch"], &md))
			require.Equal(t, "42", md.ID)
			require.Equal(t, ev.Key, md.Key)
			require.Equal(t, 2, md.Attempt)
			require.True(t, md.EnqueuedAt.Equal(ev.Enqueued))
		})
	}
}

// topNames returns the top-level member names of the JSON object b, in
// order, duplicates kept.
func topNames(t *testing.T, b []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	require.NoError(t, err)
	require.Equal(t, json.Delim('{'), tok)
	var names []string
	for dec.More() {
		k, err := dec.Token()
		require.NoError(t, err)
		names = append(names, k.(string))
		var v json.RawMessage
		require.NoError(t, dec.Decode(&v))
	}
	return names
}

// uniqueNames returns how many top-level names b has, failing if one is
// there twice.
func uniqueNames(t *testing.T, b []byte) int {
	t.Helper()
	seen := map[string]bool{}
	for _, n := range topNames(t, b) {
		require.False(t, seen[n], "name %q twice in %s", n, b)
		seen[n] = true
	}
	return len(seen)
}

func countOf(names []string, name string) int {
	n := 0
	for _, s := range names {
		if s == name {
			n++
		}
	}
	return n
}

// FuzzWithMetadata: for any valid JSON payload, the result is valid JSON;
// for an object, the member is there exactly once unless the payload had
// its own (then the payload is unchanged), and the other members are the
// payload's.
func FuzzWithMetadata(f *testing.F) {
	f.Add([]byte(`{"a":1}`), "_dispatch")
	f.Add([]byte(`{"_dispatch":1}`), "_dispatch")
	f.Add([]byte(`{"_disp\u0061tch":1}`), "_dispatch")
	f.Add([]byte(` { "x" : {"_dispatch":[1,"}"]} , "_dispatch":null } `), "_dispatch")
	f.Add([]byte(`{"\ufffd":1}`), "\xff")
	f.Add([]byte(`[{"_dispatch":1}]`), "_dispatch")
	f.Add([]byte(`{}`), "a\"b")
	ev := store.Event{Seq: 7, Key: "k", Attempts: 1, Enqueued: time.Unix(0, 0)}
	f.Fuzz(func(t *testing.T, payload []byte, field string) {
		if field == "" || !json.Valid(payload) {
			return // WithPayloadMetadata refuses "", Enqueue invalid JSON
		}
		out := withMetadata(payload, field, ev)
		require.True(t, json.Valid(out), "%q -> %q", payload, out)
		if body := bytes.TrimLeft(payload, " \t\r\n"); body[0] != '{' {
			require.Equal(t, payload, out, "not an object: unchanged")
			return
		}
		var name string // the member's name as written
		require.NoError(t, json.Unmarshal(appendJSONString(nil, field), &name))
		in, got := topNames(t, payload), topNames(t, out)
		if countOf(in, name) > 0 {
			require.Equal(t, payload, out, "the payload's own member wins: unchanged")
			return
		}
		require.Equal(t, 1, countOf(got, name))
		require.Equal(t, append([]string{name}, in...), got, "the member, then the payload's, in order")
	})
}
