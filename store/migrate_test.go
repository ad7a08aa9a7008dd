package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// manifest describes testdata/format1.bolt: what the format 1 code that
// wrote it (testdata/format1-gen.go.txt) read back from it.
type manifest struct {
	Clock  int64 `json:"clock"`
	Stats  Stats `json:"stats"`
	Events []struct {
		Seq       uint64 `json:"seq"`
		Function  string `json:"function"`
		Qualifier string `json:"qualifier"`
		Key       string `json:"key"`
		Payload   string `json:"payload"`
		Attempts  int    `json:"attempts"`
		Leased    bool   `json:"leased"`
		Due       int64  `json:"due"`
		LastError string `json:"last_error"`
	} `json:"events"`
}

// fixture copies testdata/format1.bolt into a new directory and reads its
// manifest; the clock is set to the time the file was closed.
func fixture(t *testing.T) (string, manifest, *clock) {
	t.Helper()
	b, err := os.ReadFile("testdata/format1.bolt")
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "format1.db")
	require.NoError(t, os.WriteFile(path, b, 0o600))
	var m manifest
	j, err := os.ReadFile("testdata/format1.json")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(j, &m))
	return path, m, &clock{t: time.Unix(0, m.Clock).UTC()}
}

// want is what Functions should say of the fixture's events at queue time
// now, with leased events counted as leased or, after a recovery, as
// ready.
func (m manifest) want(leasesKept bool, now int64) map[string]FunctionStats {
	out := map[string]FunctionStats{}
	for _, e := range m.Events {
		f := out[e.Function]
		f.Name = e.Function
		f.Events++
		f.Bytes += LogicalSize(NewEvent{Function: e.Function, Qualifier: e.Qualifier, Key: e.Key, Payload: []byte(e.Payload)})
		switch {
		case e.Leased && leasesKept:
			f.Leased++
		case e.Due > now:
			f.Scheduled++
		default:
			f.Ready++
		}
		out[e.Function] = f
	}
	return out
}

func TestFormat1File(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("ReadOnlyWritesNothing", func(t *testing.T) {
		t.Parallel()
		path, m, clk := fixture(t)
		was := fingerprintOf(t, path)
		st, err := Open(path, Options{ReadOnly: true, Now: clk.Now, Elapsed: clk.Elapsed})
		require.NoError(t, err)
		s := stats(t, st)
		require.Equal(t, Stats{Events: 96, Ready: 85, Scheduled: 8, Leased: 3, Bytes: m.Stats.Bytes}, s)
		require.Equal(t, m.want(true, m.Clock), functionsOf(t, st))
		due, ok, err := st.NextDue()
		require.NoError(t, err)
		require.True(t, ok)
		var first int64
		for _, e := range m.Events {
			if !e.Leased && (first == 0 || e.Due < first) {
				first = e.Due
			}
		}
		require.Equal(t, first, due.UnixNano())
		require.False(t, st.Paused("orders"))
		require.NoError(t, st.Close())
		require.Equal(t, was, fingerprintOf(t, path))
	})

	t.Run("CheckReadsIt", func(t *testing.T) {
		t.Parallel()
		path, _, _ := fixture(t)
		rep, err := Check(path)
		require.NoError(t, err)
		require.True(t, rep.OK(), "%v", rep.Problems)
		require.Equal(t, 1, rep.Format)
		require.Equal(t, int64(96), rep.Events)
		require.Equal(t, int64(3), rep.Leased)
	})

	t.Run("OpenMigratesAndDrains", func(t *testing.T) {
		t.Parallel()
		path, m, clk := fixture(t)
		st, err := Open(path, Options{Now: clk.Now, Elapsed: clk.Elapsed})
		require.NoError(t, err)
		s := stats(t, st)
		require.Equal(t, Stats{Events: 96, Ready: 88, Scheduled: 8, Bytes: m.Stats.Bytes, Recovered: 3, Commits: 0}, s, "leases returned")
		require.Equal(t, m.want(false, m.Clock), functionsOf(t, st))
		evs := scanAll(t, st)
		require.Len(t, evs, len(m.Events))
		for i, e := range m.Events {
			got := evs[i]
			require.Equal(t, []any{e.Seq, e.Function, e.Qualifier, e.Key, e.Payload, e.Attempts, e.Due, e.LastError, false},
				[]any{got.Seq, got.Function, got.Qualifier, got.Key, string(got.Payload), got.Attempts, got.Due.UnixNano(), got.LastError.Code, got.Leased})
		}
		require.NoError(t, st.Close())
		rep, err := Check(path)
		require.NoError(t, err)
		require.True(t, rep.OK(), "%v", rep.Problems)
		require.Equal(t, formatVersion, rep.Format)
		require.Equal(t, 4, rep.Functions)

		st, err = Open(path, Options{Now: clk.Now, Elapsed: clk.Elapsed})
		require.NoError(t, err)
		defer st.Close()
		require.NoError(t, st.View(func(tx *Tx) error {
			b, err := tx.Bucket(Letters)
			require.NoError(t, err)
			require.Equal(t, uint64(1), b.Sequence(), "other packages' buckets are left as they were")
			return nil
		}))
		clk.Add(24 * time.Hour)
		seen := map[uint64]int{}
		for {
			got, err := st.Lease(ctx, 7, time.Minute)
			require.NoError(t, err)
			if len(got) == 0 {
				break
			}
			for _, e := range got {
				seen[e.Seq]++
			}
			require.NoError(t, st.Ack(ctx, seqsOf(got)...))
		}
		require.Len(t, seen, len(m.Events))
		for _, e := range m.Events {
			require.Equal(t, 1, seen[e.Seq], "event %d leased once", e.Seq)
		}
		s = stats(t, st)
		require.Zero(t, s.Events)
		require.Zero(t, s.Bytes)
		require.Empty(t, functionsOf(t, st))
	})

	t.Run("Salvage", func(t *testing.T) {
		t.Parallel()
		path, m, clk := fixture(t)
		dst := filepath.Join(t.TempDir(), "salvaged.db")
		rep, err := Salvage(path, dst)
		require.NoError(t, err)
		require.Equal(t, int64(96), rep.Events)
		check, err := Check(dst)
		require.NoError(t, err)
		require.True(t, check.OK(), "%v", check.Problems)
		require.Equal(t, formatVersion, check.Format)
		st, err := Open(dst, Options{Now: clk.Now, Elapsed: clk.Elapsed})
		require.NoError(t, err)
		defer st.Close()
		// Salvage's file took this machine's clock, which may be past
		// the fixture's.
		require.Equal(t, m.want(false, st.Now().UnixNano()), functionsOf(t, st))
	})
}

