package idempotency

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher/store"
)

// FuzzDecodeFileItem feeds a FileWindow item's decoder arbitrary bytes: it
// must never panic, must wrap ErrCorrupt when it refuses, and what it
// accepts must encode back to the same bytes. The seeds in
// testdata/fuzz/FuzzDecodeFileItem are items in each state and items cut
// short or bent out of shape.
func FuzzDecodeFileItem(f *testing.F) {
	f.Add(encodeFileItem(fileItem{owner: "A", token: "tA", state: Claimed, lease: 1_800_000_030_000, expires: 1_800_000_600_000}))
	f.Add(encodeFileItem(fileItem{owner: "A", token: "tA", id: "e1", state: Queued, expires: 1_800_000_600_000}))
	f.Fuzz(func(t *testing.T, v []byte) {
		it, err := decodeFileItem("k", v)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not wrapping ErrCorrupt: %v", err)
			}
			return
		}
		if got := encodeFileItem(it); !bytes.Equal(got, v) {
			t.Fatalf("decoded %+v from %x, which encodes to %x", it, v, got)
		}
		h := it.holder()
		if h.Owner == "" || h.Token == "" || (h.State == Claimed) != (h.ID == "") || (h.State == Claimed) == h.Lease.IsZero() {
			t.Fatalf("decoded an impossible holder %+v from %x", h, v)
		}
	})
}

// TestFileItemSeeds checks that the fuzz seeds are what their names say:
// the four named after a state decode, every other one is refused.
func TestFileItemSeeds(t *testing.T) {
	valid := map[string]bool{"claimed": true, "queued": true, "delivered": true, "dead_lettered": true}
	paths, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzDecodeFileItem", "*"))
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	for _, p := range paths {
		data, err := os.ReadFile(p)
		require.NoError(t, err)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		require.Len(t, lines, 2, p)
		quoted, ok := strings.CutPrefix(lines[1], "[]byte(")
		require.True(t, ok, p)
		v, err := strconv.Unquote(strings.TrimSuffix(quoted, ")"))
		require.NoError(t, err, p)
		_, err = decodeFileItem("k", []byte(v))
		if valid[filepath.Base(p)] {
			require.NoError(t, err, p)
		} else {
			require.ErrorIs(t, err, ErrCorrupt, p)
		}
	}
}

func TestFileItemRoundTrip(t *testing.T) {
	for _, it := range []fileItem{
		{owner: "A", token: "tA", state: Claimed, lease: 0, expires: -1},
		{owner: "owner", token: string(make([]byte, 300)), id: "e", state: DeadLettered, expires: maxMillis},
		{owner: "A", token: "t", id: "e", state: Delivered, expires: -maxMillis},
	} {
		got, err := decodeFileItem("k", encodeFileItem(it))
		require.NoError(t, err)
		require.Equal(t, it, got)
	}
}

// TestFileWindowCorruptItem: a corrupt item fails every call that reads
// it with ErrCorrupt, and Sweep removes it once the index says it expired.
func TestFileWindowCorruptItem(t *testing.T) {
	w, err := OpenFileWindow(filepath.Join(t.TempDir(), "keys.db"))
	require.NoError(t, err)
	defer w.Close()
	now := time.UnixMilli(1_800_000_000_000)
	require.NoError(t, w.file.Update(func(tx *store.Tx) error {
		b, err := tx.Bucket(store.WindowKeys)
		if err != nil {
			return err
		}
		if err := b.Put([]byte("bad"), []byte{fileItemVersion, 9}); err != nil {
			return err
		}
		exp, err := tx.Bucket(store.WindowExpiry)
		if err != nil {
			return err
		}
		return exp.Put(expKey(now.UnixMilli(), "bad"), []byte{})
	}))
	ctx := t.Context()
	_, _, err = w.Claim(ctx, Claim{Key: "bad", Owner: "A", Token: "t", Window: time.Hour, Lease: time.Minute}, now)
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, `"bad"`)
	require.ErrorIs(t, w.Confirm(ctx, Ref{Key: "bad", Owner: "A", Token: "t", ID: "e"}), ErrCorrupt)
	require.ErrorIs(t, w.Mark(ctx, Ref{Key: "bad", Owner: "A", ID: "e"}, Delivered), ErrCorrupt)
	require.ErrorIs(t, w.Release(ctx, Ref{Key: "bad", Owner: "A", ID: "e"}), ErrCorrupt)
	_, err = w.Lookup(ctx, []string{"bad"}, now)
	require.ErrorIs(t, err, ErrCorrupt)

	n, err := w.Sweep(ctx, now, 0)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	got, err := w.Lookup(ctx, []string{"bad"}, now)
	require.NoError(t, err)
	require.Empty(t, got)
}
