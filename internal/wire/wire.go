// Package wire holds the JSON shapes of the dispatcher's admin API, which
// dispatchctl prints too, so that a script written against one reads the
// other: camelCase names, reasons and states as stable identifiers, times
// in RFC 3339, and payloads as JSON when they are JSON.
package wire

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/lambdadispatch/dispatcher/internal/jsonvalid"
	"github.com/lambdadispatch/dispatcher/retry"
	"github.com/lambdadispatch/dispatcher/store"
)

// Event is a queued event.
type Event struct {
	ID              string           `json:"id"`
	State           string           `json:"state"` // ready, scheduled or leased
	Function        string           `json:"function"`
	Qualifier       string           `json:"qualifier,omitempty"`
	Key             string           `json:"key,omitempty"`
	Priority        int              `json:"priority"`
	Attempts        int              `json:"attempts"`
	Enqueued        time.Time        `json:"enqueued"`
	Due             time.Time        `json:"due"`
	FirstAttempt    *time.Time       `json:"firstAttempt,omitempty"`
	LastAttempt     *time.Time       `json:"lastAttempt,omitempty"`
	LeaseUntil      *time.Time       `json:"leaseUntil,omitempty"`
	LastError       *store.ErrorInfo `json:"lastError,omitempty"`
	Size            int              `json:"size"`
	Payload         json.RawMessage  `json:"payload,omitempty"`
	PayloadEncoding string           `json:"payloadEncoding,omitempty"`
}

// Letter is a dead letter.
type Letter struct {
	ID              string           `json:"id"`
	State           string           `json:"state"` // always "dead"
	Reason          string           `json:"reason"`
	Function        string           `json:"function"`
	Qualifier       string           `json:"qualifier,omitempty"`
	Key             string           `json:"key,omitempty"`
	Attempts        int              `json:"attempts"`
	Enqueued        time.Time        `json:"enqueued"`
	FirstAttempt    *time.Time       `json:"firstAttempt,omitempty"`
	LastAttempt     *time.Time       `json:"lastAttempt,omitempty"`
	DeadLettered    time.Time        `json:"deadLettered"`
	LastError       *store.ErrorInfo `json:"lastError,omitempty"`
	Size            int              `json:"size"`
	Payload         json.RawMessage  `json:"payload,omitempty"`
	PayloadEncoding string           `json:"payloadEncoding,omitempty"`
}

// Eviction is a record of the eviction ledger.
type Eviction struct {
	ID       string    `json:"id"`
	State    string    `json:"state"` // always "evicted"
	Function string    `json:"function"`
	Key      string    `json:"key,omitempty"`
	Priority int       `json:"priority"`
	Enqueued time.Time `json:"enqueued"`
	Evicted  time.Time `json:"evicted"`
	Reason   string    `json:"reason"`
	Size     int64     `json:"size"`
}

// Function is one function's figures.
type Function struct {
	Function     string `json:"function"`
	Paused       bool   `json:"paused"`
	Ready        int64  `json:"ready"`
	Scheduled    int64  `json:"scheduled"`
	InFlight     int64  `json:"inFlight"`
	Limit        int    `json:"limit"`
	Delivered    uint64 `json:"delivered"`
	DeadLettered uint64 `json:"deadLettered"`
	Throttled    uint64 `json:"throttled"`
	// MaxInFlight and PerSecond are the configured limits
	// (WithFunctionLimit); 0 where none was set.
	MaxInFlight int     `json:"maxInFlight"`
	PerSecond   float64 `json:"perSecond"`
}

// Stats is the dispatcher's snapshot: counts held now, then totals since
// Open (zero when read from a file no dispatcher runs on).
type Stats struct {
	Ready       int64  `json:"ready"`
	Scheduled   int64  `json:"scheduled"`
	Leased      int64  `json:"leased"`
	Queued      int64  `json:"queued"`
	Bytes       int64  `json:"bytes"`
	Corrupt     int64  `json:"corrupt"`
	DeadLetters int    `json:"deadLetters"` // letters held now
	Keys        uint64 `json:"keys"`
	FileSize    int64  `json:"fileSize"`

	Enqueued          uint64            `json:"enqueued"`
	Delivered         uint64            `json:"delivered"`
	Retried           uint64            `json:"retried"`
	DeadLettered      uint64            `json:"deadLettered"`
	DeadLetteredBy    map[string]uint64 `json:"deadLetteredBy"`
	Recovered         uint64            `json:"recovered"`
	Cancelled         uint64            `json:"cancelled"`
	Evicted           uint64            `json:"evicted"`
	Commits           uint64            `json:"commits"`
	Throttled         uint64            `json:"throttled"`
	InFlightLimit     int               `json:"inFlightLimit"`
	Paused            bool              `json:"paused"`
	Running           bool              `json:"running"`
	DuplicatesRefused uint64            `json:"duplicatesRefused"`
	DuplicatesSkipped uint64            `json:"duplicatesSkipped"`
	KeysSwept         uint64            `json:"keysSwept"`
	KeysEvicted       uint64            `json:"keysEvicted"`
	Shared            Shared            `json:"shared"`
	Functions         []Function        `json:"functions"`
}

