package dynamo_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/idempotency/dynamo"
	"github.com/lambdadispatch/dispatcher/idempotency/sharedtest"
	"github.com/lambdadispatch/dispatcher/internal/dynalitetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	window = 10 * time.Minute
	lease  = 30 * time.Second
)

// t0 is the now of most claims: the conditions use the caller's clock, so
// tests move time by passing later nows, never by sleeping.
var t0 = time.UnixMilli(1_800_000_000_000)

// bundle is what a test against dynalite needs: a Window on its own
// table, reached through a fault proxy, and a client that bypasses the
// proxy for reading items as they are.
type bundle struct {
	w      *dynamo.Window
	proxy  *dynalitetest.FaultProxy
	direct *dynamodb.Client
	table  string
}

// setup makes a table on the dynalite at endpoint, and a Window on it.
func setup(t *testing.T, endpoint string, opts ...dynamo.Option) *bundle {
	t.Helper()
	direct := dynalitetest.Client(t, endpoint)
	table := dynalitetest.Table(t, direct, opts...)
	proxy := dynalitetest.NewFaultProxy(t, endpoint)
	w, err := dynamo.New(dynalitetest.Client(t, proxy.URL()), table, opts...)
	require.NoError(t, err)
	return &bundle{w: w, proxy: proxy, direct: direct, table: table}
}

// item returns the item of key as stored, nil if there is none.
func (b *bundle) item(t *testing.T, key string) map[string]types.AttributeValue {
	t.Helper()
	out, err := b.direct.GetItem(testContext(t), &dynamodb.GetItemInput{
		TableName:      aws.String(b.table),
		Key:            map[string]types.AttributeValue{"key": &types.AttributeValueMemberS{Value: key}},
		ConsistentRead: aws.Bool(true),
	})
	require.NoError(t, err)
	return out.Item
}

func (b *bundle) claim(t *testing.T, key, owner, token string, now time.Time) (idempotency.Holder, bool) {
	t.Helper()
	h, ok, err := b.w.Claim(testContext(t), idempotency.Claim{
		Key: key, Owner: owner, Token: token, Window: window, Lease: lease,
	}, now)
	require.NoError(t, err)
	return h, ok
}

func (b *bundle) mustClaim(t *testing.T, key, owner, token string, now time.Time) {
	t.Helper()
	h, ok := b.claim(t, key, owner, token, now)
	require.True(t, ok, "claim of %q by %s: held by %+v", key, owner, h)
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func n(v int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}

func s(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }

// TestDynamo runs the tests that need dynalite as subtests of one
// dynalite, each on its own table. It runs beside TestConformance, each on
// a dynalite of its own: dynalite answers on one thread, so two of them
// keep two cores busy where one would not.
func TestDynamo(t *testing.T) {
	t.Parallel()
	endpoint := dynalitetest.Start(t)
	for _, tt := range []struct {
		name string
		run  func(t *testing.T, endpoint string)
	}{
		{"ClaimFresh", testClaimFresh},
		{"Claim", testClaim},
		{"ClaimReplayReplacesToken", testClaimReplayReplacesToken},
		{"Confirm", testConfirm},
		{"Mark", testMark},
		{"Release", testRelease},
		{"Lookup", testLookup},
		{"ConcurrentClaims", testConcurrentClaims},
		{"Throttled", testThrottled},
		{"Offline", testOffline},
		{"MissingTable", testMissingTable},
		{"CanceledContext", testCanceledContext},
		{"TTLAttribute", testTTLAttribute},
		{"RuntimeActions", testRuntimeActions},
		{"CreateTable", testCreateTable},
		{"CreateTableWrongKeySchema", testCreateTableWrongKeySchema},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, endpoint)
		})
	}
}

// TestConformance runs the Shared conformance suite against a Window on
// one dynalite, each subtest on a table of its own.
func TestConformance(t *testing.T) {
	t.Parallel()
	endpoint := dynalitetest.Start(t)
	client := dynalitetest.Client(t, endpoint)
	sharedtest.Run(t, func(t *testing.T) idempotency.Shared {
		w, err := dynamo.New(client, dynalitetest.Table(t, client))
		require.NoError(t, err)
		return w
	})
}

