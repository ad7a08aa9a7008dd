package dispatcher_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/store"
)

// TestOpenDamagedFile: a queue file damaged on disk is refused with a
// *store.CorruptError the caller can test for, and left as it was.
func TestOpenDamagedFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "events.db")
	d, err := dispatcher.Open(path)
	require.NoError(t, err)
	for i := range 500 {
		_, err := d.Enqueue(context.Background(), dispatcher.Event{Function: "orders", Payload: fmt.Appendf(nil, `{"n":%d}`, i)})
		require.NoError(t, err)
	}
	require.NoError(t, d.Close())
	sound, err := os.ReadFile(path)
	require.NoError(t, err)
	ps := os.Getpagesize()

	for name, damage := range map[string]func([]byte) []byte{
		"Truncated": func(b []byte) []byte { return b[:3*ps] },
		"RootPageIDFlipped": func(b []byte) []byte {
			// The newer meta page (higher txid at byte 64) names the root
			// page (at byte 32).
			m := 0
			if binary.NativeEndian.Uint64(b[ps+64:]) > binary.NativeEndian.Uint64(b[64:]) {
				m = ps
			}
			b[int(binary.NativeEndian.Uint64(b[m+32:]))*ps] ^= 0x04
			return b
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := filepath.Join(t.TempDir(), "events.db")
			b := damage(append([]byte(nil), sound...))
			require.NoError(t, os.WriteFile(p, b, 0o600))
			_, err := dispatcher.Open(p)
			var ce *store.CorruptError
			require.ErrorAs(t, err, &ce)
			after, err := os.ReadFile(p)
			require.NoError(t, err)
			require.Equal(t, sha256.Sum256(b), sha256.Sum256(after))
		})
	}
}
