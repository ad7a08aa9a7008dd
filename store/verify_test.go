package store

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A damaged open can kill the process (a SIGBUS, or a panic in bbolt's own
// goroutine), so TestOpenDamagedFile opens damaged files in a child: this
// runs before TestMain when the test binary is re-executed as one.
func init() {
	if dir := os.Getenv("STORE_TEST_DAMAGED"); dir != "" {
		from, _ := strconv.Atoi(os.Getenv("STORE_TEST_FROM"))
		os.Exit(openDamaged(dir, from))
	}
}

// damage is one way of breaking a copy of a sound file.
type damage struct {
	name  string
	apply func(b []byte) []byte
}

// damages lists, for a sound file b, truncations and byte flips in the
// header of every page and in some element headers.
func damages(b []byte, pageSize int) []damage {
	var ds []damage
	trunc := func(n int) {
		if n < len(b) {
			ds = append(ds, damage{fmt.Sprintf("truncated to %d bytes", n), func(b []byte) []byte { return b[:n] }})
		}
	}
	pages := len(b) / pageSize
	for _, n := range []int{1, 2, 3, 4, pages / 2, pages - 1} {
		trunc(n * pageSize)
	}
	trunc(100)
	trunc(pageSize + pageSize/2)
	flip := func(page, off int, mask byte, what string) {
		at := page*pageSize + off
		ds = append(ds, damage{fmt.Sprintf("page %d: %s", page, what), func(b []byte) []byte {
			b[at] ^= mask
			return b
		}})
	}
	for p := 2; p < pages; p++ {
		flags := native.Uint16(b[p*pageSize+8:])
		if flags != pageBranch && flags != pageLeaf {
			continue // free, or overflow of another page
		}
		flip(p, 8, 0xff, "flags")
		flip(p, 8, pageBranch|pageLeaf, "leaf and branch swapped")
		flip(p, 0, 0x01, "id")
		flip(p, 1, 0x01, "id high byte")
		flip(p, 10, 0x80, "count")
		flip(p, 12, 0x01, "overflow")
		flip(p, pageHeaderSize, 0x40, "first element, first field")
		flip(p, pageHeaderSize+4, 0x40, "first element, second field")
		flip(p, pageHeaderSize+8, 0x01, "first element, third field")
		if n := int(native.Uint16(b[p*pageSize+10:])); n > 2 {
			flip(p, pageHeaderSize+n/2*elementSize+8, 0x10, "middle element, key size or child")
		}
	}
	return ds
}

// openDamaged is the child: it opens a damaged copy of dir/base.db for each
// damage from the from'th, printing "start i" before and "i outcome" after,
// so that the parent knows which one killed it if one does.
func openDamaged(dir string, from int) int {
	base, err := os.ReadFile(filepath.Join(dir, "base.db"))
	if err != nil {
		fmt.Println("error", err)
		return 2
	}
	ds := damages(base, os.Getpagesize())
	for i := from; i < len(ds); i++ {
		path := filepath.Join(dir, fmt.Sprintf("d%d.db", i))
		b := ds[i].apply(bytes.Clone(base))
		if err := os.WriteFile(path, b, 0o600); err != nil {
			fmt.Println("error", err)
			return 2
		}
		fmt.Println("start", i)
		outcome := "opened"
		st, err := Open(path, Options{LockTimeout: time.Second})
		var ce *CorruptError
		switch {
		case errors.As(err, &ce):
			outcome = "corrupt"
			if sha256.Sum256(b) != fileSum(path) {
				outcome = "changed"
			}
		case err != nil:
			outcome = "untyped " + strings.ReplaceAll(err.Error(), "\n", " ")
		default:
			// Harmless damage: reading what Open accepted must not
			// fault either.
			_, _ = st.Stats()
			_ = st.Scan(func(Event) error { return nil })
			_ = st.Close()
		}
		os.Remove(path)
		fmt.Println(i, outcome)
	}
	fmt.Println("done")
	return 0
}

func fileSum(path string) [32]byte {
	b, _ := os.ReadFile(path)
	return sha256.Sum256(b)
}

// buildQueue writes a queue file big enough for branch pages in every
// store bucket, with a leased event, an overflow page and a foreign bucket
// as dead letters keep, and returns its path.
func buildQueue(t testing.TB, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "base.db")
	st, err := Open(path, Options{})
	require.NoError(t, err)
	ctx := context.Background()
	evs := make([]NewEvent, n)
	for i := range evs {
		evs[i] = NewEvent{Function: "orders", Key: fmt.Sprintf("k-%d", i), Payload: bytes.Repeat([]byte{'a' + byte(i%26)}, 100)}
	}
	evs[n/2].Payload = bytes.Repeat([]byte("big"), 5000)
	_, err = st.Enqueue(ctx, evs)
	require.NoError(t, err)
	_, err = st.Lease(ctx, 3, time.Hour)
	require.NoError(t, err)
	require.NoError(t, st.Update(ctx, func(tx *Tx) error {
		b, err := tx.Bucket(Letters)
		if err != nil {
			return err
		}
		for i := range 5 {
			if err := b.Put(seqKey(uint64(i+1)), []byte("letter")); err != nil {
				return err
			}
		}
		return b.SetSequence(5)
	}))
	require.NoError(t, st.Close())
	return path
}