func testClaimFresh(t *testing.T, endpoint string) {
	b := setup(t, endpoint)
	h, ok := b.claim(t, "k", "A", "tA", t0)
	require.True(t, ok)
	require.Zero(t, h)
	require.Equal(t, map[string]types.AttributeValue{
		"key":     s("k"),
		"owner":   s("A"),
		"token":   s("tA"),
		"state":   n(int64(idempotency.Claimed)),
		"lease":   n(t0.Add(lease).UnixMilli()),
		"expires": n(t0.Add(window).UnixMilli()),
		"ttl":     n(t0.Add(window).Unix()),
	}, b.item(t, "k"))
	require.Equal(t, 1, b.proxy.Count("PutItem"))
	require.Equal(t, 0, b.proxy.Count("GetItem"), "a claim that wins reads nothing")
}

// testClaim claims a key in each state it can be in, by its holder and by
// another owner, at times around the lease and the window's end.
func testClaim(t *testing.T, endpoint string) {
	b := setup(t, endpoint)
	ctx := testContext(t)

	// prior puts the key in a state, held by A from t0.
	type prior func(t *testing.T, key string)
	none := func(*testing.T, string) {}
	claimed := func(t *testing.T, key string) { b.mustClaim(t, key, "A", "tA", t0) }
	queued := func(t *testing.T, key string) {
		claimed(t, key)
		require.NoError(t, b.w.Confirm(ctx, idempotency.Ref{Key: key, Owner: "A", Token: "tA", ID: "eA"}))
	}
	marked := func(s idempotency.State) prior {
		return func(t *testing.T, key string) {
			queued(t, key)
			require.NoError(t, b.w.Mark(ctx, idempotency.Ref{Key: key, Owner: "A", ID: "eA"}, s))
		}
	}
	claimHolder := idempotency.Holder{
		Owner: "A", Token: "tA", State: idempotency.Claimed,
		Lease: t0.Add(lease), Expires: t0.Add(window),
	}
	withState := func(s idempotency.State) idempotency.Holder {
		return idempotency.Holder{Owner: "A", Token: "tA", ID: "eA", State: s, Expires: t0.Add(window)}
	}

	ms := time.Millisecond
	for _, tc := range []struct {
		name  string
		prior prior
		by    string
		after time.Duration // since t0
		want  *idempotency.Holder
	}{
		{"AbsentKey", none, "B", 0, nil},
		{"ClaimedByOther", claimed, "B", 0, &claimHolder},
		{"ClaimedByOtherLeaseNotPassed", claimed, "B", lease - ms, &claimHolder},
		{"ClaimedByOtherLeasePassed", claimed, "B", lease, nil},
		{"ClaimedByOtherExpired", claimed, "B", window, nil},
		{"ClaimedBySelf", claimed, "A", ms, nil},
		{"QueuedBySelf", queued, "A", ms, ptr(withState(idempotency.Queued))},
		{"QueuedByOtherLeasePassed", queued, "B", lease, ptr(withState(idempotency.Queued))},
		{"QueuedByOtherNotExpired", queued, "B", window - ms, ptr(withState(idempotency.Queued))},
		{"QueuedByOtherExpired", queued, "B", window, nil},
		{"DeliveredByOther", marked(idempotency.Delivered), "B", ms, ptr(withState(idempotency.Delivered))},
		{"DeliveredBySelf", marked(idempotency.Delivered), "A", ms, ptr(withState(idempotency.Delivered))},
		{"DeliveredExpired", marked(idempotency.Delivered), "B", window, nil},
		{"DeadLetteredByOther", marked(idempotency.DeadLettered), "B", ms, ptr(withState(idempotency.DeadLettered))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "key-" + tc.name
			tc.prior(t, key)
			h, ok := b.claim(t, key, tc.by, "t2", t0.Add(tc.after))
			if tc.want != nil {
				require.False(t, ok, "want held")
				require.Equal(t, *tc.want, h)
				return
			}
			require.True(t, ok, "want claimed, held by %+v", h)
			require.Zero(t, h)
			item := b.item(t, key)
			require.Equal(t, s(tc.by), item["owner"])
			require.Equal(t, s("t2"), item["token"])
			require.Equal(t, n(int64(idempotency.Claimed)), item["state"])
			require.Equal(t, n(t0.Add(tc.after+window).UnixMilli()), item["expires"])
			require.NotContains(t, item, "id", "a new claim drops the old event's ID")
		})
	}
}

