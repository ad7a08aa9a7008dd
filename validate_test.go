package dispatcher

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher/internal/lambdaname"
)

const testARNPrefix = "arn:aws:lambda:us-east-1:123456789012:function:"

// jsonOfSize returns a JSON string document exactly n bytes long (n >= 2).
func jsonOfSize(n int) []byte {
	return []byte(`"` + strings.Repeat("a", n-2) + `"`)
}

func TestValidateEventAccepts(t *testing.T) {
	t.Parallel()

	name64 := strings.Repeat("f", 64)
	// 47 + 64 + 1 + 58 = 170 characters.
	arn170 := testARNPrefix + name64 + ":" + strings.Repeat("q", 58)

	tests := []struct {
		name  string
		event Event
	}{
		{"Name", Event{Function: "my-function"}},
		{"NameWithUnderscoreAndDigits", Event{Function: "My_Function_2"}},
		{"NameWithDot", Event{Function: "my.function"}},
		{"Name64", Event{Function: name64}},
		{"NameWithAlias", Event{Function: "my-function:prod"}},
		{"NameWithVersion", Event{Function: "my-function:42"}},
		{"NameWithLatest", Event{Function: "my-function:$LATEST"}},
		{"NameArnWithAlias", Event{Function: "arn:prod"}}, // a function may be named "arn"
		{"NameWithQualifierField", Event{Function: "my-function", Qualifier: "prod"}},
		{"QualifierFieldLatest", Event{Function: "my-function", Qualifier: "$LATEST"}},
		{"QualifierFieldVersion", Event{Function: "my-function", Qualifier: "7"}},
		{"QualifierField128", Event{Function: "my-function", Qualifier: strings.Repeat("q", 128)}},
		{"MatchingQualifiers", Event{Function: "my-function:prod", Qualifier: "prod"}},
		{"MatchingLatest", Event{Function: testARNPrefix + "fn:$LATEST", Qualifier: "$LATEST"}},
		{"PartialARN", Event{Function: "123456789012:function:my-function"}},
		{"PartialARNWithVersion", Event{Function: "123456789012:function:my-function:3"}},
		{"FullARN", Event{Function: testARNPrefix + "my-function"}},
		{"FullARNWithAlias", Event{Function: testARNPrefix + "my-function:live"}},
		{"FullARNWithLatest", Event{Function: testARNPrefix + "my-function:$LATEST"}},
		{"FullARN170", Event{Function: arn170}},
		{"GovCloud", Event{Function: "arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:fn"}},
		{"China", Event{Function: "arn:aws-cn:lambda:cn-north-1:123456789012:function:fn"}},
		{"ChinaNorthwest", Event{Function: "arn:aws-cn:lambda:cn-northwest-1:123456789012:function:fn:1"}},
		{"ISO", Event{Function: "arn:aws-iso:lambda:us-iso-east-1:123456789012:function:fn"}},
		{"ISOB", Event{Function: "arn:aws-iso-b:lambda:us-isob-east-1:123456789012:function:fn"}},
		{"ISOE", Event{Function: "arn:aws-iso-e:lambda:eu-isoe-west-1:123456789012:function:fn"}},
		{"ISOF", Event{Function: "arn:aws-iso-f:lambda:us-isof-south-1:123456789012:function:fn"}},
		{"EuropeanSovereignCloud", Event{Function: "arn:aws-eusc:lambda:eusc-de-east-1:123456789012:function:fn"}},
		{"TwoDigitRegionNumber", Event{Function: "arn:aws:lambda:ap-southeast-10:123456789012:function:fn"}},
		{"NilPayload", Event{Function: "fn", Payload: nil}},
		{"EmptyPayload", Event{Function: "fn", Payload: []byte{}}},
		{"ObjectPayload", Event{Function: "fn", Payload: []byte(`{"order":42,"items":["a","b"]}`)}},
		{"ScalarPayload", Event{Function: "fn", Payload: []byte(`"hello"`)}},
		{"NullPayload", Event{Function: "fn", Payload: []byte(`null`)}},
		{"PayloadWithWhitespace", Event{Function: "fn", Payload: []byte(" {}\n")}},
		{"MaxSizePayload", Event{Function: "fn", Payload: jsonOfSize(DefaultMaxPayload)}},
		{"Key", Event{Function: "fn", Key: "order-42"}},
		{"UnicodeKey", Event{Function: "fn", Key: "commande-été-42"}},
		{"MaxKey", Event{Function: "fn", Key: strings.Repeat("k", MaxKeyLen)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := validateEvent(0, &tt.event, limits{maxPayload: DefaultMaxPayload})
			require.NoError(t, err)
		})
	}
}

