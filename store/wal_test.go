package store

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher/internal/wal"
)

// logWaiting is the number of events the log holds past the file.
func logWaiting(st *Store) int64 { return st.wal.waiting.Load() }

// TestLogEnqueueTouchesNoTransaction: an enqueue returns once its record
// is in the log, the file untouched; a read sees it (a flush applies the
// log first), and then the log holds nothing past the file.
func TestLogEnqueueTouchesNoTransaction(t *testing.T) {
	t.Parallel()
	b := setup(t, walOptions())
	seqs := enqueue(t, b.st, newEvents(5, "fn")...)
	require.EqualValues(t, 5, logWaiting(b.st))
	s := stats(t, b.st)
	require.EqualValues(t, 5, s.Events, "counted while only in the log")
	require.EqualValues(t, 5, s.Ready)
	require.EqualValues(t, 5, logWaiting(b.st), "Stats applies nothing")
	got := scanAll(t, b.st)
	require.Equal(t, seqs, seqsOf(got))
	require.Zero(t, logWaiting(b.st))
}

// TestLogReplay: events only in the log when the process stops are in
// the file after the next Open, once, with their keys; the copy stands
// for a SIGKILL at that moment (TestLogKilled kills for real).
func TestLogReplay(t *testing.T) {
	t.Parallel()
	b := setup(t, walOptions())
	ctx := context.Background()
	evs := newEvents(3, "fn")
	for i := range evs {
		evs[i].Key, evs[i].Window = "k"+string(rune('a'+i)), time.Hour
	}
	res, err := b.st.EnqueueUnique(ctx, evs, bucketWindow{})
	require.NoError(t, err)
	require.EqualValues(t, 3, logWaiting(b.st))
	cp := copyWithLog(t, b.path)

	st, err := Open(cp, walOptions())
	require.NoError(t, err)
	got := scanAll(t, st)
	require.Len(t, got, 3)
	for i, e := range got {
		require.Equal(t, res[i].Seq, e.Seq)
	}
	again, err := st.EnqueueUnique(ctx, evs[:1], bucketWindow{})
	require.NoError(t, err)
	require.True(t, again[0].Duplicate, "the key was held by the replay")
	require.Equal(t, res[0].Seq, again[0].Seq)
	s := stats(t, st)
	require.EqualValues(t, 3, s.Events)
	require.NoError(t, st.Close())

	st, err = Open(cp, walOptions())
	require.NoError(t, err)
	require.Len(t, scanAll(t, st), 3, "a second Open replays nothing twice")
	require.NoError(t, st.Close())
}

// TestLogTornTail: a last record whose bytes did not all reach the disk
// fails its checksum; Open applies everything before it, none of it, and
// says so.
func TestLogTornTail(t *testing.T) {
	t.Parallel()
	b := setup(t, walOptions())
	ctx := context.Background()
	_, err := b.st.Enqueue(ctx, newEvents(2, "first"))
	require.NoError(t, err)
	_, err = b.st.Enqueue(ctx, newEvents(3, "torn"))
	require.NoError(t, err)
	cp := copyWithLog(t, b.path)

	// Find the last record and flip a byte of it.
	l, err := wal.Open(logDir(cp), wal.Options{})
	require.NoError(t, err)
	var last wal.Position
	_, err = l.Replay(0, func(p wal.Position, _ []byte) error { last = p; return nil })
	require.NoError(t, err)
	require.NoError(t, l.Close())
	seg := filepath.Join(logDir(cp), "0000000000000000.wal") // the first segment, base 0
	raw, err := os.ReadFile(seg)
	require.NoError(t, err)
	raw[int(last)+12] ^= 0xff // inside the record's data, past its frame header
	require.NoError(t, os.WriteFile(seg, raw, 0o600))

	var logged bytes.Buffer
	o := walOptions()
	o.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	st, err := Open(cp, o)
	require.NoError(t, err)
	defer st.Close()
	got := scanAll(t, st)
	require.Len(t, got, 2, "the torn batch is not applied, not even in part")
	for _, e := range got {
		require.Equal(t, "first", e.Function)
	}
	require.EqualValues(t, 2, stats(t, st).Events)
	require.Contains(t, logged.String(), "torn record")
	seqs := enqueue(t, st, newEvents(1, "after")...)
	require.Greater(t, seqs[0], got[1].Seq)
}