func ptr[T any](v T) *T { return &v }

func testClaimReplayReplacesToken(t *testing.T, endpoint string) {
	b := setup(t, endpoint)
	ctx := testContext(t)
	b.mustClaim(t, "k", "A", "t1", t0)
	b.mustClaim(t, "k", "A", "t2", t0.Add(time.Second)) // A restarted
	require.Equal(t, s("t2"), b.item(t, "k")["token"])

	err := b.w.Confirm(ctx, idempotency.Ref{Key: "k", Owner: "A", Token: "t1", ID: "e1"})
	require.ErrorIs(t, err, idempotency.ErrLost, "the replaced claim is lost")
	require.NoError(t, b.w.Confirm(ctx, idempotency.Ref{Key: "k", Owner: "A", Token: "t2", ID: "e2"}))
}

func testConfirm(t *testing.T, endpoint string) {
	b := setup(t, endpoint)
	ctx := testContext(t)

	t.Run("ByClaim", func(t *testing.T) {
		b.mustClaim(t, "ok", "A", "tA", t0)
		require.NoError(t, b.w.Confirm(ctx, idempotency.Ref{Key: "ok", Owner: "A", Token: "tA", ID: "e1"}))
		item := b.item(t, "ok")
		require.Equal(t, n(int64(idempotency.Queued)), item["state"])
		require.Equal(t, s("e1"), item["id"])
		require.NotContains(t, item, "lease")
		got, err := b.w.Lookup(ctx, []string{"ok"}, t0)
		require.NoError(t, err)
		require.Equal(t, idempotency.Holder{
			Owner: "A", Token: "tA", ID: "e1", State: idempotency.Queued, Expires: t0.Add(window),
		}, got["ok"])

		// Twice with the same ID succeeds, with another fails.
		require.NoError(t, b.w.Confirm(ctx, idempotency.Ref{Key: "ok", Owner: "A", Token: "tA", ID: "e1"}))
		err = b.w.Confirm(ctx, idempotency.Ref{Key: "ok", Owner: "A", Token: "tA", ID: "e2"})
		require.ErrorIs(t, err, idempotency.ErrLost)
		require.Equal(t, s("e1"), b.item(t, "ok")["id"])
	})

	t.Run("AfterTakeover", func(t *testing.T) {
		b.mustClaim(t, "taken", "A", "tA", t0)
		b.mustClaim(t, "taken", "B", "tB", t0.Add(lease))
		err := b.w.Confirm(ctx, idempotency.Ref{Key: "taken", Owner: "A", Token: "tA", ID: "eA"})
		require.ErrorIs(t, err, idempotency.ErrLost)
		require.Contains(t, err.Error(), `"taken"`)
		item := b.item(t, "taken")
		require.Equal(t, s("B"), item["owner"])
		require.Equal(t, n(int64(idempotency.Claimed)), item["state"])
		require.NoError(t, b.w.Confirm(ctx, idempotency.Ref{Key: "taken", Owner: "B", Token: "tB", ID: "eB"}))
	})

	t.Run("WrongTokenOrMissing", func(t *testing.T) {
		b.mustClaim(t, "wrong", "A", "tA", t0)
		for _, r := range []idempotency.Ref{
			{Key: "wrong", Owner: "A", Token: "other", ID: "e"},
			{Key: "wrong", Owner: "B", Token: "tA", ID: "e"},
			{Key: "missing", Owner: "A", Token: "tA", ID: "e"},
		} {
			require.ErrorIs(t, b.w.Confirm(ctx, r), idempotency.ErrLost, "%+v", r)
		}
		require.Equal(t, n(int64(idempotency.Claimed)), b.item(t, "wrong")["state"])
		require.Nil(t, b.item(t, "missing"), "a failed Confirm creates nothing")
	})
}

