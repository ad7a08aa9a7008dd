package store

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/lambdadispatch/dispatcher/internal/wal"
)

// bigEvents are events whose payloads are too large to be copied into the
// file at a checkpoint: they stay in the log.
func bigEvents(n int, fn string) []NewEvent {
	evs := make([]NewEvent, n)
	for i := range evs {
		evs[i] = NewEvent{Function: fn, Payload: fmt.Appendf(nil, `{"n":%d,"pad":"%s"}`, i, strings.Repeat("p", 200))}
	}
	return evs
}

// placement counts the payloads the file holds itself and those it reads
// from the log.
func placement(t *testing.T, path string, db *bolt.DB) (inFile, inLog int) {
	t.Helper()
	read := func(tx *bolt.Tx) error {
		inFile = tx.Bucket(bucketPayloads).Stats().KeyN
		if b := tx.Bucket(bucketInLog); b != nil {
			inLog = b.Stats().KeyN
		}
		return nil
	}
	if db != nil {
		require.NoError(t, db.View(read))
		return
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.View(read))
	return
}

// TestPayloadsStayInLog: a checkpoint moves records into the file and
// leaves large payloads in the log, small ones go into the file; reads
// and leases get every payload back whole, and an ack drops the
// reference.
func TestPayloadsStayInLog(t *testing.T) {
	t.Parallel()
	b := setup(t, walOptions())
	evs := append(bigEvents(5, "fn"), newEvents(2, "fn")...)
	seqs := enqueue(t, b.st, evs...)
	got := scanAll(t, b.st) // applies the log first
	require.Equal(t, seqs, seqsOf(got))
	for i, e := range got {
		require.Equal(t, evs[i].Payload, e.Payload)
	}
	inFile, inLog := placement(t, "", b.st.db)
	require.Equal(t, 2, inFile, "the small payloads")
	require.Equal(t, 5, inLog, "the large ones")

	ev, err := b.st.Get(seqs[3])
	require.NoError(t, err)
	require.Equal(t, evs[3].Payload, ev.Payload)

	leased, err := b.st.Lease(context.Background(), 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, leased, 7)
	for i, e := range leased {
		require.Equal(t, evs[i].Payload, e.Payload)
	}
	require.NoError(t, b.st.Ack(context.Background(), seqs[:4]...))
	_, inLog = placement(t, "", b.st.db)
	require.Equal(t, 1, inLog, "acked events leave no reference")
}

// TestPayloadsInLogAfterCrash: a file whose process died with payloads in
// its log (the copy stands for a SIGKILL; TestLogKilled kills for real)
// checks sound, opens read-only, salvages and reopens with every payload,
// read from the log beside it.
func TestPayloadsInLogAfterCrash(t *testing.T) {
	t.Parallel()
	b := setup(t, walOptions())
	evs := bigEvents(6, "fn")
	enqueue(t, b.st, evs...)
	scanAll(t, b.st)
	cp := copyWithLog(t, b.path)
	_, inLog := placement(t, cp, nil)
	require.Equal(t, 6, inLog)

	rep, err := Check(cp)
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
	require.EqualValues(t, 6, rep.Events)

	ro, err := Open(cp, Options{ReadOnly: true})
	require.NoError(t, err)
	got := scanAll(t, ro)
	require.NoError(t, ro.Close())
	require.Len(t, got, 6)
	for i, e := range got {
		require.Equal(t, evs[i].Payload, e.Payload)
	}

	dst := filepath.Join(t.TempDir(), "salvaged.db")
	srep, err := Salvage(cp, dst)
	require.NoError(t, err)
	require.EqualValues(t, 6, srep.Events, "%v", srep.Problems)
	require.Zero(t, srep.LostEvents)
	st, err := Open(dst, Options{})
	require.NoError(t, err)
	got = scanAll(t, st)
	require.NoError(t, st.Close())
	require.Len(t, got, 6)
	require.Equal(t, evs[5].Payload, got[5].Payload)

	st, err = Open(cp, walOptions())
	require.NoError(t, err)
	got = scanAll(t, st)
	require.Len(t, got, 6)
	require.Equal(t, evs[0].Payload, got[0].Payload)
	require.NoError(t, st.Close())
}