func TestValidateEventRefuses(t *testing.T) {
	t.Parallel()

	name64 := strings.Repeat("f", 64)
	arn171 := testARNPrefix + name64 + ":" + strings.Repeat("q", 59)

	tests := []struct {
		name   string
		event  Event
		field  string
		reason string // the exact reason, when set
	}{
		{"EmptyFunction", Event{}, "Function", "function is required"},
		{"Name65", Event{Function: strings.Repeat("f", 65)}, "Function", "name is 65 characters, limit 64"},
		{"HugeName", Event{Function: strings.Repeat("f", 1000)}, "Function", "name is 1000 characters, limit 64"},
		{"NameWithSpace", Event{Function: "x y"}, "Function", `name "x y" has a character Lambda does not accept: ' '`},
		{"NameWithSlash", Event{Function: "a/b"}, "Function", ""},
		{"NameNonASCII", Event{Function: "fonction-é"}, "Function", `name "fonction-é" has a character Lambda does not accept: 'é'`},
		{"NameInvalidUTF8", Event{Function: "fn\xff"}, "Function", `name "fn\xff" has a character Lambda does not accept: byte 0xff`},
		{"EmptyName", Event{Function: ":prod"}, "Function", "function name is empty"},
		{"EmptyQualifierInFunction", Event{Function: "fn:"}, "Function", ""},
		{"DollarQualifierInFunction", Event{Function: "fn:$prod"}, "Function", ""},
		{"LowercaseLatestInFunction", Event{Function: "fn:$latest"}, "Function", ""},
		{"Qualifier129InFunction", Event{Function: "fn:" + strings.Repeat("q", 129)}, "Function", ""},
		{"TooManyParts", Event{Function: "fn:prod:extra"}, "Function", ""},
		{"FullARN171", Event{Function: arn171}, "Function", "function is 171 characters, limit 170"},
		{"FullARNNameTooLong", Event{Function: testARNPrefix + strings.Repeat("f", 65)}, "Function", "name is 65 characters, limit 64"},
		{"FullARNTooFewParts", Event{Function: "arn:aws:lambda:us-east-1:123456789012:function"}, "Function", ""},
		{"FullARNNoName", Event{Function: testARNPrefix}, "Function", "function name is empty"},
		{"WrongService", Event{Function: "arn:aws:s3:us-east-1:123456789012:function:fn"}, "Function", `ARN service is "s3", want "lambda"`},
		{"WrongResourceType", Event{Function: "arn:aws:lambda:us-east-1:123456789012:layer:fn"}, "Function", ""},
		{"WrongPartition", Event{Function: "arn:azure:lambda:us-east-1:123456789012:function:fn"}, "Function", ""},
		{"EmptyPartition", Event{Function: "arn::lambda:us-east-1:123456789012:function:fn"}, "Function", ""},
		{"PartitionWithDigit", Event{Function: "arn:aws2:lambda:us-east-1:123456789012:function:fn"}, "Function", ""},
		{"EmptyRegion", Event{Function: "arn:aws:lambda::123456789012:function:fn"}, "Function", ""},
		{"RegionWithoutNumber", Event{Function: "arn:aws:lambda:us-east:123456789012:function:fn"}, "Function", ""},
		{"RegionUppercase", Event{Function: "arn:aws:lambda:US-EAST-1:123456789012:function:fn"}, "Function", ""},
		{"RegionOneLetter", Event{Function: "arn:aws:lambda:u-east-1:123456789012:function:fn"}, "Function", ""},
		{"RegionNoMiddle", Event{Function: "arn:aws:lambda:us-1:123456789012:function:fn"}, "Function", ""},
		{"RegionDoubleDash", Event{Function: "arn:aws:lambda:us--east-1:123456789012:function:fn"}, "Function", ""},
		{"FullARN11DigitAccount", Event{Function: "arn:aws:lambda:us-east-1:12345678901:function:fn"}, "Function", `account id "12345678901" must be 12 digits`},
		{"FullARNLetterInAccount", Event{Function: "arn:aws:lambda:us-east-1:12345678901x:function:fn"}, "Function", ""},
		{"PartialARN11DigitAccount", Event{Function: "12345678901:function:fn"}, "Function", `account id "12345678901" must be 12 digits`},
		{"PartialARN13DigitAccount", Event{Function: "1234567890123:function:fn"}, "Function", ""},
		{"PartialARNWrongResource", Event{Function: "123456789012:functions:fn"}, "Function", ""},
		{"QualifierMismatch", Event{Function: "fn:prod", Qualifier: "dev"}, "Qualifier", `qualifier "dev" does not match "prod" in function`},
		{"QualifierMismatchARN", Event{Function: testARNPrefix + "fn:1", Qualifier: "$LATEST"}, "Qualifier", ""},
		{"Qualifier129", Event{Function: "fn", Qualifier: strings.Repeat("q", 129)}, "Qualifier", "qualifier is 129 characters, limit 128"},
		{"QualifierWithDot", Event{Function: "fn", Qualifier: "v1.2"}, "Qualifier", ""},
		{"QualifierWithColon", Event{Function: "fn", Qualifier: "a:b"}, "Qualifier", ""},
		{"InvalidJSON", Event{Function: "fn", Payload: []byte(`{"a":`)}, "Payload", "not valid JSON"},
		{"NotJSONText", Event{Function: "fn", Payload: []byte(`hello`)}, "Payload", "not valid JSON"},
		{"WhitespacePayload", Event{Function: "fn", Payload: []byte("  ")}, "Payload", "not valid JSON"},
		{"TwoJSONValues", Event{Function: "fn", Payload: []byte(`{}{}`)}, "Payload", "not valid JSON"},
		{"PayloadOverByOne", Event{Function: "fn", Payload: jsonOfSize(DefaultMaxPayload + 1)}, "Payload", "payload is 1048577 bytes, limit 1048576"},
		{"KeyTooLong", Event{Function: "fn", Key: strings.Repeat("k", MaxKeyLen+1)}, "Key", "key is 1025 bytes, limit 1024"},
		{"KeyInvalidUTF8", Event{Function: "fn", Key: "order-\xff"}, "Key", "key is not valid UTF-8"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := validateEvent(i, &tt.event, limits{maxPayload: DefaultMaxPayload})
			require.Error(t, err)
			require.ErrorIs(t, err, ErrInvalidEvent)
			var ve *ValidationError
			require.ErrorAs(t, err, &ve)
			require.Equal(t, tt.field, ve.Field)
			require.Equal(t, i, ve.Index)
			require.NotEmpty(t, ve.Reason)
			if tt.reason != "" {
				require.Equal(t, tt.reason, ve.Reason)
			}
		})
	}
}

