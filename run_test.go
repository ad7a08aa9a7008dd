package dispatcher_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/internal/sqstest"
	"github.com/lambdadispatch/dispatcher/lambdatest"
	"github.com/lambdadispatch/dispatcher/retry"
	"github.com/lambdadispatch/dispatcher/store"
)

func TestRunDelivers(t *testing.T) {
	t.Parallel()
	b := setup(t, withServer())
	b.srv.Register("orders", lambdatest.OK())
	ids := b.enqueue(t, "orders", 300)
	b.start(t)
	st := waitStats(t, b.d, "all delivered", func(s dispatcher.Stats) bool { return s.Delivered == 300 })
	require.Zero(t, st.Queued())
	require.Zero(t, st.DeadLettered)

	seen := attemptsByID(t, b.srv, "orders")
	require.Len(t, seen, 300)
	for _, id := range ids {
		invs := seen[id]
		require.Len(t, invs, 1, "event %s", id)
		require.Equal(t, "Event", string(invs[0].InvocationType))
		var m meta
		require.NoError(t, json.Unmarshal(invs[0].Payload, &m))
		require.Equal(t, 1, m.Dispatch.Attempt)
	}
}

// TestRunMixOfFaults sends events to functions that succeed, fail for a
// while, fail always, or do not exist, and checks that every event ends
// delivered or dead-lettered with the right reason and attempt count.
//
// It runs a fifth of the events and faults it once did (DISPATCH_SOAK=1
// runs them all): every count and its fault share keep their proportions,
// so the flaky function still throttles, fails and recovers across 32
// invokes in flight, and each kind of event is still tens strong.
func TestRunMixOfFaults(t *testing.T) {
	t.Parallel()
	scale := 5
	if soak() {
		scale = 1
	}
	b := setup(t, withServer(), with(dispatcher.WithConcurrency(32)))
	b.srv.Register("ok", lambdatest.OK())
	b.srv.Register("flaky", lambdatest.OK())
	b.srv.Register("broken", lambdatest.OK())
	b.srv.Fail("flaky", lambdatest.Throttle(150/scale, 0))
	b.srv.Fail("flaky", lambdatest.ServerError(150/scale))
	b.srv.Fail("flaky", lambdatest.Error(100/scale, 502, "EC2ThrottledException"))
	b.srv.Fail("broken", lambdatest.Error(0, 500, "ServiceException"))
	b.srv.Fail("kms", lambdatest.Error(0, 502, "KMSAccessDeniedException"))

	each, broken, missing, kms := 500/scale, 100/scale, 100/scale, 50/scale
	okIDs := b.enqueue(t, "ok", each)
	flakyIDs := b.enqueue(t, "flaky", each)
	brokenIDs := b.enqueue(t, "broken", broken)
	missingIDs := b.enqueue(t, "missing", missing)
	kmsIDs := b.enqueue(t, "kms", kms)
	total := uint64(2*each + broken + missing + kms)
	b.start(t)
	st := waitStats(t, b.d, "every event settled", func(s dispatcher.Stats) bool {
		return s.Delivered+s.DeadLettered == total
	})
	require.Zero(t, st.Queued(), "nothing left behind")

	ok := attemptsByID(t, b.srv, "ok")
	for _, id := range okIDs {
		require.Len(t, ok[id], 1)
	}
	letters := map[string]deadletter.Letter{}
	var next string
	for {
		page, cursor, err := b.d.DeadLetters().List(context.Background(), next, 1000)
		require.NoError(t, err)
		for _, l := range page {
			letters[l.ID] = l
		}
		if cursor == "" {
			break
		}
		next = cursor
	}
	require.Len(t, letters, int(st.DeadLettered))

	// flaky: each event either got through on attempt 1–3, or failed three
	// times and was dead-lettered as retries exhausted.
	flaky := attemptsByID(t, b.srv, "flaky")
	delivered := 0
	for _, id := range flakyIDs {
		invs := flaky[id]
		require.NotEmpty(t, invs, "event %s never tried", id)
		require.LessOrEqual(t, len(invs), 3, "event %s tried more than three times", id)
		for i, inv := range invs {
			var m meta
			require.NoError(t, json.Unmarshal(inv.Payload, &m))
			require.Equal(t, i+1, m.Dispatch.Attempt, "event %s: attempts counted in order", id)
		}
		if last := invs[len(invs)-1]; !last.Faulted {
			delivered++
			require.NotContains(t, letters, id)
			continue
		}
		l, ok := letters[id]
		require.True(t, ok, "event %s failed three times but is not a dead letter", id)
		require.Equal(t, deadletter.RetriesExhausted, l.Reason)
		require.Equal(t, 3, l.Attempts)
	}
	require.Positive(t, delivered)

	brokenInvs := attemptsByID(t, b.srv, "broken")
	for _, id := range brokenIDs {
		require.Len(t, brokenInvs[id], 3, "two retries, three attempts")
		l := letters[id]
		require.Equal(t, deadletter.RetriesExhausted, l.Reason)
		require.Equal(t, 3, l.Attempts)
		require.Equal(t, "ServiceException", l.LastError.Code)
		require.Equal(t, 500, l.LastError.StatusCode)
		require.NotEmpty(t, l.LastError.RequestID)
		require.False(t, l.FirstAttempt.IsZero())
		require.False(t, l.LastAttempt.Before(l.FirstAttempt))
	}
	for _, id := range missingIDs {
		l := letters[id]
		require.Equal(t, deadletter.Rejected, l.Reason, "404 is permanent: dead-lettered at once")
		require.Equal(t, 1, l.Attempts)
		require.Equal(t, "ResourceNotFoundException", l.LastError.Code)
		require.Equal(t, "missing", l.Function)
	}
	for _, id := range kmsIDs {
		l := letters[id]
		require.Equal(t, deadletter.Rejected, l.Reason, "a 502 configuration error is permanent")
		require.Equal(t, 1, l.Attempts)
	}
	require.Equal(t, uint64(each+delivered), st.Delivered)
	require.Equal(t, uint64(broken+missing+kms+each-delivered), st.DeadLettered)
	require.Equal(t, uint64(missing+kms), st.DeadLetteredBy[deadletter.Rejected])
	require.Positive(t, st.Throttled, "throttling lowered the in-flight limit")
}

