package wal

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The crash test's child: a process appending numbered records and
// printing each number once Sync has returned, until it is killed.
const (
	crashChildEnv = "WAL_CRASH_CHILD" // the directory of the log and its checkpoint
	crashSeedEnv  = "WAL_CRASH_SEED"
)

// TestCrash kills a process appending to the log at random moments (in
// the middle of Appends, Syncs, rollovers, recycling, preparing segments,
// even Open and Replay) and checks after each, in this process and in the
// next child, that every record it acknowledged is there, in order, once,
// and nothing else is.
func TestCrash(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	rng := rand.New(rand.NewPCG(21, 22))
	var acked uint64 // the highest number acknowledged by any child
	torn := 0
	const rounds = 20
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+root, crashSeedEnv+"="+strconv.Itoa(round))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())

		var once sync.Once
		kill := func() { once.Do(func() { _ = cmd.Process.Kill() }) } // SIGKILL
		watchdog := time.AfterFunc(30*time.Second, kill)
		var timers []*time.Timer
		if round%5 == 4 {
			// Anywhere from start-up on: Open, Replay, the first Appends.
			timers = append(timers, time.AfterFunc(time.Duration(rng.IntN(150))*time.Millisecond, kill))
		}
		killAfter := 1 + rng.IntN(60)
		delay := time.Duration(rng.IntN(1500)) * time.Microsecond
		acks := 0
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 4 && f[0] == "replayed":
				last, err := strconv.ParseUint(f[2], 10, 64)
				require.NoError(t, err)
				require.GreaterOrEqual(t, last, acked, "round %d: records acknowledged before the kill are missing (%s)", round, sc.Text())
			case len(f) == 2 && f[0] == "ack":
				n, err := strconv.ParseUint(f[1], 10, 64)
				require.NoError(t, err)
				require.Greater(t, n, acked)
				acked = n
				if acks++; acks == killAfter {
					timers = append(timers, time.AfterFunc(delay, kill))
				}
			default:
				t.Fatalf("round %d: child printed %q", round, sc.Text())
			}
		}
		err = cmd.Wait()
		watchdog.Stop()
		for _, tm := range timers {
			tm.Stop()
		}
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, "round %d: %s", round, stderr.String())
		ws, ok := ee.Sys().(syscall.WaitStatus)
		require.True(t, ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL, "round %d: child ended with %v: %s", round, err, stderr.String())

		// Every record acknowledged, in order, once, intact. The log is
		// then left as a crash leaves it (no close mark), so that the
		// next child finds the tail this one left.
		l, err := Open(filepath.Join(root, "wal"), Options{SegmentSize: small})
		require.NoError(t, err)
		last, tail, err := replayNumbered(l, readCheckpoint(t, root))
		require.NoError(t, err, "round %d", round)
		require.GreaterOrEqual(t, last, acked, "round %d: records acknowledged before the kill are missing", round)
		if tail.Torn {
			torn++
		}
		crash(t, l)
		if round == rounds-1 {
			t.Logf("%d records acknowledged over %d kills, %d in the log; %d replays found a torn tail", acked, rounds, last, torn)
		}
	}
}

