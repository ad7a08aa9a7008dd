package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

func sampleRecord() *record {
	return &record{
		state: stateLeased, attempts: 2, enqueued: 1_700_000_000_000_000_000, due: 1_700_000_001_000_000_000,
		firstAttempt: 1_700_000_000_500_000_000, lastAttempt: 1_700_000_001_500_000_000, leaseUntil: 1_700_000_060_000_000_000,
		function: "arn:aws:lambda:eu-west-1:123456789012:function:orders", qualifier: "prod", key: "order-42",
		payloadLen: 17, payloadCRC: checksum([]byte(`{"order":"o-42"}`)),
		lastErr: ErrorInfo{Code: "TooManyRequestsException", Message: "Rate exceeded", StatusCode: 429, RequestID: "a1b2"},
	}
}

func TestRecordRoundTrip(t *testing.T) {
	t.Parallel()
	cancelled := sampleRecord()
	cancelled.priority, cancelled.cancelled = MinPriority, true
	for _, r := range []*record{{}, {state: stateReady, function: "fn", due: -5, priority: MaxPriority}, sampleRecord(), cancelled} {
		b := r.encode(nil)
		require.Equal(t, byte(recordVersion), b[0])
		got, err := decodeRecord(b)
		require.NoError(t, err)
		require.Equal(t, *r, got)
		h, err := skimRecord(b)
		require.NoError(t, err)
		require.Equal(t, []any{r.priority, r.cancelled, r.due, r.size()}, []any{h.priority, h.cancelled, h.due, h.size})
	}
}

// TestDecodeRecordV2: records written before priorities read as
// priority 0, not cancelled.
func TestDecodeRecordV2(t *testing.T) {
	t.Parallel()
	v2, err := os.ReadFile("testdata/fuzz/FuzzDecodeRecord/v2-valid-full")
	require.NoError(t, err)
	b, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(strings.SplitN(string(v2), "\n", 2)[1], "[]byte("), ")\n"))
	require.NoError(t, err)
	got, err := decodeRecord([]byte(b))
	require.NoError(t, err)
	require.Equal(t, *sampleRecord(), got)
	require.Equal(t, []byte(b), sampleRecord().encodeV2(nil))
}

// sealed turns the fields of a hand-made record (version byte first,
// the fields of version 1 or 2) into a version 2 record with a good
// checksum, so that a test reaches the field it means to break.
func sealed(b []byte) []byte {
	b = append([]byte{recordV2}, b[1:]...)
	return binary.BigEndian.AppendUint32(b, checksum(b))
}

// sealedV3 is sealed for the fields of version 3.
func sealedV3(b []byte) []byte { return binary.BigEndian.AppendUint32(b, checksum(b)) }

// TestDecodeRecordV1: files written before record checksums still read.
func TestDecodeRecordV1(t *testing.T) {
	t.Parallel()
	// sampleRecord as version 1 wrote it, by hand, not by encodeV1.
	v1 := []byte("\x01\x01\x02\x80\x80\xd0\xe2ƿΗ/\x80\xa8\xa6\x9cοΗ/\x80\x94\xbb\xbfʿΗ/\x80\xbc\x91\xf9ѿΗ/\x80\xe0\x8a\xe7\x85\xc3Η/5arn:aws:lambda:eu-west-1:123456789012:function:orders\x04prod\border-42\x11M\xbb\x9c\xc7\x01\x18TooManyRequestsException\rRate exceeded\xad\x03\x04a1b2")
	got, err := decodeRecord(v1)
	require.NoError(t, err)
	require.Equal(t, *sampleRecord(), got)
	h, err := skimRecord(v1)
	require.NoError(t, err)
	require.Equal(t, "order-42", string(h.key))
	require.Equal(t, v1, sampleRecord().encodeV1(nil))
}

// TestRecordChecksum: one flipped bit anywhere in a v2 record fails it.
func TestRecordChecksum(t *testing.T) {
	t.Parallel()
	good := sampleRecord().encode(nil)
	for i := range good {
		for bit := range 8 {
			b := bytes.Clone(good)
			b[i] ^= 1 << bit
			_, err := decodeRecord(b)
			require.Error(t, err, "byte %d bit %d", i, bit)
			_, err = skimRecord(b)
			require.Error(t, err, "skim: byte %d bit %d", i, bit)
		}
	}
	at := bytes.Index(good, []byte("orders"))
	good[at+1] ^= 0x20 // orders → oRders
	_, err := decodeRecord(good)
	require.ErrorContains(t, err, "record checksum mismatch")
}