func TestValidateEventLimits(t *testing.T) {
	t.Parallel()

	t.Run("CustomLimit", func(t *testing.T) {
		t.Parallel()
		l := limits{maxPayload: 256 << 10}
		require.NoError(t, validateEvent(0, &Event{Function: "fn", Payload: jsonOfSize(256 << 10)}, l))
		err := validateEvent(3, &Event{Function: "fn", Payload: jsonOfSize(256<<10 + 1)}, l)
		var ve *ValidationError
		require.ErrorAs(t, err, &ve)
		require.Equal(t, ValidationError{Index: 3, Field: "Payload", Reason: "payload is 262145 bytes, limit 262144"}, *ve)
	})

	t.Run("ZeroMeansDefault", func(t *testing.T) {
		t.Parallel()
		require.NoError(t, validateEvent(0, &Event{Function: "fn", Payload: jsonOfSize(DefaultMaxPayload)}, limits{}))
		err := validateEvent(0, &Event{Function: "fn", Payload: jsonOfSize(DefaultMaxPayload + 1)}, limits{})
		require.ErrorIs(t, err, ErrInvalidEvent)
	})

	t.Run("SizeCheckedBeforeJSON", func(t *testing.T) {
		t.Parallel()
		err := validateEvent(0, &Event{Function: "fn", Payload: []byte("not json at all")}, limits{maxPayload: 4})
		var ve *ValidationError
		require.ErrorAs(t, err, &ve)
		require.Equal(t, "payload is 15 bytes, limit 4", ve.Reason)
	})

	t.Run("NilEvent", func(t *testing.T) {
		t.Parallel()
		err := validateEvent(5, nil, limits{})
		var ve *ValidationError
		require.ErrorAs(t, err, &ve)
		require.Equal(t, "Function", ve.Field)
		require.Equal(t, 5, ve.Index)
	})

	t.Run("ErrorMessage", func(t *testing.T) {
		t.Parallel()
		err := validateEvent(2, &Event{Function: "fn", Key: "\xff"}, limits{})
		require.EqualError(t, err, "dispatcher: invalid event 2: Key: key is not valid UTF-8")
	})
}