// TestRunEventAge moves the queue's clock: an event enqueued long before
// its first attempt is still retried (age runs from the first attempt, so a
// backlog buffered offline is not dead-lettered for its age), while one
// found past MaxEventAge when its retry comes due is dead-lettered without
// another invoke, with the attempts it really had. Retries are an hour
// apart on the moved clock, so each attempt waits for the test to move it.
func TestRunEventAge(t *testing.T) {
	t.Parallel()
	elapsed, move := movableElapsed()
	p := fastPolicy()
	p.InitialInterval, p.MaxInterval, p.RandomizationFactor = time.Hour, time.Hour, 0
	p.MaxEventAge = 3 * time.Hour
	b := setup(t, withServer(), with(dispatcher.WithElapsed(elapsed), dispatcher.WithRetryPolicy(p)))
	b.srv.Register("fn", lambdatest.OK())

	b.srv.Fail("fn", lambdatest.ServerError(2))
	old := b.enqueue(t, "fn", 1)[0]
	move(5 * time.Hour) // buffered five hours before its first attempt
	b.start(t)
	waitStats(t, b.d, "first attempt failed", func(s dispatcher.Stats) bool { return s.Retried == 1 })
	move(time.Hour)
	waitStats(t, b.d, "second attempt failed", func(s dispatcher.Stats) bool { return s.Retried == 2 })
	move(time.Hour)
	st := waitStats(t, b.d, "delivered", func(s dispatcher.Stats) bool { return s.Delivered == 1 })
	require.Zero(t, st.DeadLettered, "seven hours after enqueue, two after its first attempt: still retried")
	require.Len(t, attemptsByID(t, b.srv, "fn")[old], 3)

	b.srv.Fail("fn", lambdatest.ServerError(2))
	late := b.enqueue(t, "fn", 1)[0]
	waitStats(t, b.d, "first attempt failed", func(s dispatcher.Stats) bool { return s.Retried == 3 })
	move(4 * time.Hour) // the retry comes due four hours after the first attempt
	st = waitStats(t, b.d, "dead-lettered", func(s dispatcher.Stats) bool { return s.DeadLettered == 1 })
	require.Equal(t, uint64(1), st.DeadLetteredBy[deadletter.EventAgeExceeded])
	l, err := b.d.DeadLetters().Get(late)
	require.NoError(t, err)
	require.Equal(t, deadletter.EventAgeExceeded, l.Reason)
	require.Equal(t, 1, l.Attempts, "the attempt its lease counted was never made")
	require.Len(t, attemptsByID(t, b.srv, "fn")[late], 1, "not invoked past its age")
	require.Equal(t, "ServiceException", l.LastError.Code, "the error of the last attempt made")
}

