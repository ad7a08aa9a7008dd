package wire

import (
	"bytes"
	"testing"

	"github.com/lambdadispatch/dispatcher/retry"
)

func TestParseReason(t *testing.T) {
	for in, want := range map[string]retry.Reason{
		"":                   "",
		"retries-exhausted":  retry.ReasonRetriesExhausted,
		"retries exhausted":  retry.ReasonRetriesExhausted,
		"Event_Age_Exceeded": retry.ReasonEventAgeExceeded,
		"rejected":           retry.ReasonRejected,
	} {
		got, err := ParseReason(in)
		if err != nil || got != want {
			t.Errorf("ParseReason(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"bogus", "retries", "rejected ", "-"} {
		if _, err := ParseReason(in); err == nil {
			t.Errorf("ParseReason(%q) accepted", in)
		}
	}
	if ReasonID(retry.ReasonEventAgeExceeded) != "event-age-exceeded" {
		t.Errorf("ReasonID = %q", ReasonID(retry.ReasonEventAgeExceeded))
	}
}

// FuzzPayload checks that what Payload writes, DecodePayload reads back
// byte for byte, in either encoding, and that ParseReason accepts only
// what ReasonID writes.
func FuzzPayload(f *testing.F) {
	for _, s := range []string{``, `{"a":1}`, `[1,2]`, `"x"`, "\xff\x00", `{"a":`, ` 1 `} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, p []byte, b64 bool) {
		raw, enc := Payload(p, b64)
		if len(p) == 0 {
			if raw != nil || enc != "" {
				t.Fatalf("empty payload gave %q %q", raw, enc)
			}
			return
		}
		back, err := DecodePayload(raw, enc)
		if err != nil {
			t.Fatalf("DecodePayload(%q, %q): %v", raw, enc, err)
		}
		if !bytes.Equal(back, p) {
			t.Fatalf("round trip %q -> %q", p, back)
		}
		if r, err := ParseReason(string(p)); err == nil && r != "" && ReasonID(r) == "" {
			t.Fatalf("ParseReason(%q) = %q without an id", p, r)
		}
	})
}
