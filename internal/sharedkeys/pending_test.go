package sharedkeys

import (
	"context"
	"encoding/hex"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher/store"
)

// TestPendingBytes pins the pending record's bytes: files written before
// the protocol moved here, and by every version since, must open.
func TestPendingBytes(t *testing.T) {
	pc := pendingClaim{key: "order-42", token: "tok", expires: time.Unix(0, 0x0102030405060708)}
	const want = "01" + "0102030405060708" + "03" + "746f6b" + "6f726465722d3432"
	require.Equal(t, want, hex.EncodeToString(encodePending(pc)))

	got, err := decodePending(encodePending(pc))
	require.NoError(t, err)
	require.Equal(t, pc.key, got.key)
	require.Equal(t, pc.token, got.token)
	require.True(t, pc.expires.Equal(got.expires))

	require.Equal(t, "sharedpending", store.PendingClaims.String())
	require.Equal(t, "shared", store.SharedOwner.String())
	require.Equal(t, "owner", string(keyOwner))
	require.Equal(t, "00000000000000ff", hex.EncodeToString(pendingKey(255)))
}

func TestPendingUnreadable(t *testing.T) {
	good := encodePending(pendingClaim{key: "k", token: "t", expires: time.Unix(0, 1)})
	for name, v := range map[string][]byte{
		"Empty":      nil,
		"Short":      good[:9],
		"Version":    append([]byte{2}, good[1:]...),
		"TokenLong":  append(append([]byte{}, good[:9]...), 0x7f, 'x'),
		"BadUvarint": append(append([]byte{}, good[:9]...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := decodePending(v)
			require.Error(t, err)
		})
	}
}

func TestKeyLocksSerialise(t *testing.T) {
	var l keyLocks
	unlock, err := l.lock(t.Context(), []string{"b", "a"})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	_, err = l.lock(ctx, []string{"a"})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	unlock()
	unlock2, err := l.lock(t.Context(), []string{"a", "c"})
	require.NoError(t, err)
	unlock2()
	require.Empty(t, l.held)
}