// v1Event is an event as writeFormat1 lays it out.
type v1Event struct {
	fn      string
	leased  bool
	due     int64
	payload []byte
}

// writeFormat1 writes a queue file the way format 1 laid it out: the
// buckets, 16-byte keys in "ready", counters, no registry. Events get
// sequence numbers from 1.
func writeFormat1(t testing.TB, path string, clock int64, evs []v1Event) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true})
	require.NoError(t, err)
	defer db.Close()
	var c counts
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		bs := map[string]*bolt.Bucket{}
		for _, name := range []string{"meta", "events", "payloads", "ready", "leases", "corrupt"} {
			b, err := tx.CreateBucket([]byte(name))
			if err != nil {
				return err
			}
			b.FillPercent = 1
			bs[name] = b
		}
		if err := bs["meta"].Put(keyFormat, []byte{1}); err != nil {
			return err
		}
		for i, e := range evs {
			seq := uint64(i + 1)
			r := record{state: stateReady, enqueued: clock - int64(time.Hour), due: e.due, function: e.fn,
				payloadLen: uint32(len(e.payload)), payloadCRC: checksum(e.payload)}
			if e.leased {
				r.state, r.attempts, r.firstAttempt, r.lastAttempt, r.leaseUntil = stateLeased, 1, clock, clock, clock+int64(time.Minute)
				if err := putUint64(bs["leases"], seqKey(seq), r.leaseUntil); err != nil {
					return err
				}
				c.leased++
			} else if err := bs["ready"].Put(readyKey(e.due, seq), []byte{}); err != nil {
				return err
			}
			if err := bs["events"].Put(seqKey(seq), r.encode(nil)); err != nil {
				return err
			}
			if err := bs["payloads"].Put(seqKey(seq), e.payload); err != nil {
				return err
			}
			c.events++
			c.bytes += r.size()
		}
		c.nextSeq, c.clock = uint64(len(evs)), clock
		return bs["meta"].Put(keyCounters, c.encode())
	}))
}

