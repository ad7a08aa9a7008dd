package deadletter

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func sampleLetter() Letter {
	at := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	return Letter{
		ID: "42", Function: "arn:aws:lambda:eu-west-1:123456789012:function:orders", Qualifier: "prod",
		Key: "order-42", Payload: []byte(`{"order":"o-42","note":"<&>"}`), Enqueued: at,
		Reason: RetriesExhausted, Attempts: 3, FirstAttempt: at.Add(time.Second), LastAttempt: at.Add(time.Minute),
		LastError:    ErrorInfo{Code: "TooManyRequestsException", Message: "Rate exceeded", StatusCode: 429, RequestID: "a1b2"},
		DeadLettered: at.Add(2 * time.Minute),
	}
}

func TestLetterRoundTrip(t *testing.T) {
	t.Parallel()
	paris := time.FixedZone("CET", 3600)
	for name, l := range map[string]Letter{
		"Full":    sampleLetter(),
		"Minimal": {ID: "0", Function: "fn", Reason: Rejected},
		"MaxID":   {ID: "18446744073709551615", Function: "fn", Reason: EventAgeExceeded, Enqueued: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)},
		"BinaryPayload": {
			ID: "7", Function: "fn", Reason: Rejected, Payload: []byte{0, 0xff, 0xfe, '"', '\\'},
			LastError: ErrorInfo{Message: "read tcp: connection reset"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			key, value, err := encodeLetter(l)
			require.NoError(t, err)
			require.Len(t, key, 8)
			require.Equal(t, byte(letterVersion), value[0])
			id, err := keyID(key)
			require.NoError(t, err)
			require.Equal(t, l.ID, id)
			got, err := decodeLetter(id, value)
			require.NoError(t, err)
			require.Equal(t, l, got)
		})
	}
	t.Run("NormalizesTimesAndEmptyPayload", func(t *testing.T) {
		t.Parallel()
		l := sampleLetter()
		local := time.Now().In(paris) // with a monotonic reading and a zone
		l.Enqueued, l.Payload = local, []byte{}
		_, value, err := encodeLetter(l)
		require.NoError(t, err)
		got, err := decodeLetter(l.ID, value)
		require.NoError(t, err)
		require.True(t, got.Enqueued.Equal(local))
		require.Equal(t, time.UTC, got.Enqueued.Location())
		require.Nil(t, got.Payload)
	})
	t.Run("ErrorTextMadeValid", func(t *testing.T) {
		t.Parallel()
		l := sampleLetter()
		l.LastError.Message = "bad \xff byte"
		_, value, err := encodeLetter(l)
		require.NoError(t, err)
		got, err := decodeLetter(l.ID, value)
		require.NoError(t, err)
		require.Equal(t, "bad \uFFFD byte", got.LastError.Message)
	})
}