// TestRunOffline takes the endpoint away: no attempt is spent, nothing is
// dead-lettered, and the backlog drains once it is back.
func TestRunOffline(t *testing.T) {
	t.Parallel()
	b := setup(t, withServer())
	b.srv.Register("edge", lambdatest.OK())
	b.srv.Offline()
	ids := b.enqueue(t, "edge", 200)
	b.start(t)
	waitStats(t, b.d, "dispatch paused", func(s dispatcher.Stats) bool { return s.Paused })
	// Let probes fail a few times while offline.
	time.Sleep(100 * time.Millisecond)
	st := b.d.Stats()
	require.Zero(t, st.DeadLettered)
	require.Zero(t, st.Delivered)
	require.NoError(t, b.srv.Online())
	st = waitStats(t, b.d, "backlog drained", func(s dispatcher.Stats) bool { return s.Delivered == 200 })
	require.False(t, st.Paused)
	require.Zero(t, st.DeadLettered)
	seen := attemptsByID(t, b.srv, "edge")
	for _, id := range ids {
		require.Len(t, seen[id], 1)
		var m meta
		require.NoError(t, json.Unmarshal(seen[id][0].Payload, &m))
		require.Equal(t, 1, m.Dispatch.Attempt, "failed attempts while offline were not counted")
	}
}

// TestRunShutdown cancels Run with invocations in flight: it returns
// promptly, finished ones are settled, the rest are back in the queue, and
// goleak (TestMain) finds no goroutine left.
func TestRunShutdown(t *testing.T) {
	t.Parallel()
	b := setup(t, withServer(), with(dispatcher.WithConcurrency(8), dispatcher.WithDrainTimeout(5*time.Second)))
	b.srv.Register("slow", lambdatest.OK())
	b.srv.Fail("slow", lambdatest.Latency(200*time.Millisecond))
	b.enqueue(t, "slow", 40)
	b.start(t)
	// Halt once the first wave has answered: the next wave follows at once
	// and is on the wire. (Waiting on Stats.Leased could not tell leased
	// from in flight: the leaser holds up to four limits ahead.)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, b.srv.WaitCount(ctx, "slow", 8))
	start := time.Now()
	b.halt(t)
	require.Less(t, time.Since(start), 5*time.Second)
	st := b.d.Stats()
	require.Zero(t, st.Leased, "no lease outlives Run")
	require.Equal(t, uint64(40), st.Delivered+uint64(st.Ready))
	require.GreaterOrEqual(t, st.Delivered, uint64(8))
	require.Equal(t, uint64(b.srv.Count("slow")), st.Delivered,
		"every invocation that reached Lambda was let finish and acked, none cut off")
}

func TestRunTwiceAndClose(t *testing.T) {
	t.Parallel()
	b := setup(t, withServer())
	b.start(t)
	waitStats(t, b.d, "running", func(s dispatcher.Stats) bool { return s.Running })
	require.ErrorIs(t, b.d.Run(context.Background()), dispatcher.ErrRunning)
	require.NoError(t, b.d.Close(), "Close stops Run")
	require.NoError(t, <-b.errc)
	b.stop = nil
	require.ErrorIs(t, b.d.Run(context.Background()), dispatcher.ErrClosed)
}

func TestCheck(t *testing.T) {
	t.Parallel()
	b := setup(t, withServer())
	b.srv.Register("orders", lambdatest.OK())
	require.NoError(t, b.d.Check(context.Background(), "orders"))
	require.Zero(t, b.srv.Count("orders")-1, "one DryRun")
	require.Equal(t, "DryRun", string(b.srv.Invocations("orders")[0].InvocationType))

	err := b.d.Check(context.Background(), "nope")
	var ie *retry.InvokeError
	require.ErrorAs(t, err, &ie)
	require.Equal(t, "ResourceNotFoundException", ie.Code)
	require.Equal(t, 404, ie.StatusCode)
	require.NotEmpty(t, ie.RequestID)
	require.Equal(t, retry.Permanent, ie.Class)

	require.ErrorIs(t, b.d.Check(context.Background(), "bad name"), dispatcher.ErrInvalidEvent)

	d, err := dispatcher.Open(filepath.Join(t.TempDir(), "x.db"))
	require.NoError(t, err)
	defer d.Close()
	require.ErrorIs(t, d.Check(context.Background(), "orders"), dispatcher.ErrNoLambda)
	require.ErrorIs(t, d.Run(context.Background()), dispatcher.ErrNoLambda)
}