func FuzzValidateEvent(f *testing.F) {
	f.Add("my-function", "", []byte(`{"a":1}`), "order-42")
	f.Add(testARNPrefix+"fn:prod", "prod", []byte(nil), "")
	f.Add("123456789012:function:fn", "$LATEST", []byte(`[1,2]`), "k")
	f.Add("arn:aws-iso-b:lambda:us-isob-east-1:123456789012:function:fn", "", []byte(`{`), "\xff")

	fields := map[string]bool{"Function": true, "Qualifier": true, "Payload": true, "Key": true}
	f.Fuzz(func(t *testing.T, function, qualifier string, payload []byte, key string) {
		e := Event{Function: function, Qualifier: qualifier, Payload: payload, Key: key}
		err := validateEvent(7, &e, limits{maxPayload: DefaultMaxPayload})
		if err != nil {
			if !errors.Is(err, ErrInvalidEvent) {
				t.Fatalf("error %v does not wrap ErrInvalidEvent", err)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || ve == nil {
				t.Fatalf("error %v is not a *ValidationError", err)
			}
			if !fields[ve.Field] {
				t.Fatalf("field %q is not one of Event's", ve.Field)
			}
			if ve.Index != 7 {
				t.Fatalf("index is %d, want 7", ve.Index)
			}
			if ve.Reason == "" {
				t.Fatalf("empty reason")
			}
			return
		}
		if len(payload) != 0 && !json.Valid(payload) {
			t.Fatalf("accepted invalid JSON payload %q", payload)
		}
		if len(payload) > DefaultMaxPayload {
			t.Fatalf("accepted a %d-byte payload", len(payload))
		}
		if function == "" || len(function) > lambdaname.MaxFunctionLen {
			t.Fatalf("accepted function of %d bytes", len(function))
		}
		if len(key) > MaxKeyLen || !utf8.ValidString(key) {
			t.Fatalf("accepted key %q", key)
		}
		if len(qualifier) > lambdaname.MaxQualifierLen {
			t.Fatalf("accepted qualifier of %d bytes", len(qualifier))
		}
	})
}