// TestLogKeysHeldBeforeTheCheckpoint: a key held by an event still only
// in the log makes a duplicate, until its window passes.
func TestLogKeysHeldBeforeTheCheckpoint(t *testing.T) {
	t.Parallel()
	clk := newClock()
	o := Options{Now: clk.Now, KeyWindow: func(*Store) KeyWindow { return expiringWindow{} }}
	b := setup(t, o)
	ctx := context.Background()
	ev := NewEvent{Function: "fn", Key: "k", Window: time.Minute}
	first, err := b.st.EnqueueUnique(ctx, []NewEvent{ev}, expiringWindow{})
	require.NoError(t, err)
	second, err := b.st.EnqueueUnique(ctx, []NewEvent{ev, ev}, expiringWindow{})
	require.NoError(t, err)
	require.True(t, second[0].Duplicate && second[1].Duplicate)
	require.Equal(t, first[0].Seq, second[0].Seq)
	require.EqualValues(t, 1, logWaiting(b.st), "no checkpoint was needed to tell")
	clk.Add(2 * time.Minute)
	third, err := b.st.EnqueueUnique(ctx, []NewEvent{ev}, expiringWindow{})
	require.NoError(t, err)
	require.False(t, third[0].Duplicate, "the window passed")
	require.Len(t, scanAll(t, b.st), 2)
}

// expiringWindow is bucketWindow with expiry: key → seq and expiry.
type expiringWindow struct{}

func (expiringWindow) Held(tx *Tx, key string, now time.Time) (uint64, bool, error) {
	b, err := tx.Bucket(Keys)
	if err != nil {
		return 0, false, err
	}
	v := b.Get([]byte(key))
	if v == nil {
		return 0, false, nil
	}
	return seqOf(v[:8]), time.Unix(0, int64(seqOf(v[8:]))).After(now), nil
}

func (expiringWindow) Hold(tx *Tx, key string, seq uint64, now time.Time, window time.Duration) error {
	b, err := tx.Bucket(Keys)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), append(seqKey(seq), seqKey(uint64(now.Add(window).UnixNano()))...))
}

// TestLogCapsCountLoggedEvents: the caps count the events only in the
// log, and a refused enqueue writes nothing.
func TestLogCapsCountLoggedEvents(t *testing.T) {
	t.Parallel()
	o := walOptions()
	o.MaxEvents = 3
	b := setup(t, o)
	enqueue(t, b.st, newEvents(3, "fn")...)
	_, err := b.st.Enqueue(context.Background(), newEvents(1, "fn"))
	require.ErrorIs(t, err, ErrFull)
	require.EqualValues(t, 3, logWaiting(b.st))
	require.EqualValues(t, 3, stats(t, b.st).Events)
	require.Len(t, scanAll(t, b.st), 3)
}

// TestLogDropOldestEvicts: under FullDropOldest an enqueue that must
// evict goes through a transaction, which applies the log first, so
// the oldest event evicted may be one that was only in the log.
func TestLogDropOldestEvicts(t *testing.T) {
	t.Parallel()
	o := walOptions()
	o.MaxEvents, o.Full = 2, FullDropOldest
	b := setup(t, o)
	seqs := enqueue(t, b.st, newEvents(2, "fn")...)
	require.EqualValues(t, 2, logWaiting(b.st))
	more := enqueue(t, b.st, newEvents(1, "fn")...)
	got := scanAll(t, b.st)
	require.Equal(t, []uint64{seqs[1], more[0]}, seqsOf(got))
	require.EqualValues(t, 1, stats(t, b.st).Evicted)
}

// TestLogSyncFailure: when the log cannot be synced, the enqueues of that
// round fail, the log takes nothing more, enqueues go to the file
// directly, and a later Open does not bring the failed events back.
func TestLogSyncFailure(t *testing.T) {
	b := setup(t, walOptions())
	ctx := context.Background()
	enqueue(t, b.st, newEvents(1, "before")...)
	logSyncHook = func() error { return errors.New("injected: EIO") }
	_, err := b.st.Enqueue(ctx, newEvents(2, "failed"))
	logSyncHook = nil
	require.ErrorContains(t, err, "EIO")
	after := enqueue(t, b.st, newEvents(1, "after")...)
	require.EqualValues(t, 0, logWaiting(b.st), "the log is set aside: the file took it")
	require.NoError(t, b.st.Close())

	st, err := Open(b.path, walOptions())
	require.NoError(t, err)
	defer st.Close()
	var fns []string
	for _, e := range scanAll(t, st) {
		fns = append(fns, e.Function)
	}
	require.Equal(t, []string{"before", "after"}, fns)
	require.Equal(t, after[0], scanAll(t, st)[1].Seq)
	enqueue(t, st, newEvents(1, "reopened")...)
	require.EqualValues(t, 1, logWaiting(st), "a reopened store logs again")
}