// TestRunFailingSinkLosesNothing dead-letters through a sink that fails
// at first: the events stay queued until the sink takes them, each once.
func TestRunFailingSinkLosesNothing(t *testing.T) {
	t.Parallel()
	sink := newFlakySink(5)
	b := setup(t, withServer(), with(dispatcher.WithDeadLetter(sink), dispatcher.WithoutDeadLetterFallback()))
	ids := b.enqueue(t, "missing", 20)
	b.start(t)
	// Both in one condition: Stats reads the queue's counts and the
	// delivery counters at two moments, so a snapshot taken between the
	// last removal's commit and its count can show the one without the
	// other.
	waitStats(t, b.d, "all dead-lettered", func(s dispatcher.Stats) bool { return s.DeadLettered == 20 && s.Queued() == 0 })
	got, failures := sink.state()
	require.Zero(t, failures)
	for _, id := range ids {
		require.Equal(t, 1, got[id], "letter %s", id)
	}
}

// TestRunSinkFallsBackToTheFile: letters a remote sink refuses are kept in
// the queue's file instead, where they can be listed and redriven.
func TestRunSinkFallsBackToTheFile(t *testing.T) {
	t.Parallel()
	sink := newFlakySink(5)
	b := setup(t, withServer(), with(dispatcher.WithDeadLetter(sink)))
	ids := b.enqueue(t, "missing", 20)
	b.start(t)
	waitStats(t, b.d, "all dead-lettered", func(s dispatcher.Stats) bool { return s.DeadLettered == 20 && s.Queued() == 0 })
	local, _, err := b.d.DeadLetters().List(context.Background(), "", 100)
	require.NoError(t, err)
	require.Len(t, local, 5, "the refused letters are kept in the file")
	got, _ := sink.state()
	require.Len(t, got, 15)
	for _, l := range local {
		require.Zero(t, got[l.ID], "letter %s in both places", l.ID)
		got[l.ID] = 1
	}
	for _, id := range ids {
		require.Equal(t, 1, got[id], "letter %s lost", id)
	}
}

// flakySink refuses its first letters, then takes and counts the rest.
type flakySink struct {
	mu       sync.Mutex
	failures int
	got      map[string]int
}

func newFlakySink(failures int) *flakySink {
	return &flakySink{failures: failures, got: map[string]int{}}
}

func (s *flakySink) Put(_ context.Context, l deadletter.Letter) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failures > 0 {
		s.failures--
		return errors.New("sink unavailable")
	}
	s.got[l.ID]++
	return nil
}

// state returns a copy of the letters taken, by id, and the failures left.
func (s *flakySink) state() (map[string]int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.got), s.failures
}

// TestRunCredentialsPause fails the credentials provider: dispatch pauses
// without spending attempts and resumes when credentials come back.
func TestRunCredentialsPause(t *testing.T) {
	t.Parallel()
	var ok atomic.Bool
	srv := lambdatest.NewServer()
	t.Cleanup(srv.Close)
	srv.Register("fn", lambdatest.OK())
	client := srv.Client(func(o *lambda.Options) {
		o.Credentials = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			if !ok.Load() {
				return aws.Credentials{}, errors.New("no EC2 IMDS role found")
			}
			return aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "SECRET", Source: "test"}, nil
		})
	})
	b := setup(t, with(dispatcher.WithLambda(client),
		dispatcher.WithRetryPolicy(fastPolicy()), dispatcher.WithPayloadMetadata("_dispatch")))
	d := b.d
	b.enqueue(t, "fn", 30)
	b.start(t)
	waitStats(t, d, "paused", func(s dispatcher.Stats) bool { return s.Paused })
	require.Zero(t, srv.Count("fn"), "no request leaves without credentials")
	ok.Store(true)
	st := waitStats(t, d, "delivered", func(s dispatcher.Stats) bool { return s.Delivered == 30 })
	require.Zero(t, st.DeadLettered)
	for id, invs := range attemptsByID(t, srv, "fn") {
		var m meta
		require.NoError(t, json.Unmarshal(invs[0].Payload, &m))
		require.Equal(t, 1, m.Dispatch.Attempt, "event %s: the paused attempts were given back", id)
	}
}