// TestPayloadsInLogLost: a crashed file copied without its log has lost
// the payloads it read from there: Check reports each missing, a read
// says which event is damaged, and a lease sets those events aside
// instead of failing every lease.
func TestPayloadsInLogLost(t *testing.T) {
	t.Parallel()
	b := setup(t, walOptions())
	evs := append(bigEvents(3, "fn"), newEvents(2, "fn")...)
	enqueue(t, b.st, evs...)
	scanAll(t, b.st)
	cp := copyWithLog(t, b.path)
	require.NoError(t, os.RemoveAll(logDir(cp)))

	rep, err := Check(cp)
	require.NoError(t, err)
	require.False(t, rep.OK())
	require.EqualValues(t, 2, rep.Events, "the events whose payloads are in the file")
	for _, seq := range []string{"event 1", "event 2", "event 3"} {
		require.True(t, slices.ContainsFunc(rep.Problems, func(p Problem) bool {
			return p.Where == seq && strings.Contains(p.What, "write-ahead log")
		}), "%s: %v", seq, rep.Problems)
	}

	var logged bytes.Buffer
	o := walOptions()
	o.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	st, err := Open(cp, o)
	require.NoError(t, err)
	defer st.Close()
	require.Contains(t, logged.String(), "payloadsLost=3")
	_, err = st.Get(1)
	var ce *CorruptError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "event 1", ce.What)

	leased, err := st.Lease(context.Background(), 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, leased, 2, "the two whose payloads are whole")
	s := stats(t, st)
	require.EqualValues(t, 3, s.Corrupt, "set aside, not lost silently")
}

// TestCloseMovesPayloadsIntoTheFile: after Close the file holds every
// payload itself: it checks sound, and opens read-only, without its log.
func TestCloseMovesPayloadsIntoTheFile(t *testing.T) {
	t.Parallel()
	b := setup(t, walOptions())
	evs := bigEvents(4, "fn")
	enqueue(t, b.st, evs...)
	scanAll(t, b.st)
	require.NoError(t, b.st.Close())
	inFile, inLog := placement(t, b.path, nil)
	require.Equal(t, 4, inFile)
	require.Zero(t, inLog)

	require.NoError(t, os.RemoveAll(logDir(b.path)))
	rep, err := Check(b.path)
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
	st, err := Open(b.path, Options{ReadOnly: true})
	require.NoError(t, err)
	got := scanAll(t, st)
	require.NoError(t, st.Close())
	require.Len(t, got, 4)
	require.Equal(t, evs[2].Payload, got[2].Payload)
	b.st, err = Open(b.path, walOptions())
	require.NoError(t, err)
}

// TestPayloadsMoveWhenTheLogGrows: payloads that lie too far behind the
// log's end move into the file, so that unacknowledged events cannot keep
// the log growing; the log's segments below them are recycled.
func TestPayloadsMoveWhenTheLogGrows(t *testing.T) {
	// Not parallel: it shrinks the package's bounds.
	keep, moveMax := logKeep, logMoveMax
	logKeep, logMoveMax = 1<<20, 64<<10
	defer func() { logKeep, logMoveMax = keep, moveMax }()

	b := setup(t, walOptions())
	ctx := context.Background()
	first := enqueue(t, b.st, bigEvents(10, "old")...)
	scanAll(t, b.st)
	// About 12 MiB more, acked as it comes, each batch applied by the
	// lease that takes it.
	for range 40 {
		enqueue(t, b.st, bigEvents(1000, "new")...)
		leased, err := b.st.Lease(ctx, 2000, time.Minute)
		require.NoError(t, err)
		seqs := seqsOf(leased)
		for i := len(seqs) - 1; i >= 0; i-- {
			if seqs[i] <= first[len(first)-1] {
				seqs = append(seqs[:i], seqs[i+1:]...)
			}
		}
		require.NoError(t, b.st.Ack(ctx, seqs...))
	}
	inFile, inLog := placement(t, "", b.st.db)
	require.Equal(t, 10, inFile, "the old events' payloads moved into the file")
	require.Zero(t, inLog)
	size := logSize(t, b.path)
	require.LessOrEqual(t, size, int64(2*wal.DefaultSegmentSize), "segments below the moved payloads were recycled")

	got := scanAll(t, b.st)
	require.Len(t, got, 10)
	for i, e := range got {
		require.Equal(t, first[i], e.Seq)
		require.Equal(t, bigEvents(10, "old")[i].Payload, e.Payload)
	}
}

// logSize is the bytes of the segments in the log of the queue at path.
func logSize(t *testing.T, path string) int64 {
	t.Helper()
	ents, err := os.ReadDir(logDir(path))
	require.NoError(t, err)
	var n int64
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".wal") {
			fi, err := e.Info()
			require.NoError(t, err)
			n += fi.Size()
		}
	}
	return n
}

// TestLogKeepFollowsTheCap: a queue capped in bytes keeps payloads in the
// log over at most half its cap, never less than two segments.
func TestLogKeepFollowsTheCap(t *testing.T) {
	t.Parallel()
	require.Equal(t, logKeep, logKeepFor(0), "no cap")
	require.Equal(t, logKeep, logKeepFor(1<<30), "a large cap")
	require.Equal(t, wal.Position(16<<20), logKeepFor(32<<20), "half of a small cap")
	require.Equal(t, wal.Position(minLogKeep), logKeepFor(1<<20), "at least two segments")
}