func TestEncodeLetterRefusesWhatItCannotKeep(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		edit func(*Letter)
		want string
	}{
		"EmptyID":       {func(l *Letter) { l.ID = "" }, `ID: "" is not a decimal`},
		"LeadingZero":   {func(l *Letter) { l.ID = "042" }, `ID: "042" is not a decimal`},
		"Sign":          {func(l *Letter) { l.ID = "+42" }, `ID: "+42"`},
		"Negative":      {func(l *Letter) { l.ID = "-1" }, `ID: "-1"`},
		"NotANumber":    {func(l *Letter) { l.ID = "evt-1" }, `ID: "evt-1"`},
		"Overflow":      {func(l *Letter) { l.ID = "18446744073709551616" }, `ID: "18446744073709551616"`},
		"NoFunction":    {func(l *Letter) { l.Function = "" }, "empty Function"},
		"NoReason":      {func(l *Letter) { l.Reason = "" }, "empty Reason"},
		"KeyNotUTF8":    {func(l *Letter) { l.Key = "k\xff" }, "Key: not valid UTF-8"},
		"NegativeTries": {func(l *Letter) { l.Attempts = -1 }, "negative Attempts (-1)"},
		"YearTooLate":   {func(l *Letter) { l.DeadLettered = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, "DeadLettered: year 10000"},
		"YearNegative":  {func(l *Letter) { l.FirstAttempt = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) }, "FirstAttempt: year -1"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			l := sampleLetter()
			tc.edit(&l)
			_, _, err := encodeLetter(l)
			require.ErrorIs(t, err, ErrInvalidLetter)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestDecodeLetterNamesTheFault(t *testing.T) {
	t.Parallel()
	_, good, err := encodeLetter(sampleLetter())
	require.NoError(t, err)
	v1 := func(s string) []byte { return append([]byte{letterVersion}, s...) }
	for name, tc := range map[string]struct {
		in   []byte
		want string
	}{
		"Empty":         {nil, "empty value"},
		"FutureVersion": {append([]byte{2}, good[1:]...), "unknown format version 2 (this library reads 1)"},
		"NotJSON":       {v1("not json"), "version 1: invalid character"},
		"Truncated":     {good[:len(good)/2], "version 1: unexpected end of JSON input"},
		"Trailing":      {append(append([]byte{}, good...), " {}"...), "invalid character '{' after top-level value"},
		"WrongType":     {v1(`{"function":"fn","reason":"rejected","attempts":"3"}`), "attempts"},
		"BadBase64":     {v1(`{"function":"fn","reason":"rejected","payload":"!!"}`), "illegal base64"},
		"BadTime":       {v1(`{"function":"fn","reason":"rejected","enqueued":"yesterday"}`), "enqueued: parsing time"},
		"Null":          {v1(`null`), "empty Function"},
		"NoReason":      {v1(`{"function":"fn"}`), "empty Reason"},
		"Negative":      {v1(`{"function":"fn","reason":"rejected","attempts":-2}`), "negative Attempts (-2)"},
		"YearBelowZero": {v1(`{"function":"fn","reason":"r","enqueued":"0000-01-01T00:00:00+01:00"}`), "Enqueued: year -1"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := decodeLetter("9", tc.in)
			var ce *CorruptError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, "9", ce.ID)
			require.ErrorContains(t, err, "deadletter: corrupt letter 9: ")
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestDecodeLetterIgnoresUnknownFields(t *testing.T) {
	t.Parallel()
	l, err := decodeLetter("3", []byte("\x01"+`{"function":"fn","reason":"rejected","redriven":2,"note":{"a":[1]}}`))
	require.NoError(t, err)
	require.Equal(t, Letter{ID: "3", Function: "fn", Reason: Rejected}, l)
}

func TestKeyID(t *testing.T) {
	t.Parallel()
	k, err := idKey("258")
	require.NoError(t, err)
	require.Equal(t, []byte{0, 0, 0, 0, 0, 0, 1, 2}, k)
	_, err = keyID([]byte("abc"))
	var ce *CorruptError
	require.ErrorAs(t, err, &ce)
	require.Empty(t, ce.ID)
	require.EqualError(t, err, "deadletter: corrupt letter: key 616263 is 3 bytes, want 8")
	// Keys sort as the numbers do.
	a, _ := idKey("9")
	b, _ := idKey("10")
	require.Negative(t, strings.Compare(string(a), string(b)))
	require.Equal(t, uint64(10), binary.BigEndian.Uint64(b))
}

// FuzzDecodeLetter: the decoder never panics, every error it returns is a
// *CorruptError, and whatever it accepts encodes again and decodes to the
// same letter, whose encoding is then a fixed point. The seed corpus is in
// testdata/fuzz/FuzzDecodeLetter and runs with every go test.
func FuzzDecodeLetter(f *testing.F) {
	_, good, err := encodeLetter(sampleLetter())
	require.NoError(f, err)
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := decodeLetter("1", b)
		if err != nil {
			var ce *CorruptError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, "1", ce.ID)
			return
		}
		require.Equal(t, "1", l.ID)
		_, again, err := encodeLetter(l)
		require.NoError(t, err, "decoded %q but cannot encode it", b)
		l2, err := decodeLetter("1", again)
		require.NoError(t, err)
		require.Equal(t, l, l2)
		_, third, err := encodeLetter(l2)
		require.NoError(t, err)
		require.Equal(t, again, third)
	})
}
