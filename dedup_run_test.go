package dispatcher_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/lambdatest"
)

// keysSeen counts the Event invocations of fn by the key in their metadata.
func keysSeen(t *testing.T, srv *lambdatest.Server, fn string) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for _, inv := range srv.Invocations(fn) {
		if inv.InvocationType != "Event" || inv.Status != 202 {
			continue
		}
		var m meta
		require.NoError(t, json.Unmarshal(inv.Payload, &m))
		seen[m.Dispatch.Key]++
	}
	return seen
}

// TestDedupEndToEnd enqueues 2,000 events of which 30 % repeat a key, in
// random order, while Run delivers: the function sees each key once.
//
// 2,000 events in 20 batches show what 10,000 did: a repeat arrives before,
// during and after the delivery of its key's first event, since Run sends
// while the batches are still coming. DISPATCH_SOAK=1 runs 10,000.
func TestDedupEndToEnd(t *testing.T) {
	t.Parallel()
	b := setupRun(t, dispatcher.WithConcurrency(32))
	b.srv.Register("fn", lambdatest.OK())
	total, unique := 2_000, 1_400
	if soak() {
		total, unique = 10_000, 7_000
	}
	keys := make([]string, total)
	for i := range keys {
		if i < unique {
			keys[i] = fmt.Sprint("key-", i)
		} else {
			keys[i] = fmt.Sprint("key-", rand.IntN(unique))
		}
	}
	rand.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	b.start(t)
	batch := make([]dispatcher.Event, 0, 100)
	dups := 0
	for i, k := range keys {
		batch = append(batch, dispatcher.Event{Function: "fn", Key: k, Payload: fmt.Appendf(nil, `{"i":%d}`, i)})
		if len(batch) == cap(batch) {
			rs, err := b.d.EnqueueBatch(context.Background(), batch)
			require.NoError(t, err)
			for _, r := range rs {
				if r.Duplicate {
					dups++
				}
			}
			batch = batch[:0]
		}
	}
	require.Equal(t, total-unique, dups)
	st := waitStats(t, b.d, "all unique keys delivered", func(s dispatcher.Stats) bool { return s.Delivered == uint64(unique) })
	require.Equal(t, uint64(total-unique), st.Duplicates)
	require.Equal(t, uint64(unique), st.Enqueued)
	require.Zero(t, st.Queued())
	seen := keysSeen(t, b.srv, "fn")
	require.Len(t, seen, unique)
	for k, n := range seen {
		require.Equal(t, 1, n, "key %s reached the function %d times", k, n)
	}
}

// TestDedupDeliverySide marks a queued event's key delivered, as another
// delivery would: the event is acked without an invoke.
func TestDedupDeliverySide(t *testing.T) {
	t.Parallel()
	b := setupRun(t)
	b.srv.Register("fn", lambdatest.OK())
	r, err := b.d.Enqueue(context.Background(), dispatcher.Event{Function: "fn", Key: "k1"})
	require.NoError(t, err)
	var seq uint64
	_, err = fmt.Sscan(r.ID, &seq)
	require.NoError(t, err)
	keys := idempotency.New(dispatcher.DBForTest(b.d))
	require.NoError(t, dispatcher.DBForTest(b.d).Update(func(tx *bolt.Tx) error {
		return keys.Mark(tx, "k1", seq, idempotency.Delivered)
	}))
	b.start(t)
	st := waitStats(t, b.d, "settled", func(s dispatcher.Stats) bool { return s.Delivered == 1 })
	require.Equal(t, uint64(1), st.Deduplicated)
	require.Zero(t, b.srv.Count("fn"), "no invoke")
}

// TestDedupMarksAndRedrive: a delivered key is marked delivered, a
// dead-lettered one dead-lettered, and a redrive sends it again under its
// key.
func TestDedupMarksAndRedrive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupRun(t)
	b.srv.Register("ok", lambdatest.OK())
	_, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "ok", Key: "good", Payload: []byte(`{}`)})
	require.NoError(t, err)
	bad, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "missing", Key: "bad", Payload: []byte(`{}`)})
	require.NoError(t, err)
	b.start(t)
	waitStats(t, b.d, "settled", func(s dispatcher.Stats) bool { return s.Delivered == 1 && s.DeadLettered == 1 })
	state := func(key string) idempotency.State {
		var e idempotency.Entry
		require.NoError(t, dispatcher.DBForTest(b.d).View(func(tx *bolt.Tx) error {
			var err error
			e, _, err = idempotency.New(dispatcher.DBForTest(b.d)).Lookup(tx, key, time.Now())
			return err
		}))
		return e.State
	}
	require.Equal(t, idempotency.Delivered, state("good"))
	require.Equal(t, idempotency.DeadLettered, state("bad"))
	again, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "missing", Key: "bad", Payload: []byte(`{}`)})
	require.NoError(t, err)
	require.True(t, again.Duplicate, "a dead-lettered key still holds its window")
	require.Equal(t, bad.ID, again.ID)

	b.srv.Register("fixed", lambdatest.OK())
	n, err := b.d.DeadLetters().Redrive(ctx, []string{bad.ID}, dispatcher.RedriveOptions{Function: "fixed"})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	waitStats(t, b.d, "redriven and delivered", func(s dispatcher.Stats) bool { return s.Delivered == 2 })
	require.Equal(t, idempotency.Delivered, state("bad"), "the redrive cleared the mark and the delivery set it again")
	require.Equal(t, map[string]int{"bad": 1}, keysSeen(t, b.srv, "fixed"))
}

// keyedChild enqueues 100 keyed events, says so, and waits to be killed.
func keyedChild() {
	d, err := dispatcher.Open(os.Getenv(childPathEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	for i := range 100 {
		if _, err := d.Enqueue(context.Background(), dispatcher.Event{Function: "fn", Key: fmt.Sprint("k", i), Payload: []byte(`{}`)}); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
	}
	fmt.Println("enqueued")
	time.Sleep(time.Hour)
}

// TestDedupSurvivesSIGKILL kills a process between enqueue and delivery:
// after a restart the keys still dedup, and each is delivered once.
func TestDedupSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "events.db")
	cmd, out := startChild(t, "keyed", childPathEnv+"="+path)
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "enqueued\n", line)
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()

	srv := lambdatest.NewServer()
	t.Cleanup(srv.Close)
	srv.Register("fn", lambdatest.OK())
	d, err := dispatcher.Open(path, dispatcher.WithLambda(srv.Client()), dispatcher.WithPayloadMetadata("_dispatch"))
	require.NoError(t, err)
	b := &runBundle{srv: srv, d: d}
	t.Cleanup(func() { _ = d.Close() })
	for i := range 100 {
		r, err := d.Enqueue(context.Background(), dispatcher.Event{Function: "fn", Key: fmt.Sprint("k", i), Payload: []byte(`{}`)})
		require.NoError(t, err)
		require.True(t, r.Duplicate, "key k%d survived the kill", i)
	}
	b.start(t)
	waitStats(t, d, "delivered", func(s dispatcher.Stats) bool { return s.Delivered == 100 })
	seen := keysSeen(t, srv, "fn")
	require.Len(t, seen, 100)
	for k, n := range seen {
		require.Equal(t, 1, n, "key %s", k)
	}
}