// bigFormat1 is a format 1 file of n events of 7 functions of unequal
// backlogs, a tenth leased, a tenth scheduled, and what Functions should
// say of it once opened (leases returned) at clock.
func bigFormat1(t testing.TB, n int) (string, int64, map[string]FunctionStats) {
	t.Helper()
	clock := bigClock.UnixNano()
	evs := make([]v1Event, n)
	want := map[string]FunctionStats{}
	for i := range evs {
		fn := fmt.Sprintf("fn-%d", min(i%10, 6)) // fn-6 gets four shares
		e := v1Event{fn: fn, due: clock - int64(i), payload: fmt.Appendf(nil, `{"i":%d}`, i)}
		f := want[fn]
		f.Name = fn
		f.Events++
		f.Bytes += LogicalSize(NewEvent{Function: fn, Payload: e.payload})
		switch i % 10 {
		case 3:
			e.leased = true
			f.Ready++ // once returned
		case 7:
			e.due = clock + int64(time.Hour)
			f.Scheduled++
		default:
			f.Ready++
		}
		want[fn] = f
		evs[i] = e
	}
	path := filepath.Join(t.TempDir(), "big1.db")
	writeFormat1(t, path, clock, evs)
	return path, clock, want
}

// bigClock is the time of bigFormat1's files, which the tests and their
// child processes open them at: a machine's clock past it would make the
// scheduled events due.
var bigClock = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func frozenAt(at time.Time) Options {
	return Options{Now: func() time.Time { return at }, Elapsed: func() time.Duration { return 0 }}
}

// setMigration sets the migration's test knobs until the test ends. Tests
// that call it do not run in parallel: the knobs are the package's.
func setMigration(t *testing.T, batch int, hook func(int, bool) error) {
	t.Helper()
	migrateBatch, migrateHook = batch, hook
	t.Cleanup(func() { migrateBatch, migrateHook = 4096, nil })
}

var errCut = errors.New("cut here")

// TestMigrationResumes cuts a migration at several points, before and
// after a batch commits, and checks that the file read meanwhile is sound
// and that the next Open finishes it with the counts of a migration never
// cut.
//
// The file is ten batches whatever its size, so the cuts land at the same
// points of it: 1,000 events in batches of 100 show what 5,000 in batches
// of 500 did. The test does not run in parallel, so all of it adds to the
// package's time. DISPATCH_SOAK=1 runs 5,000.
func TestMigrationResumes(t *testing.T) {
	n, perBatch := 1000, 100
	if soak() {
		n, perBatch = 5000, 500
	}
	base, at, want := bigFormat1(t, n)
	clk := &clock{t: time.Unix(0, at).UTC()}
	opts := Options{Now: clk.Now, Elapsed: clk.Elapsed}
	for _, cut := range []struct {
		batch     int
		committed bool
	}{{1, false}, {1, true}, {3, false}, {3, true}, {10, false}} {
		t.Run(fmt.Sprintf("batch%d-committed=%v", cut.batch, cut.committed), func(t *testing.T) {
			path := damaged(t, base, func([]byte, int) {})
			setMigration(t, perBatch, func(batch int, committed bool) error {
				if batch == cut.batch && committed == cut.committed {
					return errCut
				}
				return nil
			})
			_, err := Open(path, opts)
			require.ErrorIs(t, err, errCut)

			rep, err := Check(path)
			require.NoError(t, err)
			require.True(t, rep.OK(), "cut short, the file is sound: %v", rep.Problems)
			require.Equal(t, 1, rep.Format)
			ro, err := Open(path, Options{ReadOnly: true, Now: clk.Now, Elapsed: clk.Elapsed})
			require.NoError(t, err)
			s := stats(t, ro)
			require.Equal(t, int64(n), s.Events)
			require.Equal(t, int64(n/10), s.Leased)
			require.Equal(t, int64(n/10), s.Scheduled)
			require.Len(t, functionsOf(t, ro), 7)
			require.NoError(t, ro.Close())

			// Cut again, in the first batch of the resumed migration,
			// then let it finish.
			migrateHook = func(batch int, committed bool) error {
				if batch == 1 && !committed {
					return errCut
				}
				return nil
			}
			_, err = Open(path, opts)
			require.ErrorIs(t, err, errCut)
			migrateHook = nil
			st, err := Open(path, opts)
			require.NoError(t, err)
			require.Equal(t, want, functionsOf(t, st))
			s = stats(t, st)
			require.Equal(t, Stats{Events: int64(n), Ready: int64(n * 9 / 10), Scheduled: int64(n / 10), Bytes: s.Bytes, Recovered: uint64(n / 10)}, s)
			require.NoError(t, st.Close())
			rep, err = Check(path)
			require.NoError(t, err)
			require.True(t, rep.OK(), "%v", rep.Problems)
			require.Equal(t, formatVersion, rep.Format)
		})
	}
}