func testMark(t *testing.T, endpoint string) {
	b := setup(t, endpoint)
	ctx := testContext(t)
	for i, st := range []idempotency.State{idempotency.Delivered, idempotency.DeadLettered} {
		key := fmt.Sprintf("k%d", i)
		b.mustClaim(t, key, "A", "tA", t0)
		require.NoError(t, b.w.Confirm(ctx, idempotency.Ref{Key: key, Owner: "A", Token: "tA", ID: "e"}))
		for _, r := range []idempotency.Ref{
			{Key: key, Owner: "A", ID: "other"},
			{Key: key, Owner: "B", ID: "e"},
			{Key: "missing", Owner: "A", ID: "e"},
		} {
			require.ErrorIs(t, b.w.Mark(ctx, r, st), idempotency.ErrLost, "%+v", r)
		}
		require.Equal(t, n(int64(idempotency.Queued)), b.item(t, key)["state"])
		require.NoError(t, b.w.Mark(ctx, idempotency.Ref{Key: key, Owner: "A", ID: "e"}, st))
		require.Equal(t, n(int64(st)), b.item(t, key)["state"])
	}

	before := b.proxy.Count("UpdateItem")
	for _, st := range []idempotency.State{idempotency.Queued, idempotency.Claimed, 0, 9} {
		err := b.w.Mark(ctx, idempotency.Ref{Key: "k0", Owner: "A", ID: "e"}, st)
		require.Error(t, err)
		require.NotErrorIs(t, err, idempotency.ErrLost)
	}
	require.Equal(t, before, b.proxy.Count("UpdateItem"), "a bad state is refused before any request")
}

func testRelease(t *testing.T, endpoint string) {
	b := setup(t, endpoint)
	ctx := testContext(t)

	// By token, before Confirm.
	b.mustClaim(t, "tok", "A", "tA", t0)
	require.NoError(t, b.w.Release(ctx, idempotency.Ref{Key: "tok", Owner: "A", Token: "other"}))
	require.NotNil(t, b.item(t, "tok"), "a wrong token releases nothing")
	require.NoError(t, b.w.Release(ctx, idempotency.Ref{Key: "tok", Owner: "A", Token: "tA"}))
	require.Nil(t, b.item(t, "tok"))

	// By ID, after Confirm.
	b.mustClaim(t, "id", "A", "tA", t0)
	require.NoError(t, b.w.Confirm(ctx, idempotency.Ref{Key: "id", Owner: "A", Token: "tA", ID: "e"}))
	require.NoError(t, b.w.Release(ctx, idempotency.Ref{Key: "id", Owner: "A", ID: "other"}))
	require.NotNil(t, b.item(t, "id"), "a wrong ID releases nothing")
	require.NoError(t, b.w.Release(ctx, idempotency.Ref{Key: "id", Owner: "A", ID: "e"}))
	require.Nil(t, b.item(t, "id"))

	// A key B took over is B's: A's release is nil and keeps it.
	b.mustClaim(t, "other", "A", "tA", t0)
	b.mustClaim(t, "other", "B", "tB", t0.Add(lease))
	require.NoError(t, b.w.Release(ctx, idempotency.Ref{Key: "other", Owner: "A", Token: "tA"}))
	require.Equal(t, s("B"), b.item(t, "other")["owner"])

	// An absent key.
	require.NoError(t, b.w.Release(ctx, idempotency.Ref{Key: "absent", Owner: "A", Token: "tA"}))

	err := b.w.Release(ctx, idempotency.Ref{Key: "other", Owner: "A"})
	require.ErrorContains(t, err, "neither a token nor an event ID")
}

