package dynamo_test

import (
	"errors"
	"strconv"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/idempotency/dynamo"
)

// FuzzDecodeItem builds items from the fuzzer's values: each of the seven
// attributes (key, owner, token, id, state, lease, expires) is present when
// its bit of present is set, and kinds gives it, two bits each, its own
// type (0), the other of S and N (1), a BOOL (2) or a nil value (3). The
// decoder must never panic, must wrap ErrCorrupt when it refuses, and must
// return what the item holds when it accepts.
func FuzzDecodeItem(f *testing.F) {
	f.Add("k", "A", "tA", "", "4", "1800000030000", "1800000600000", uint8(0x7f&^0x08), uint16(0))
	f.Add("k", "A", "tA", "e1", "1", "", "1800000600000", uint8(0x7f&^0x20), uint16(0))
	f.Add("k", "A", "tA", "e1", "2", "1800000030000", "1800000600000", uint8(0x7f), uint16(0))
	f.Fuzz(func(t *testing.T, key, owner, token, id, state, lease, expires string, present uint8, kinds uint16) {
		names := []string{"key", "owner", "token", "id", "state", "lease", "expires"}
		values := []string{key, owner, token, id, state, lease, expires}
		item := make(map[string]types.AttributeValue)
		for i, name := range names {
			if present&(1<<i) == 0 {
				continue
			}
			isNumber := i >= 4
			switch kinds >> (2 * i) & 3 {
			case 1:
				isNumber = !isNumber
			case 2:
				item[name] = &types.AttributeValueMemberBOOL{Value: true}
				continue
			case 3:
				item[name] = nil
				continue
			}
			if isNumber {
				item[name] = &types.AttributeValueMemberN{Value: values[i]}
			} else {
				item[name] = &types.AttributeValueMemberS{Value: values[i]}
			}
		}

		gotKey, h, err := dynamo.DecodeItem(item)
		if err != nil {
			if !errors.Is(err, idempotency.ErrCorrupt) {
				t.Fatalf("error not wrapping ErrCorrupt: %v", err)
			}
			return
		}
		if gotKey != key || h.Owner != owner || h.Token != token {
			t.Fatalf("decoded key %q, holder %+v from %v", gotKey, h, values)
		}
		if v, ok := item["id"].(*types.AttributeValueMemberS); ok && h.ID != v.Value {
			t.Fatalf("decoded ID %q, item has %q", h.ID, v.Value)
		}
		if number(t, state) != int64(h.State) {
			t.Fatalf("decoded state %v from %q", h.State, state)
		}
		switch h.State {
		case idempotency.Claimed:
			if number(t, lease) != h.Lease.UnixMilli() {
				t.Fatalf("decoded lease %v from %q", h.Lease, lease)
			}
		case idempotency.Queued, idempotency.Delivered, idempotency.DeadLettered:
			if h.ID == "" {
				t.Fatalf("state %v without an ID accepted", h.State)
			}
		default:
			t.Fatalf("unknown state %v accepted", h.State)
		}
		if number(t, expires) != h.Expires.UnixMilli() {
			t.Fatalf("decoded expiry %v from %q", h.Expires, expires)
		}
	})
}

// number parses an N value the decoder accepted.
func number(t *testing.T, v string) int64 {
	i, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("accepted %q: %v", v, err)
	}
	return i
}