func TestDecodeRecordNamesTheFault(t *testing.T) {
	t.Parallel()
	good := sampleRecord().encode(nil)
	v1 := sampleRecord().encodeV1(nil)
	for name, tc := range map[string]struct {
		in   []byte
		want string
	}{
		"Empty":            {nil, "empty record"},
		"FutureVersion":    {[]byte{recordVersion + 1}, fmt.Sprintf("unknown record version %d", recordVersion+1)},
		"ChecksumMismatch": {append(bytes.Clone(good[:len(good)-1]), good[len(good)-1]^1), "record checksum mismatch"},
		"ChecksumCut":      {good[:3], "record checksum: truncated"},
		"UnknownState":     {sealed([]byte{recordV2, 9}), "state: unknown state 9"},
		"UnknownStateV1":   {[]byte{recordV1, 9}, "state: unknown state 9"},
		"Truncated":        {sealed(good[:20]), "truncated"},
		"TruncatedV1":      {v1[:20], "truncated"},
		"TrailingBytes":    {sealed(append(bytes.Clone(v1), 0)), "end: 1 trailing bytes"},
		"HugeString":       {sealed(append([]byte{recordV2, 0, 0, 0, 0, 0, 0, 0}, 0xff, 0xff, 0xff, 0x0f)), "function length: value"},
		"StringTooShort":   {sealed([]byte{recordV2, 0, 0, 0, 0, 0, 0, 0, 5, 'a'}), "function: length 5 but 1 bytes left"},
		"PriorityTooHigh":  {sealedV3([]byte{recordVersion, 0, MaxPriority + 1, 0}), "priority: 4 is out of range"},
		"PriorityTooLow":   {sealedV3([]byte{recordVersion, 0, 0xfc, 0}), "priority: -4 is out of range"},
		"UnknownFlags":     {sealedV3([]byte{recordVersion, 1, 0, 2}), "flags: unknown bits 0x2"},
		"TruncatedV3":      {sealedV3([]byte{recordVersion, 1, 0}), "flags: truncated"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := decodeRecord(tc.in)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// FuzzDecodeRecord: the decoder never panics, and whatever it accepts
// encodes back to the same bytes, in its version. The seed corpus is in
// testdata/fuzz/FuzzDecodeRecord and runs with every go test: v1 seeds
// from before record checksums, v2 seeds (named v2-*) after, among them a
// record whose function name lost a bit, and v3 seeds (v3-*) with
// priorities and the cancelled flag, good and bad.
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
		if h.state != r.state || h.due != r.due || h.size != r.size() || string(h.key) != r.key || h.priority != r.priority || h.cancelled != r.cancelled {
			t.Fatalf("skim %+v, decode %+v", h, r)
		}
		again := r.encode(nil)
		switch b[0] {
		case recordV1:
			again = r.encodeV1(nil)
		case recordV2:
			again = r.encodeV2(nil)
		}
		if !bytes.Equal(again, b) {
			// Varints have one canonical form each, so a record that
			// decodes must be the encoding of what it decoded to.
			t.Fatalf("decoded %x but re-encodes as %x", b, again)
		}
	})
}

// TestFlippedFunctionIsSetAside: an event for "orders" whose record lost a
// bit on disk is not sent to "oRders": Lease sets it aside and counts it.
func TestFlippedFunctionIsSetAside(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, Options{})
	seqs := enqueue(t, b.st, NewEvent{Function: "orders", Payload: []byte(`{"id":1}`)}, NewEvent{Function: "billing"})
	require.NoError(t, b.st.Close())
	rawUpdate(t, b.path, func(tx *bolt.Tx) error {
		events := tx.Bucket(bucketEvents)
		rec := bytes.Clone(events.Get(seqKey(seqs[0])))
		at := bytes.Index(rec, []byte("orders"))
		require.GreaterOrEqual(t, at, 0)
		rec[at+1] ^= 0x20 // orders → oRders
		return events.Put(seqKey(seqs[0]), rec)
	})
	st, err := Open(b.path, Options{Now: b.clock.Now})
	require.NoError(t, err)
	b.st = st

	got, err := st.Lease(ctx, 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, "billing", got[0].Function, "nothing is leased for oRders")
	s := stats(t, st)
	require.Equal(t, int64(1), s.Corrupt)
	require.Equal(t, int64(1), s.Events)
	require.NoError(t, st.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketCorrupt).Get(seqKey(seqs[0]))
		require.NotNil(t, v, "set aside in the corrupt bucket")
		require.Contains(t, string(v), "record checksum mismatch")
		return nil
	}))
}

func TestErrorInfoString(t *testing.T) {
	require.Equal(t, "", ErrorInfo{}.String())
	require.Equal(t, "ServiceException (HTTP 500, request r-1): boom", ErrorInfo{Code: "ServiceException", StatusCode: 500, RequestID: "r-1", Message: "boom"}.String())
	require.Equal(t, "error: dial tcp: connection refused", ErrorInfo{Message: "dial tcp: connection refused"}.String())
	require.Equal(t, "ResourceNotFoundException (HTTP 404)", ErrorInfo{Code: "ResourceNotFoundException", StatusCode: 404}.String())
}

// FuzzDecodeEviction: the ledger's decoder never panics, and whatever it
// accepts encodes back to the same bytes. Seeds in
// testdata/fuzz/FuzzDecodeEviction.
func FuzzDecodeEviction(f *testing.F) {
	f.Add(encodeEviction(Eviction{Function: "fn", Key: "k", Priority: 1, PayloadSize: 3, Enqueued: time.Unix(0, 5)}, reasonFull))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEviction(1, b)
		if err != nil {
			return
		}
		if again := encodeEviction(e, reasonFull); !bytes.Equal(again, b) {
			t.Fatalf("decoded %x but re-encodes as %x", b, again)
		}
	})
}
