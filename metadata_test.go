package dispatcher

import (
	"encoding/json"
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
			if name == "OwnMemberWins" {
				require.Equal(t, `"mine"`, string(m["_dispatch"]))
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
