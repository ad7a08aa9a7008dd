package store

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

func sampleRecord() *record {
	return &record{
		state: stateLeased, attempts: 2, enqueued: 1_700_000_000_000_000_000, due: 1_700_000_001_000_000_000,
		firstAttempt: 1_700_000_000_500_000_000, lastAttempt: 1_700_000_001_500_000_000, leaseUntil: 1_700_000_060_000_000_000,
		function: "arn:aws:lambda:eu-west-1:123456789012:function:orders", qualifier: "prod", key: "order-42",
		payloadLen: 17, payloadCRC: checksum([]byte(`{"order":"o-42"}`)),
		lastErr: ErrorInfo{Code: "TooManyRequestsException", Message: "Rate exceeded", Status: 429, RequestID: "a1b2"},
	}
}

func TestRecordRoundTrip(t *testing.T) {
	t.Parallel()
	for _, r := range []*record{{}, {state: stateReady, function: "fn", due: -5}, sampleRecord()} {
		b := r.encode(nil)
		require.Equal(t, byte(recordVersion), b[0])
		got, err := decodeRecord(b)
		require.NoError(t, err)
		require.Equal(t, *r, got)
	}
}

func TestDecodeRecordNamesTheFault(t *testing.T) {
	t.Parallel()
	good := sampleRecord().encode(nil)
	for name, tc := range map[string]struct {
		in   []byte
		want string
	}{
		"Empty":          {nil, "empty record"},
		"FutureVersion":  {[]byte{recordVersion + 1}, "unknown record version 2"},
		"UnknownState":   {[]byte{recordVersion, 9}, "state: unknown state 9"},
		"Truncated":      {good[:20], "truncated"},
		"TrailingBytes":  {append(append([]byte{}, good...), 0), "end: 1 trailing bytes"},
		"HugeString":     {append([]byte{recordVersion, 0, 0, 0, 0, 0, 0, 0}, 0xff, 0xff, 0xff, 0x0f), "function length: value"},
		"StringTooShort": {[]byte{recordVersion, 0, 0, 0, 0, 0, 0, 0, 5, 'a'}, "function: length 5 but 1 bytes left"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := decodeRecord(tc.in)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// FuzzDecodeRecord: the decoder never panics, and whatever it accepts
// encodes back to the same bytes. The seed corpus is in
// testdata/fuzz/FuzzDecodeRecord and runs with every go test.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(sampleRecord().encode(nil))
	f.Add((&record{}).encode(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		// The skim an ack uses must agree with the full decode.
		h, err := skimRecord(b)
		if err != nil {
			t.Fatalf("decodes but does not skim: %v", err)
		}
		if h.state != r.state || h.due != r.due || h.size != r.size() || string(h.key) != r.key {
			t.Fatalf("skim %+v, decode %+v", h, r)
		}
		if again := r.encode(nil); !bytes.Equal(again, b) {
			// Varints have one canonical form each, so a record that
			// decodes must be the encoding of what it decoded to.
			t.Fatalf("decoded %x but re-encodes as %x", b, again)
		}
	})
}