// TestRunRateLimit checks the cap from below only: a slow machine can make
// dispatch slower, never faster.
func TestRunRateLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, withServer(), with(dispatcher.WithRateLimit(100)))
	b.srv.Register("fn", lambdatest.OK())
	b.enqueue(t, "fn", 30)
	start := time.Now()
	b.start(t)
	waitStats(t, b.d, "delivered", func(s dispatcher.Stats) bool { return s.Delivered == 30 })
	require.GreaterOrEqual(t, time.Since(start), 290*time.Millisecond, "30 events at 100/s take at least 0.29 s")
}

// TestRunLogs checks the state changes are logged and payloads are not.
func TestRunLogs(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&lockedWriter{mu: &mu, w: &buf}, nil))
	b := setup(t, withServer(), with(dispatcher.WithLogger(logger), dispatcher.WithLogPayloadSizes()))
	b.srv.Register("fn", lambdatest.OK())
	_, err := b.d.Enqueue(context.Background(), dispatcher.Event{Function: "missing", Payload: []byte(`{"secret":"hunter2"}`)})
	require.NoError(t, err)
	b.srv.Offline()
	b.enqueue(t, "fn", 1)
	b.start(t)
	waitStats(t, b.d, "paused", func(s dispatcher.Stats) bool { return s.Paused })
	require.NoError(t, b.srv.Online())
	waitStats(t, b.d, "settled", func(s dispatcher.Stats) bool { return s.Delivered == 1 && s.DeadLettered == 1 })
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	require.Contains(t, out, "dispatch paused")
	require.Contains(t, out, "dispatch resumed")
	require.Contains(t, out, "dead-lettered an event")
	require.Contains(t, out, `"payload_bytes":20`)
	require.NotContains(t, out, "hunter2", "payloads are never logged")
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestInvokeTimeout: an Invoke that runs past WithInvokeTimeout is cut off
// and counts as a transient failure; the same worker's next calls, under a
// fresh deadline, go through.
func TestInvokeTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, withServer(), with(dispatcher.WithConcurrency(1), dispatcher.WithInvokeTimeout(50*time.Millisecond)))
	b.srv.Register("slow", lambdatest.OK())
	b.srv.Register("fn", lambdatest.OK())
	b.srv.Fail("slow", lambdatest.Latency(time.Minute))
	ctx := context.Background()
	slow, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "slow", Payload: []byte(`{}`)})
	require.NoError(t, err)
	for range 3 {
		_, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "fn", Payload: []byte(`{}`)})
		require.NoError(t, err)
	}
	b.start(t)
	waitStats(t, b.d, "all settled", func(s dispatcher.Stats) bool { return s.Delivered == 3 && s.DeadLettered == 1 })
	l, err := b.d.DeadLetters().Get(slow.ID)
	require.NoError(t, err)
	require.Equal(t, deadletter.RetriesExhausted, l.Reason)
	require.Equal(t, 3, l.Attempts)
	require.Contains(t, l.LastError.Message, "WithInvokeTimeout")
}

// TestRunRateLimitStopsAtCancel: at 1/s, events wait their turn; when Run's
// context ends, none of them starts, Run returns at once rather than after
// the drain timeout, and they go back with their attempt refunded.
func TestRunRateLimitStopsAtCancel(t *testing.T) {
	t.Parallel()
	b := setup(t, withServer(), with(dispatcher.WithRateLimit(1)))
	b.srv.Register("fn", lambdatest.OK())
	b.enqueue(t, "fn", 20)
	b.start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, b.srv.WaitCount(ctx, "fn", 1))

	b.stop()
	cancelled := time.Now()
	select {
	case err := <-b.errc:
		require.NoError(t, err)
	case <-time.After(3 * time.Second):
		t.Fatalf("Run did not return within 3s of its context ending (drain timeout %v)", dispatcher.DefaultDrainTimeout)
	}
	b.stop = nil
	for _, inv := range b.srv.Invocations("fn") {
		require.False(t, inv.Received.After(cancelled), "invocation received %v after the cancel", inv.Received.Sub(cancelled))
	}
	n := b.srv.Count("fn")
	st := b.d.Stats()
	require.Zero(t, st.Leased)
	require.Equal(t, int64(20-n), st.Ready)
	require.NoError(t, dispatcher.ScanEvents(b.d, func(e store.Event) error {
		require.Zero(t, e.Attempts, "event %d waited for its turn and was never tried", e.Seq)
		return nil
	}))
}