// TestMigrationSetsAsideWhatItCannotRead: a record that does not decode
// cannot be given a function; it is set aside, as its lease would have.
func TestMigrationSetsAsideWhatItCannotRead(t *testing.T) {
	t.Parallel()
	path, at, want := bigFormat1(t, 50)
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketEvents).Put(seqKey(5), []byte{recordV1, 9}); err != nil {
			return err
		}
		// An index key whose event is gone, as format 1 could leave.
		return tx.Bucket(bucketReadyV1).Put(readyKey(at, 999), []byte{})
	})
	f := want["fn-4"]
	f.Events--
	f.Ready--
	f.Bytes -= LogicalSize(NewEvent{Function: "fn-4", Payload: []byte(`{"i":4}`)})
	want["fn-4"] = f
	clk := &clock{t: time.Unix(0, at).UTC()}
	st, err := Open(path, Options{Now: clk.Now, Elapsed: clk.Elapsed})
	require.NoError(t, err)
	require.Equal(t, want, functionsOf(t, st))
	s := stats(t, st)
	require.Equal(t, int64(49), s.Events)
	require.Equal(t, int64(1), s.Corrupt)
	require.NoError(t, st.Close())
	rep, err := Check(path)
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
}

// TestMigrationKilled kills a child process in the middle of migrating a
// large format 1 file, three times at different points, then opens the
// file: no event is lost or doubled, and the counts are those of the
// events.
//
// The file holds twenty-four batches of the child's migration whatever
// its size, so the kills land at the same points of it: 3,000 events in
// batches of 125 show what 12,000 in batches of 500 did, in one second
// under -race rather than six. DISPATCH_SOAK=1 runs 12,000.
func TestMigrationKilled(t *testing.T) {
	t.Parallel()
	n, _ := migrationKilledSize()
	path, at, want := bigFormat1(t, n)
	// The child runs twenty-four batches.
	for _, stop := range []string{"4-committed", "3-pending", "11-committed"} {
		child, said := startChild(t, "migrate-"+stop, path)
		require.Equal(t, "migrating "+stop, said)
		require.NoError(t, child.Process.Kill())
		_ = child.Wait()
		rep, err := Check(path)
		require.NoError(t, err)
		require.True(t, rep.OK(), "killed at %s: %v", stop, rep.Problems)
		require.Equal(t, 1, rep.Format, "not finished")
	}

	clk := &clock{t: time.Unix(0, at).UTC()}
	st, err := Open(path, Options{Now: clk.Now, Elapsed: clk.Elapsed})
	require.NoError(t, err)
	defer st.Close()
	require.Equal(t, want, functionsOf(t, st))
	s := stats(t, st)
	require.Equal(t, Stats{Events: int64(n), Ready: int64(n * 9 / 10), Scheduled: int64(n / 10), Bytes: s.Bytes, Recovered: uint64(n / 10)}, s)
	var bytes int64
	for _, f := range want {
		bytes += f.Bytes
	}
	require.Equal(t, bytes, s.Bytes)

	clk.Add(2 * time.Hour)
	seen := make([]int, n+1)
	ctx := context.Background()
	for {
		got, err := st.Lease(ctx, 1000, time.Minute)
		require.NoError(t, err)
		if len(got) == 0 {
			break
		}
		for _, e := range got {
			i, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(string(e.Payload), `{"i":`), "}"))
			require.NoError(t, err)
			require.Equal(t, uint64(i+1), e.Seq, "payload and sequence still match")
			seen[e.Seq]++
		}
		require.NoError(t, st.Ack(ctx, seqsOf(got)...))
	}
	require.Equal(t, -1, slices.IndexFunc(seen[1:], func(c int) bool { return c != 1 }), "every event leased exactly once")
	require.Zero(t, stats(t, st).Events)
	require.Empty(t, functionsOf(t, st))
}

// migrationKilledSize is the number of events of TestMigrationKilled's
// file and the batch its children migrate them in: twenty-four batches.
func migrationKilledSize() (events, batch int) {
	if soak() {
		return 12000, 500
	}
	return 3000, 125
}

// migrateChild opens path with a migration that stops at the point its
// mode names ("migrate-<batch>-committed" or "-pending") and waits there
// to be killed.
func migrateChild(mode, path string) {
	at := strings.TrimPrefix(mode, "migrate-")
	num, phase, _ := strings.Cut(at, "-")
	stop, err := strconv.Atoi(num)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	_, migrateBatch = migrationKilledSize()
	migrateHook = func(batch int, committed bool) error {
		if batch == stop && committed == (phase == "committed") {
			fmt.Println("migrating " + at)
			select {} // until SIGKILL
		}
		return nil
	}
	_, err = Open(path, frozenAt(bigClock))
	fmt.Fprintf(os.Stderr, "migration was not stopped at %s: %v\n", at, err)
	os.Exit(2)
}