func testLookup(t *testing.T, endpoint string) {
	b := setup(t, endpoint)
	ctx := testContext(t)

	// 60 held keys (every fourth confirmed), 15 expired, 175 absent: 250
	// distinct keys, three batches of BatchGetItem, as with 200 held and 25
	// absent, for a quarter of the claims.
	var keys []string
	want := make(map[string]idempotency.Holder)
	for i := range 60 {
		key := fmt.Sprintf("held-%03d", i)
		keys = append(keys, key)
		b.mustClaim(t, key, "A", "t"+key, t0)
		h := idempotency.Holder{Owner: "A", Token: "t" + key, State: idempotency.Claimed, Lease: t0.Add(lease), Expires: t0.Add(window)}
		if i%4 == 0 {
			require.NoError(t, b.w.Confirm(ctx, idempotency.Ref{Key: key, Owner: "A", Token: h.Token, ID: "e" + key}))
			h.State, h.ID, h.Lease = idempotency.Queued, "e"+key, time.Time{}
		}
		want[key] = h
	}
	early := t0.Add(-window) // these expire at t0, the lookup's now
	for i := range 15 {
		key := fmt.Sprintf("expired-%02d", i)
		keys = append(keys, key)
		b.mustClaim(t, key, "A", "t", early)
	}
	for i := range 175 {
		keys = append(keys, fmt.Sprintf("absent-%03d", i))
	}
	require.Len(t, keys, 250)
	rand.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	// Duplicates are asked for once: BatchGetItem refuses them.
	keys = append(keys, keys[:50]...)

	before := b.proxy.Count("BatchGetItem")
	got, err := b.w.Lookup(ctx, keys, t0)
	require.NoError(t, err)
	require.Equal(t, want, got)
	require.Equal(t, before+3, b.proxy.Count("BatchGetItem"), "250 distinct keys in batches of 100")

	// A millisecond earlier the expired keys are still held.
	got, err = b.w.Lookup(ctx, keys, t0.Add(-time.Millisecond))
	require.NoError(t, err)
	require.Len(t, got, 75)

	got, err = b.w.Lookup(ctx, nil, t0)
	require.NoError(t, err)
	require.Empty(t, got)
}