// TestLogClosedCleanly: Close applies the log, so a clean file needs no
// replay, and the log directory is the file's name plus "-wal".
func TestLogClosedCleanly(t *testing.T) {
	t.Parallel()
	b := setup(t, walOptions())
	enqueue(t, b.st, newEvents(4, "fn")...)
	require.NoError(t, b.st.Close())
	fi, err := os.Stat(b.path + "-wal")
	require.NoError(t, err)
	require.True(t, fi.IsDir())
	var logged bytes.Buffer
	o := walOptions()
	o.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	st, err := Open(b.path, o)
	require.NoError(t, err)
	defer st.Close()
	require.Zero(t, logWaiting(st))
	require.NotContains(t, logged.String(), "replaying")
	require.Len(t, scanAll(t, st), 4)
}

// TestLogGoneWithTheFileCopied: a file copied without its log opens as it
// is, and starts a new log.
func TestLogGoneWithTheFileCopied(t *testing.T) {
	t.Parallel()
	b := setup(t, walOptions())
	enqueue(t, b.st, newEvents(4, "fn")...)
	require.NoError(t, b.st.Close())
	dst := filepath.Join(t.TempDir(), "copy.db")
	copyFile(t, b.path, dst)
	var logged bytes.Buffer
	o := walOptions()
	o.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	st, err := Open(dst, o)
	require.NoError(t, err)
	require.Contains(t, logged.String(), "its log is gone")
	enqueue(t, st, newEvents(1, "fn")...)
	require.NoError(t, st.Close())
	st, err = Open(dst, walOptions())
	require.NoError(t, err, "the new log and the file agree")
	require.Len(t, scanAll(t, st), 5)
	require.NoError(t, st.Close())
}

// TestLogRecordDecoder: a record that passed the log's checksum but does
// not parse is refused, never half-applied, and never panics.
func TestLogRecordDecoder(t *testing.T) {
	t.Parallel()
	ps := make([]pending, 0)
	st := &Store{now: time.Now, clock: newQueueClock(nil)}
	p, _, err := st.prepare([]NewEvent{{Function: "fn", Key: "k", Payload: []byte(`{"a":1}`)}})
	require.NoError(t, err)
	ps = append(ps, p...)
	rec := encodeLogRecord(42, []logEntry{{seq: 7, p: ps[0], key: "k", window: time.Minute, wall: 99}})
	now, es, err := decodeLogRecord(rec)
	require.NoError(t, err)
	require.EqualValues(t, 42, now)
	require.Len(t, es, 1)
	require.Equal(t, uint64(7), es[0].seq)
	require.Equal(t, "k", es[0].key)
	require.Equal(t, time.Minute, es[0].window)
	for i := range rec {
		_, _, err := decodeLogRecord(rec[:i])
		require.Error(t, err, "cut at %d", i)
		require.ErrorIs(t, err, errLogRecord)
	}
	bad := append([]byte(nil), rec...)
	bad[bytes.Index(bad, []byte(`{"a":1}`))+5] ^= 0x40 // inside the payload: its checksum fails
	_, _, err = decodeLogRecord(bad)
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "event 7"), "%v", err)
}

// FuzzLogRecord: whatever bytes pass the log's checksum, decoding them
// never panics, and what it returns encodes back to the same bytes.
func FuzzLogRecord(f *testing.F) {
	st := &Store{now: time.Now, clock: newQueueClock(nil)}
	ps, _, err := st.prepare([]NewEvent{{Function: "fn", Key: "k", Payload: []byte(`{"a":1}`)}, {Function: "g", Priority: 2}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(encodeLogRecord(1, []logEntry{{seq: 1, p: ps[0], key: "k", window: time.Hour, wall: 5}, {seq: 2, p: ps[1], wall: 5}}))
	f.Add(encodeLogRecord(0, nil))
	f.Add([]byte{logRecordVersion, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		now, es, err := decodeLogRecord(b)
		if err != nil {
			return
		}
		if again := encodeLogRecord(now, es); !bytes.Equal(again, b) {
			t.Fatalf("decoded %d events that encode to other bytes", len(es))
		}
	})
}

// TestLogOff: with NoLog every enqueue is a transaction of the file, and
// what a log left beside the file is still applied at Open.
func TestLogOff(t *testing.T) {
	t.Parallel()
	b := setup(t, walOptions())
	enqueue(t, b.st, newEvents(2, "logged")...)
	cp := copyWithLog(t, b.path) // as if killed with both only in the log
	o := walOptions()
	o.NoLog = true
	st, err := Open(cp, o)
	require.NoError(t, err)
	defer st.Close()
	require.Len(t, scanAll(t, st), 2, "the log's events applied at Open")
	commits := stats(t, st).Commits
	enqueue(t, st, newEvents(1, "direct")...)
	require.Zero(t, logWaiting(st))
	require.Equal(t, commits+1, stats(t, st).Commits, "one transaction of the file")
	require.Len(t, scanAll(t, st), 3)
}