// Shared is the traffic with a shared key window.
type Shared struct {
	Claims       uint64 `json:"claims"`
	Waits        uint64 `json:"waits"`
	Lost         uint64 `json:"lost"`
	Unconfirmed  int    `json:"unconfirmed"`
	Unavailable  uint64 `json:"unavailable"`
	MarksSkipped uint64 `json:"marksSkipped"`
}

// Rates is what happened in each recent interval, oldest first.
type Rates struct {
	IntervalSeconds int     `json:"intervalSeconds"`
	Points          []Point `json:"points"`
}

// Point is one interval's counts; AgeSeconds is how long ago it ended.
type Point struct {
	AgeSeconds   int    `json:"ageSeconds"`
	Enqueued     uint64 `json:"enqueued"`
	Delivered    uint64 `json:"delivered"`
	DeadLettered uint64 `json:"deadLettered"`
	Retried      uint64 `json:"retried"`
}

// Page is one page of a list; Next is the cursor of the following page,
// "" on the last.
type Page[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next"`
}

// Error is the body of every answer that is not a success.
type Error struct {
	Error string `json:"error"`
}

// Counts answering actions.
type (
	Cancelled struct {
		Cancelled int `json:"cancelled"`
	}
	Redriven struct {
		Redriven int `json:"redriven"`
	}
	Purged struct {
		Purged int `json:"purged"`
	}
	Paused struct {
		Function string `json:"function"`
		Paused   bool   `json:"paused"`
	}
)

// The states as printed: a queued event's are the library's own.
const (
	StateDead    = "dead"
	StateEvicted = "evicted"
)

// knownReasons are the reasons with a stable identifier.
var knownReasons = []retry.Reason{retry.ReasonRetriesExhausted, retry.ReasonEventAgeExceeded, retry.ReasonRejected}

// ReasonID is a reason's stable identifier: "retries exhausted" is
// "retries-exhausted". Identifiers are lowercase words joined by dashes,
// so that they survive URLs, shells and metric labels unquoted.
func ReasonID(r retry.Reason) string {
	return strings.ReplaceAll(strings.ToLower(string(r)), " ", "-")
}

// ReasonIDs lists the identifiers ParseReason accepts, for messages.
func ReasonIDs() string {
	ids := make([]string, len(knownReasons))
	for i, r := range knownReasons {
		ids[i] = ReasonID(r)
	}
	return strings.Join(ids, ", ")
}

// ParseReason reads a reason by its identifier, or as the library spells
// it ("retries exhausted"), or with underscores; "" is no reason. Any
// other value is an error: a filter that silently matches nothing hides
// a typo.
func ParseReason(s string) (retry.Reason, error) {
	if s == "" {
		return "", nil
	}
	id := strings.ToLower(strings.NewReplacer("_", "-", " ", "-").Replace(s))
	for _, r := range knownReasons {
		if id == ReasonID(r) {
			return r, nil
		}
	}
	return "", fmt.Errorf("unknown reason %q: want %s", s, ReasonIDs())
}

// Payload returns p as the API shows it: itself and "json" when it is
// valid JSON and base64 was not asked for, else a base64 string and
// "base64"; nothing for an empty payload.
func Payload(p []byte, forceBase64 bool) (json.RawMessage, string) {
	if len(p) == 0 {
		return nil, ""
	}
	if !forceBase64 && jsonvalid.Valid(p) {
		return json.RawMessage(p), "json"
	}
	b, _ := json.Marshal(base64.StdEncoding.EncodeToString(p))
	return b, "base64"
}

// DecodePayload undoes Payload: the bytes enqueued.
func DecodePayload(raw json.RawMessage, encoding string) ([]byte, error) {
	switch encoding {
	case "", "json":
		return raw, nil
	case "base64":
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("base64 payload is not a JSON string: %w", err)
		}
		return base64.StdEncoding.DecodeString(s)
	}
	return nil, fmt.Errorf("unknown payload encoding %q", encoding)
}

// Time returns &t in UTC, or nil for the zero time, for the optional
// times of the shapes above.
func Time(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// ErrorInfo returns &e, or nil when no error is recorded.
func ErrorInfo(e store.ErrorInfo) *store.ErrorInfo {
	if e.IsZero() {
		return nil
	}
	return &e
}
