package main

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/deadletter"
)

// What several commands share: table and JSON output, times, payloads, the
// JSON shapes of queued events and dead letters, and the names of reasons
// and states. A helper only one command uses lives in that command's file.

func (c *cli) table() *tabwriter.Writer {
	return tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
}

func (c *cli) writeJSON(v any) error {
	return json.NewEncoder(c.stdout).Encode(v)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// payloadValue is a payload for JSON output: itself when it is valid JSON,
// else its base64 string; nil when empty.
func payloadValue(p []byte) any {
	if len(p) == 0 {
		return nil
	}
	if json.Valid(p) {
		return json.RawMessage(p)
	}
	return base64.StdEncoding.EncodeToString(p)
}

// parseReason accepts a reason as the library spells it ("retries
// exhausted") or with dashes or underscores ("retries-exhausted").
func parseReason(s string) (deadletter.Reason, error) {
	if s == "" {
		return "", nil
	}
	norm := strings.ToLower(strings.NewReplacer("-", " ", "_", " ").Replace(s))
	for _, r := range []deadletter.Reason{deadletter.RetriesExhausted, deadletter.EventAgeExceeded, deadletter.Rejected} {
		if norm == string(r) {
			return r, nil
		}
	}
	return "", usageErr("unknown reason %q: want retries-exhausted, event-age-exceeded or rejected", s)
}

// eventJSON is a queued event in JSON output.
type eventJSON struct {
	ID         string                `json:"id"`
	State      string                `json:"state"`
	Function   string                `json:"function"`
	Qualifier  string                `json:"qualifier,omitempty"`
	Key        string                `json:"key,omitempty"`
	Attempts   int                   `json:"attempts"`
	Enqueued   time.Time             `json:"enqueued"`
	Due        time.Time             `json:"due"`
	Leased     bool                  `json:"leased"`
	LeaseUntil *time.Time            `json:"leaseUntil,omitempty"`
	LastError  *deadletter.ErrorInfo `json:"lastError,omitempty"`
	Size       int                   `json:"size"`
	Payload    any                   `json:"payload,omitempty"`
}

func toEventJSON(e dispatcher.QueuedEvent, withPayload bool) eventJSON {
	leased := e.State == dispatcher.StateLeased
	j := eventJSON{
		ID: e.ID, State: string(e.State), Function: e.Function, Qualifier: e.Qualifier,
		Key: e.Key, Attempts: e.Attempts, Enqueued: e.Enqueued.UTC(), Due: e.Due.UTC(), Leased: leased, Size: e.Size,
	}
	if leased {
		t := e.LeaseUntil.UTC()
		j.LeaseUntil = &t
	}
	if !e.LastError.IsZero() {
		le := e.LastError
		j.LastError = &le
	}
	if withPayload {
		j.Payload = payloadValue(e.Payload)
	}
	return j
}

// letterJSON is a dead letter in JSON output.
type letterJSON struct {
	ID           string               `json:"id"`
	State        string               `json:"state"`
	Reason       deadletter.Reason    `json:"reason"`
	Function     string               `json:"function"`
	Qualifier    string               `json:"qualifier,omitempty"`
	Key          string               `json:"key,omitempty"`
	Attempts     int                  `json:"attempts"`
	Enqueued     time.Time            `json:"enqueued"`
	FirstAttempt *time.Time           `json:"firstAttempt,omitempty"`
	LastAttempt  *time.Time           `json:"lastAttempt,omitempty"`
	DeadLettered time.Time            `json:"deadLettered"`
	LastError    deadletter.ErrorInfo `json:"lastError"`
	Size         int                  `json:"size"`
	Payload      any                  `json:"payload,omitempty"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func toLetterJSON(l deadletter.Letter, withPayload bool) letterJSON {
	j := letterJSON{
		ID: l.ID, State: "dead", Reason: l.Reason, Function: l.Function, Qualifier: l.Qualifier, Key: l.Key,
		Attempts: l.Attempts, Enqueued: l.Enqueued.UTC(), FirstAttempt: optTime(l.FirstAttempt), LastAttempt: optTime(l.LastAttempt),
		DeadLettered: l.DeadLettered.UTC(), LastError: l.LastError, Size: len(l.Payload),
	}
	if withPayload {
		j.Payload = payloadValue(l.Payload)
	}
	return j
}