// TestOpenDamagedFile opens copies of a queue damaged in the header of
// every page and in some element headers, in child processes: each is
// refused with a *CorruptError and left as it was, or opens and reads
// without a fault; most are refused.
//
// 300 events make the same kinds of page as 600, half as many: a branch
// page over several leaves in each of events, fnready and payloads, beside
// the inline buckets; so 257 damaged files to open rather than 457.
// DISPATCH_SOAK=1 builds the queue of 600.
func TestOpenDamagedFile(t *testing.T) {
	t.Parallel()
	n := 300
	if soak() {
		n = 600
	}
	base := buildQueue(t, n)
	dir := filepath.Dir(base)
	b, err := os.ReadFile(base)
	require.NoError(t, err)
	ds := damages(b, os.Getpagesize())
	require.Greater(t, len(ds), 200, "the file should have many pages to damage")

	outcome := make([]string, len(ds))
	children := 0
	// Each crash costs a child; past a few, the rest is not worth running.
	for from := 0; from < len(ds) && children < 10; {
		children++
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "STORE_TEST_DAMAGED="+dir, fmt.Sprintf("STORE_TEST_FROM=%d", from))
		out, _ := cmd.Output()
		started := -1
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			f := strings.SplitN(sc.Text(), " ", 2)
			switch {
			case f[0] == "start":
				started, _ = strconv.Atoi(f[1])
			case f[0] == "done":
				started = -1
			case f[0] == "error":
				t.Fatalf("child: %s", f[1])
			default:
				i, err := strconv.Atoi(f[0])
				require.NoError(t, err, sc.Text())
				outcome[i] = f[1]
			}
		}
		if started < 0 || outcome[started] != "" {
			break
		}
		outcome[started] = "crashed"
		from = started + 1
	}

	var opened, corrupt int
	for i, o := range outcome {
		switch o {
		case "":
			t.Errorf("%s: not run, after %d children crashed", ds[i].name, children)
		case "corrupt":
			corrupt++
		case "opened":
			opened++
		default:
			t.Errorf("%s: %s", ds[i].name, o)
		}
	}
	t.Logf("%d damaged files: %d refused with a *CorruptError, %d harmless, in %d children", len(ds), corrupt, opened, children)
	require.Greater(t, corrupt, len(ds)/2)
}

func TestOpenDamagedFileNamesTheFault(t *testing.T) {
	t.Parallel()
	base := buildQueue(t, 2000)
	b, err := os.ReadFile(base)
	require.NoError(t, err)
	ps := os.Getpagesize()
	pf, err := readMetas(bytes.NewReader(b), int64(len(b)))
	require.NoError(t, err)
	root := int(pf.meta.root)

	for name, tc := range map[string]struct {
		damage func(b []byte) []byte
		want   string
	}{
		"TruncatedToOnePage":  {func(b []byte) []byte { return b[:ps] }, "shorter than its two meta pages"},
		"TruncatedToTwoPages": {func(b []byte) []byte { return b[:2*ps] }, "high-water mark"},
		"TruncatedShort":      {func(b []byte) []byte { return b[:100] }, "shorter than"},
		"BothMetasBroken":     {func(b []byte) []byte { b[pageHeaderSize] ^= 1; b[ps+pageHeaderSize] ^= 1; return b }, "no valid meta page"},
		"RootPageFlags":       {func(b []byte) []byte { b[root*ps+8] = 0x20; return b }, "flags 0x20"},
		"RootPageID":          {func(b []byte) []byte { b[root*ps] ^= 1; return b }, fmt.Sprintf("header names page %d", root^1)},
		"RootPageCount":       {func(b []byte) []byte { b[root*ps+11] = 0xff; return b }, "does not fit"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "q.db")
			d := tc.damage(bytes.Clone(b))
			require.NoError(t, os.WriteFile(path, d, 0o600))
			_, err := Open(path, Options{})
			var ce *CorruptError
			require.ErrorAs(t, err, &ce)
			require.ErrorContains(t, err, tc.want)
			require.Equal(t, sha256.Sum256(d), fileSum(path), "the file is left as it was")
		})
	}

	t.Run("OlderMetaIsUsedWhenTheNewerIsBroken", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "q.db")
		d := bytes.Clone(b)
		d[int(pf.meta.page)*ps+pageHeaderSize+metaSummed] ^= 1 // the newer meta's checksum
		require.NoError(t, os.WriteFile(path, d, 0o600))
		st, err := Open(path, Options{})
		if err == nil {
			require.NoError(t, st.Close())
			return
		}
		// The older meta may point at pages the newer commit reused.
		var ce *CorruptError
		require.ErrorAs(t, err, &ce)
	})
}

// BenchmarkVerifyFile measures Open's pre-check on a file of 100,000
// events with 100-byte payloads (41 MB). On the 2-core machine this was
// written on: 34 ms per check, 1.2 GB/s (go test -run '^$' -bench
// VerifyFile -benchtime 20x ./store/).
func BenchmarkVerifyFile(b *testing.B) {
	path := buildQueue(b, 100_000)
	fi, err := os.Stat(path)
	require.NoError(b, err)
	b.SetBytes(fi.Size())
	b.ResetTimer()
	for b.Loop() {
		if err := verifyFile(path, 0); err != nil {
			b.Fatal(err)
		}
	}
}