// testConcurrentClaims races two owners, eight goroutines each, for the
// same 50 keys: each key goes to exactly one owner, and every claim that
// loses sees that owner.
//
// Each key is claimed sixteen times however many keys there are; with 50
// rather than 200 the goroutines meet on a key more often, not less, for
// a quarter of dynalite's requests. DISPATCH_SOAK=1 races for 200.
func testConcurrentClaims(t *testing.T, endpoint string) {
	b := setup(t, endpoint)
	ctx := testContext(t)
	keys, perOwner := 50, 8
	if os.Getenv("DISPATCH_SOAK") == "1" {
		keys = 200
	}
	owners := []string{"A", "B"}

	type result struct {
		owner string
		won   bool
		held  string // the holder's owner, when lost
	}
	results := make([][]result, keys)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, len(owners)*perOwner)
	for _, owner := range owners {
		for g := range perOwner {
			wg.Go(func() {
				order := rand.Perm(keys)
				for _, k := range order {
					h, ok, err := b.w.Claim(ctx, idempotency.Claim{
						Key: fmt.Sprintf("race-%03d", k), Owner: owner, Token: fmt.Sprintf("%s-%d-%d", owner, g, k),
						Window: window, Lease: lease,
					}, t0)
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					results[k] = append(results[k], result{owner: owner, won: ok, held: h.Owner})
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	got, err := b.w.Lookup(ctx, func() []string {
		var ks []string
		for k := range keys {
			ks = append(ks, fmt.Sprintf("race-%03d", k))
		}
		return ks
	}(), t0)
	require.NoError(t, err)
	require.Len(t, got, keys)
	wins := map[string]int{}
	for k, rs := range results {
		require.Len(t, rs, len(owners)*perOwner)
		winners := map[string]bool{}
		for _, r := range rs {
			if r.won {
				winners[r.owner] = true
			}
		}
		require.Len(t, winners, 1, "key %d: %+v", k, rs)
		winner := got[fmt.Sprintf("race-%03d", k)].Owner
		require.True(t, winners[winner], "key %d: held by %s, won by %v", k, winner, winners)
		wins[winner]++
		for _, r := range rs {
			if !r.won {
				require.Equal(t, winner, r.held, "key %d: a lost claim names the winner", k)
				require.NotEqual(t, r.owner, r.held, "key %d: an owner is never held off by itself", k)
			}
		}
	}
	t.Logf("keys won: %v; requests: %v", wins, b.proxy.Counts())
}

// ops runs each operation of a Window once, on key k, for the fault tests.
var ops = []struct {
	name string
	run  func(ctx context.Context, w *dynamo.Window, key string) error
}{
	{"Claim", func(ctx context.Context, w *dynamo.Window, key string) error {
		_, _, err := w.Claim(ctx, idempotency.Claim{Key: key, Owner: "A", Token: "t", Window: window, Lease: lease}, t0)
		return err
	}},
	{"Confirm", func(ctx context.Context, w *dynamo.Window, key string) error {
		return w.Confirm(ctx, idempotency.Ref{Key: key, Owner: "A", Token: "t", ID: "e"})
	}},
	{"Mark", func(ctx context.Context, w *dynamo.Window, key string) error {
		return w.Mark(ctx, idempotency.Ref{Key: key, Owner: "A", ID: "e"}, idempotency.Delivered)
	}},
	{"Release", func(ctx context.Context, w *dynamo.Window, key string) error {
		return w.Release(ctx, idempotency.Ref{Key: key, Owner: "A", Token: "t"})
	}},
	{"Lookup", func(ctx context.Context, w *dynamo.Window, key string) error {
		_, err := w.Lookup(ctx, []string{key}, t0)
		return err
	}},
}

func testThrottled(t *testing.T, endpoint string) {
	b := setup(t, endpoint)
	ctx := testContext(t)
	for _, op := range ops {
		b.proxy.Throttle(1)
		err := op.run(ctx, b.w, "k-"+op.name)
		require.ErrorIs(t, err, idempotency.ErrUnavailable, op.name)
		var ue *idempotency.UnavailableError
		require.ErrorAs(t, err, &ue)
		require.True(t, ue.Throttled, op.name)
		require.Equal(t, op.name, ue.Op)
		var pte *types.ProvisionedThroughputExceededException
		require.ErrorAs(t, err, &pte, "the client's error is kept")
		require.Contains(t, err.Error(), "throttled")
	}
	require.Nil(t, b.item(t, "k-Claim"), "a throttled claim wrote nothing")

	// With the throttling over, the claim goes through.
	h, ok := b.claim(t, "k-Claim", "A", "t", t0)
	require.True(t, ok, "%+v", h)
}

func testOffline(t *testing.T, endpoint string) {
	b := setup(t, endpoint)
	ctx := testContext(t)
	b.proxy.Offline(true)
	for _, op := range ops {
		err := op.run(ctx, b.w, "k")
		require.ErrorIs(t, err, idempotency.ErrUnavailable, op.name)
		var ue *idempotency.UnavailableError
		require.ErrorAs(t, err, &ue)
		require.False(t, ue.Throttled, op.name)
		require.Equal(t, op.name, ue.Op)
	}
	b.proxy.Offline(false)
	require.Nil(t, b.item(t, "k"))
	b.mustClaim(t, "k", "A", "t", t0)
}

func testMissingTable(t *testing.T, endpoint string) {
	w, err := dynamo.New(dynalitetest.Client(t, endpoint), "no-such-table")
	require.NoError(t, err)
	for _, op := range ops {
		err := op.run(testContext(t), w, "k")
		require.Error(t, err, op.name)
		require.NotErrorIs(t, err, idempotency.ErrUnavailable, op.name)
		var rnf *types.ResourceNotFoundException
		require.ErrorAs(t, err, &rnf, op.name)
		require.Contains(t, err.Error(), `"no-such-table"`, op.name)
		require.Contains(t, err.Error(), op.name)
	}
}

func testCanceledContext(t *testing.T, endpoint string) {
	b := setup(t, endpoint)
	ctx, cancel := context.WithCancel(testContext(t))
	cancel()
	for _, op := range ops {
		err := op.run(ctx, b.w, "k")
		require.ErrorIs(t, err, context.Canceled, op.name)
		require.NotErrorIs(t, err, idempotency.ErrUnavailable, op.name)
	}
}

func testTTLAttribute(t *testing.T, endpoint string) {
	b := setup(t, endpoint, dynamo.WithTTLAttribute("expires_at"))
	now := t0.Add(123 * time.Millisecond)
	b.mustClaim(t, "k", "A", "t", now)
	item := b.item(t, "k")
	require.NotContains(t, item, "ttl")
	// Rounded up to the second: DynamoDB must not delete the item early.
	require.Equal(t, n(t0.Add(window).Unix()+1), item["expires_at"])
	require.Equal(t, n(now.Add(window).UnixMilli()), item["expires"])
}

// testRuntimeActions checks that a Window calls only what RuntimeActions
// lists, which the IAM policy in the package doc grants.
func testRuntimeActions(t *testing.T, endpoint string) {
	b := setup(t, endpoint)
	ctx := testContext(t)
	b.mustClaim(t, "k", "A", "t", t0)
	_, held := b.claim(t, "k", "B", "t", t0)
	require.False(t, held)
	for _, op := range ops {
		_ = op.run(ctx, b.w, "k")
	}
	allowed := dynamo.RuntimeActions()
	counts := b.proxy.Counts()
	require.Len(t, counts, len(allowed), "%v", counts)
	for op := range counts {
		require.Contains(t, allowed, "dynamodb:"+op)
	}
}

func testCreateTable(t *testing.T, endpoint string) {
	proxy := dynalitetest.NewFaultProxy(t, endpoint)
	client := dynalitetest.Client(t, proxy.URL())
	ctx := testContext(t)
	table := dynalitetest.TableName(t)

	err := dynamo.CreateTable(ctx, client, table)
	require.ErrorIs(t, err, dynamo.ErrTTLNotEnabled, "dynalite has no UpdateTimeToLive")
	require.ErrorContains(t, err, "UnknownOperationException")
	require.GreaterOrEqual(t, proxy.Count("DescribeTable"), 1)

	d, err := client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	require.NoError(t, err)
	require.Equal(t, types.TableStatusActive, d.Table.TableStatus, "CreateTable waits for ACTIVE")
	require.Equal(t, []types.KeySchemaElement{{AttributeName: aws.String("key"), KeyType: types.KeyTypeHash}}, d.Table.KeySchema)
	require.Equal(t, []types.AttributeDefinition{{AttributeName: aws.String("key"), AttributeType: types.ScalarAttributeTypeS}}, d.Table.AttributeDefinitions)
	require.NotNil(t, d.Table.BillingModeSummary)
	require.Equal(t, types.BillingModePayPerRequest, d.Table.BillingModeSummary.BillingMode)

	// Again: the table is kept, and still usable.
	err = dynamo.CreateTable(ctx, client, table)
	require.ErrorIs(t, err, dynamo.ErrTTLNotEnabled)
	require.Equal(t, 2, proxy.Count("CreateTable"))
	d2, err := client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	require.NoError(t, err)
	require.Equal(t, d.Table.CreationDateTime, d2.Table.CreationDateTime)

	w, err := dynamo.New(client, table)
	require.NoError(t, err)
	_, ok, err := w.Claim(ctx, idempotency.Claim{Key: "k", Owner: "A", Token: "t", Window: window, Lease: lease}, t0)
	require.NoError(t, err)
	require.True(t, ok)
}

func testCreateTableWrongKeySchema(t *testing.T, endpoint string) {
	client := dynalitetest.Client(t, endpoint)
	ctx := testContext(t)
	for _, tc := range []struct {
		name   string
		attrs  []types.AttributeDefinition
		schema []types.KeySchemaElement
		says   string
	}{
		{
			"OtherName",
			[]types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
			[]types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
			"pk HASH (S)",
		},
		{
			"NumberKey",
			[]types.AttributeDefinition{{AttributeName: aws.String("key"), AttributeType: types.ScalarAttributeTypeN}},
			[]types.KeySchemaElement{{AttributeName: aws.String("key"), KeyType: types.KeyTypeHash}},
			"key HASH (N)",
		},
		{
			"SortKey",
			[]types.AttributeDefinition{
				{AttributeName: aws.String("key"), AttributeType: types.ScalarAttributeTypeS},
				{AttributeName: aws.String("sk"), AttributeType: types.ScalarAttributeTypeS},
			},
			[]types.KeySchemaElement{
				{AttributeName: aws.String("key"), KeyType: types.KeyTypeHash},
				{AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange},
			},
			"key HASH (S), sk RANGE (S)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table := dynalitetest.TableName(t)
			_, err := client.CreateTable(ctx, &dynamodb.CreateTableInput{
				TableName:            aws.String(table),
				AttributeDefinitions: tc.attrs,
				KeySchema:            tc.schema,
				BillingMode:          types.BillingModePayPerRequest,
			})
			require.NoError(t, err)
			err = dynamo.CreateTable(ctx, client, table)
			require.ErrorIs(t, err, dynamo.ErrKeySchema)
			require.NotErrorIs(t, err, dynamo.ErrTTLNotEnabled)
			require.ErrorContains(t, err, tc.says)
			require.ErrorContains(t, err, table)
		})
	}
}

func TestNew(t *testing.T) {
	client := dynamodb.New(dynamodb.Options{Region: "us-east-1"})
	for _, tc := range []struct {
		name   string
		client dynamo.API
		table  string
		opts   []dynamo.Option
		says   string
	}{
		{"NilClient", nil, "t", nil, "nil client"},
		{"EmptyTable", client, "", nil, "empty table"},
		{"EmptyTTL", client, "t", []dynamo.Option{dynamo.WithTTLAttribute("")}, "empty TTL"},
		{"TTLClash", client, "t", []dynamo.Option{dynamo.WithTTLAttribute("expires")}, "item's own"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := dynamo.New(tc.client, tc.table, tc.opts...)
			require.ErrorContains(t, err, tc.says)
			require.Nil(t, w)
		})
	}
	w, err := dynamo.New(client, "t")
	require.NoError(t, err)
	require.Equal(t, "t", w.Table())
}

func TestClaimValidates(t *testing.T) {
	w, err := dynamo.New(&fakeAPI{}, "t") // any request would fail the test
	require.NoError(t, err)
	ok := idempotency.Claim{Key: "k", Owner: "A", Token: "t", Window: window, Lease: lease}
	for _, tc := range []struct {
		name   string
		change func(*idempotency.Claim)
		says   string
	}{
		{"EmptyKey", func(c *idempotency.Claim) { c.Key = "" }, "empty key"},
		{"LongKey", func(c *idempotency.Claim) { c.Key = strings.Repeat("k", dynamo.MaxKeyBytes+1) }, "2049 bytes"},
		{"EmptyOwner", func(c *idempotency.Claim) { c.Owner = "" }, "empty owner"},
		{"EmptyToken", func(c *idempotency.Claim) { c.Token = "" }, "empty token"},
		{"ZeroWindow", func(c *idempotency.Claim) { c.Window = 0 }, "window 0s is not positive"},
		{"NegativeLease", func(c *idempotency.Claim) { c.Lease = -time.Second }, "lease -1s is not positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.change(&c)
			_, _, err := w.Claim(context.Background(), c, t0)
			require.ErrorContains(t, err, tc.says)
		})
	}
	refs := []struct {
		name string
		run  func() error
		says string
	}{
		{"ConfirmNoToken", func() error {
			return w.Confirm(context.Background(), idempotency.Ref{Key: "k", Owner: "A", ID: "e"})
		}, "empty token"},
		{"ConfirmNoID", func() error {
			return w.Confirm(context.Background(), idempotency.Ref{Key: "k", Owner: "A", Token: "t"})
		}, "empty event ID"},
		{"MarkNoOwner", func() error {
			return w.Mark(context.Background(), idempotency.Ref{Key: "k", ID: "e"}, idempotency.Delivered)
		}, "empty owner"},
		{"ReleaseNoKey", func() error {
			return w.Release(context.Background(), idempotency.Ref{Owner: "A", Token: "t"})
		}, "empty key"},
		{"LookupEmptyKey", func() error {
			_, err := w.Lookup(context.Background(), []string{"a", ""}, t0)
			return err
		}, "empty key"},
	}
	for _, tc := range refs {
		t.Run(tc.name, func(t *testing.T) {
			require.ErrorContains(t, tc.run(), tc.says)
		})
	}
}