// TestRateLimitValues: 0 means no limit; what is not a positive finite
// rate with an interval that fits a time.Duration is refused at Open.
func TestRateLimitValues(t *testing.T) {
	t.Parallel()
	for _, v := range []float64{0, 1e-9, 0.5, 1e9} {
		d, err := dispatcher.Open(filepath.Join(t.TempDir(), "ok.db"), dispatcher.WithRateLimit(v))
		require.NoError(t, err, "rate %v", v)
		require.NoError(t, d.Close())
	}
	for _, v := range []float64{-1, math.Inf(-1), math.Inf(1), math.NaN(), 1e-10, math.SmallestNonzeroFloat64} {
		d, err := dispatcher.Open(filepath.Join(t.TempDir(), "bad.db"), dispatcher.WithRateLimit(v))
		require.Error(t, err, "rate %v", v)
		require.Nil(t, d)
		require.Contains(t, err.Error(), "WithRateLimit")
	}
}

// TestSQSSinkWithFallback dead-letters through the real SQS client: letters
// reach the queue with Lambda's attributes; one too large for SQS, and all
// of them while SQS is down, stay in the queue's file; none is lost.
func TestSQSSinkWithFallback(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	q := sqstest.NewServer()
	t.Cleanup(q.Close)
	queueURL := q.CreateQueue("dlq")
	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	client := sqs.New(sqs.Options{
		BaseEndpoint: aws.String(q.URL()), Region: "us-east-1", RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		HTTPClient:  &http.Client{Transport: transport},
	})
	b := setup(t, withServer(), with(dispatcher.WithDeadLetter(deadletter.NewSQS(client, queueURL)), dispatcher.WithMaxPayload(1<<20)))
	b.enqueue(t, "missing", 3)
	big := []byte(`"` + strings.Repeat("x", 300<<10) + `"`)
	_, err := b.d.Enqueue(ctx, dispatcher.Event{Function: "missing", Payload: big})
	require.NoError(t, err)
	b.start(t)
	waitStats(t, b.d, "dead-lettered", func(s dispatcher.Stats) bool { return s.DeadLettered == 4 })

	msgs := q.Messages(queueURL)
	require.Len(t, msgs, 3)
	for _, m := range msgs {
		require.Contains(t, m.Body, `"n":`, "the body is the event's payload")
		require.Equal(t, "404", m.Attributes["ErrorCode"].StringValue)
		require.Equal(t, "Number", m.Attributes["ErrorCode"].DataType)
		require.NotEmpty(t, m.Attributes["RequestID"].StringValue)
		require.Contains(t, m.Attributes["ErrorMessage"].StringValue, "Function not found")
	}
	local, _, err := b.d.DeadLetters().List(ctx, "", 10)
	require.NoError(t, err)
	require.Len(t, local, 1, "the letter over SQS's limit is kept in the file, not truncated")
	require.Equal(t, big, local[0].Payload)

	q.Fail(2, 500, "InternalError")
	b.enqueue(t, "missing", 3)
	waitStats(t, b.d, "dead-lettered while SQS errs", func(s dispatcher.Stats) bool { return s.DeadLettered == 7 })
	c, err := b.d.DeadLetters().Count()
	require.NoError(t, err)
	require.Equal(t, 3, c, "the two letters SQS refused with an error land locally")
	require.Len(t, q.Messages(queueURL), 4)

	q.Offline()
	b.enqueue(t, "missing", 2)
	waitStats(t, b.d, "dead-lettered while SQS is down", func(s dispatcher.Stats) bool { return s.DeadLettered == 9 })
	c, err = b.d.DeadLetters().Count()
	require.NoError(t, err)
	require.Equal(t, 5, c, "letters land locally while the remote sink is down")
}