// TestHelperProcess is the crash test's child when run with crashChildEnv
// set, and does nothing otherwise.
func TestHelperProcess(t *testing.T) {
	root := os.Getenv(crashChildEnv)
	if root == "" {
		t.Skip("the crash test's child process")
	}
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
		os.Exit(3)
	}
	seed, _ := strconv.ParseUint(os.Getenv(crashSeedEnv), 10, 64)
	rng := rand.New(rand.NewPCG(seed, 23))
	l, err := Open(filepath.Join(root, "wal"), Options{SegmentSize: small})
	if err != nil {
		fail("open: %v", err)
	}
	ck := readCheckpoint(t, root)
	last, tail, err := replayNumbered(l, ck)
	if err != nil {
		fail("replay from %+v: %v", ck, err)
	}
	fmt.Printf("replayed %d %d %t\n", ck.num, last, tail.Torn)

	var synced []checkpoint // the ends of the last few batches synced
	for batch := 0; ; batch++ {
		recs := make([][]byte, 1+rng.IntN(8))
		for i := range recs {
			n := 16 + rng.IntN(1500)
			if rng.IntN(60) == 0 {
				n = small + rng.IntN(small) // a segment of its own
			}
			recs[i] = numbered(last+1+uint64(i), n)
		}
		_, end, err := l.Append(recs...)
		if err != nil {
			fail("append: %v", err)
		}
		if err := l.Sync(); err != nil {
			fail("sync: %v", err)
		}
		last += uint64(len(recs))
		fmt.Printf("ack %d\n", last)
		synced = append(synced, checkpoint{end, last})
		if batch%16 == 15 {
			// What a checkpoint does: record a position durably, then
			// recycle below it. It lags a few batches, as a real one would.
			c := synced[len(synced)-4]
			writeCheckpoint(root, c)
			if err := l.Recycle(c.pos); err != nil {
				fail("recycle: %v", err)
			}
			synced = synced[len(synced)-4:]
		}
	}
}

// checkpoint is what the crash test's checkpoint records: a position and
// the number of the last record before it.
type checkpoint struct {
	pos Position
	num uint64
}

func writeCheckpoint(root string, c checkpoint) {
	b := binary.LittleEndian.AppendUint64(nil, uint64(c.pos))
	b = binary.LittleEndian.AppendUint64(b, c.num)
	tmp := filepath.Join(root, "checkpoint.tmp")
	f, err := os.Create(tmp)
	if err == nil {
		_, err = f.Write(b)
		err = errors.Join(err, f.Sync(), f.Close())
	}
	err = errors.Join(err, os.Rename(tmp, filepath.Join(root, "checkpoint")), syncDir(root))
	if err != nil {
		fmt.Fprintln(os.Stderr, "checkpoint:", err)
		os.Exit(3)
	}
}

func readCheckpoint(t *testing.T, root string) checkpoint {
	b, err := os.ReadFile(filepath.Join(root, "checkpoint"))
	if errors.Is(err, os.ErrNotExist) {
		return checkpoint{}
	}
	if err != nil || len(b) != 16 {
		t.Fatalf("checkpoint: %v (%d bytes)", err, len(b))
	}
	return checkpoint{Position(binary.LittleEndian.Uint64(b)), binary.LittleEndian.Uint64(b[8:])}
}

// replayNumbered replays from the checkpoint, checking that the records
// are numbered from the checkpoint's on without a gap or a repeat, and
// that each holds exactly what numbered wrote.
func replayNumbered(l *Log, ck checkpoint) (last uint64, tail Tail, err error) {
	last = ck.num
	tail, err = l.Replay(ck.pos, func(p Position, data []byte) error {
		n, ok := parseNumbered(data)
		switch {
		case !ok:
			return fmt.Errorf("garbage at %#x (%d bytes)", uint64(p), len(data))
		case n != last+1:
			return fmt.Errorf("record %d at %#x after %d", n, uint64(p), last)
		}
		last = n
		return nil
	})
	return last, tail, err
}

// numbered is record n, of size bytes: the number, then bytes that depend
// on it.
func numbered(n uint64, size int) []byte {
	b := binary.LittleEndian.AppendUint64(make([]byte, 0, size), n)
	for i := 8; i < size; i++ {
		b = append(b, byte(n*7+uint64(i)*13))
	}
	return b
}

func parseNumbered(b []byte) (uint64, bool) {
	if len(b) < 8 {
		return 0, false
	}
	n := binary.LittleEndian.Uint64(b)
	for i := 8; i < len(b); i++ {
		if b[i] != byte(n*7+uint64(i)*13) {
			return 0, false
		}
	}
	return n, true
}
