// Package sharedtest is a conformance suite for implementations of
// [idempotency.Shared], as testing/slogtest is for slog handlers: every
// implementation runs the same subtests, so that a dispatcher behaves the
// same whichever window it is given.
//
// The suite checks the contract that package idempotency's doc and the
// Shared interface describe: which claims win, what a lost claim sees,
// which changes need which token or ID, and what a change refused returns.
// It moves time by passing later nows, never by sleeping, with times whole
// milliseconds apart, and leaves out what is an implementation's own
// business: its errors when unavailable, its limits on key length, its
// bookkeeping of expired keys.
//
// It makes about 2,000 calls in all, most of them in ConcurrentClaims, so
// that it runs in seconds against a window that answers a thousand
// requests a second. With DISPATCH_SOAK=1 in the environment, as this
// module's CI sets for the long versions of its tests, ConcurrentClaims
// races for twice the keys: about 2,800 calls.
package sharedtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher/idempotency"
)

// Durations of the claims the suite makes.
const (
	window = 10 * time.Minute
	lease  = 30 * time.Second
	ms     = time.Millisecond
)

// t0 is the now of most calls, a whole millisecond.
var t0 = time.UnixMilli(1_800_000_000_000)

// Run runs the conformance suite as subtests of t. newWindow must return a
// window holding no keys, for the subtest it is given; it is called once
// per subtest, from subtests that run in parallel, and should register
// its own cleanup with t.Cleanup.
func Run(t *testing.T, newWindow func(t *testing.T) idempotency.Shared) {
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *bundle)
	}{
		{"ClaimFresh", testClaimFresh},
		{"ClaimHeldByOther", testClaimHeldByOther},
		{"ClaimAgainBySameOwner", testClaimAgainBySameOwner},
		{"ClaimTakeoverAfterLease", testClaimTakeoverAfterLease},
		{"ClaimByState", testClaimByState},
		{"Confirm", testConfirm},
		{"ConfirmAfterTakeover", testConfirmAfterTakeover},
		{"ConfirmRefused", testConfirmRefused},
		{"Mark", testMark},
		{"MarkAfterTakeover", testMarkAfterTakeover},
		{"Release", testRelease},
		{"ReleaseHeldByOther", testReleaseHeldByOther},
		{"Lookup", testLookup},
		{"ConcurrentClaims", testConcurrentClaims},
		{"Validation", testValidation},
		{"CanceledContext", testCanceledContext},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWindow(t)
			require.NotNil(t, w, "newWindow returned nil")
			tc.run(t, &bundle{w: w, ctx: t.Context()})
		})
	}
}

// bundle is what a subtest needs: its own window, and helpers that fail
// the test on an error.
type bundle struct {
	w   idempotency.Shared
	ctx context.Context
}

// claim claims key for owner with token at now.
func (b *bundle) claim(t *testing.T, key, owner, token string, now time.Time) (idempotency.Holder, bool) {
	t.Helper()
	h, ok, err := b.w.Claim(b.ctx, idempotency.Claim{Key: key, Owner: owner, Token: token, Window: window, Lease: lease}, now)
	require.NoError(t, err, "Claim %q by %s", key, owner)
	if ok {
		require.Zero(t, h, "Claim %q by %s: a claim that wins returns no holder", key, owner)
	}
	return h, ok
}

func (b *bundle) mustClaim(t *testing.T, key, owner, token string, now time.Time) {
	t.Helper()
	h, ok := b.claim(t, key, owner, token, now)
	require.True(t, ok, "Claim %q by %s at t0%+v: held by %+v", key, owner, now.Sub(t0), h)
}

func (b *bundle) mustHeld(t *testing.T, key, owner, token string, now time.Time, want idempotency.Holder) {
	t.Helper()
	h, ok := b.claim(t, key, owner, token, now)
	require.False(t, ok, "Claim %q by %s at t0%+v: want held by %+v", key, owner, now.Sub(t0), want)
	requireHolder(t, want, h)
}

func (b *bundle) confirm(t *testing.T, key, owner, token, id string) {
	t.Helper()
	require.NoError(t, b.w.Confirm(b.ctx, idempotency.Ref{Key: key, Owner: owner, Token: token, ID: id}), "Confirm %q", key)
}

// holder returns the holder of key at now, and whether it is held.
func (b *bundle) holder(t *testing.T, key string, now time.Time) (idempotency.Holder, bool) {
	t.Helper()
	got, err := b.w.Lookup(b.ctx, []string{key}, now)
	require.NoError(t, err, "Lookup %q", key)
	require.LessOrEqual(t, len(got), 1, "Lookup %q: %v", key, got)
	h, ok := got[key]
	return h, ok
}

func (b *bundle) requireHeld(t *testing.T, key string, want idempotency.Holder) {
	t.Helper()
	h, ok := b.holder(t, key, t0)
	require.True(t, ok, "Lookup %q: want held by %+v", key, want)
	requireHolder(t, want, h)
}

func (b *bundle) requireAbsent(t *testing.T, key string) {
	t.Helper()
	h, ok := b.holder(t, key, t0)
	require.False(t, ok, "Lookup %q: want absent, held by %+v", key, h)
}

// requireHolder compares holders, their times as instants.
func requireHolder(t *testing.T, want, got idempotency.Holder) {
	t.Helper()
	require.Equal(t, norm(want), norm(got))
}

func norm(h idempotency.Holder) idempotency.Holder {
	if !h.Lease.IsZero() {
		h.Lease = h.Lease.UTC()
	}
	if !h.Expires.IsZero() {
		h.Expires = h.Expires.UTC()
	}
	return h
}

func requireLost(t *testing.T, err error, msgAndArgs ...any) {
	t.Helper()
	require.ErrorIs(t, err, idempotency.ErrLost, msgAndArgs...)
}

// claimedBy is the holder of a key claimed by owner with token at now.
func claimedBy(owner, token string, now time.Time) idempotency.Holder {
	return idempotency.Holder{Owner: owner, Token: token, State: idempotency.Claimed, Lease: now.Add(lease), Expires: now.Add(window)}
}

// eventOf is the holder of a key claimed at t0 and confirmed for id, in
// state s: it has no lease.
func eventOf(owner, token, id string, s idempotency.State) idempotency.Holder {
	return idempotency.Holder{Owner: owner, Token: token, ID: id, State: s, Expires: t0.Add(window)}
}

func testClaimFresh(t *testing.T, b *bundle) {
	b.mustClaim(t, "k", "A", "tA", t0)
	b.requireHeld(t, "k", claimedBy("A", "tA", t0))
}

// testClaimHeldByOther: within the lease, another owner's claim is refused
// with the holder, and writes nothing.
func testClaimHeldByOther(t *testing.T, b *bundle) {
	b.mustClaim(t, "k", "A", "tA", t0)
	want := claimedBy("A", "tA", t0)
	b.mustHeld(t, "k", "B", "tB", t0, want)
	b.mustHeld(t, "k", "B", "tB2", t0.Add(lease-ms), want)
	b.requireHeld(t, "k", want)
}

// testClaimAgainBySameOwner: an owner claiming its own unconfirmed key
// again (a replay after a restart) wins, and the new token replaces the
// old one.
func testClaimAgainBySameOwner(t *testing.T, b *bundle) {
	b.mustClaim(t, "k", "A", "t1", t0)
	later := t0.Add(time.Second)
	b.mustClaim(t, "k", "A", "t2", later)
	b.requireHeld(t, "k", claimedBy("A", "t2", later))

	requireLost(t, b.w.Confirm(b.ctx, idempotency.Ref{Key: "k", Owner: "A", Token: "t1", ID: "e1"}), "the replaced token is lost")
	b.confirm(t, "k", "A", "t2", "e2")
}

// testClaimTakeoverAfterLease: once the lease has passed, another owner
// takes an unconfirmed key over.
func testClaimTakeoverAfterLease(t *testing.T, b *bundle) {
	b.mustClaim(t, "k", "A", "tA", t0)
	at := t0.Add(lease)
	b.mustClaim(t, "k", "B", "tB", at)
	b.requireHeld(t, "k", claimedBy("B", "tB", at))
	// Now A is the other owner, and B's lease has not passed.
	b.mustHeld(t, "k", "A", "tA2", at.Add(lease-ms), claimedBy("B", "tB", at))
}

// testClaimByState claims a key in each state, by its holder and by
// another owner, around the lease and the window's end.
func testClaimByState(t *testing.T, b *bundle) {
	type prior func(t *testing.T, key string)
	claimed := func(t *testing.T, key string) { b.mustClaim(t, key, "A", "tA", t0) }
	queued := func(t *testing.T, key string) {
		claimed(t, key)
		b.confirm(t, key, "A", "tA", "eA")
	}
	marked := func(s idempotency.State) prior {
		return func(t *testing.T, key string) {
			queued(t, key)
			require.NoError(t, b.w.Mark(b.ctx, idempotency.Ref{Key: key, Owner: "A", ID: "eA"}, s))
		}
	}
	ptr := func(h idempotency.Holder) *idempotency.Holder { return &h }
	inState := func(s idempotency.State) *idempotency.Holder { return ptr(eventOf("A", "tA", "eA", s)) }
	for _, tc := range []struct {
		name  string
		prior prior
		by    string
		after time.Duration // since t0
		want  *idempotency.Holder
	}{
		{"ClaimedByOtherExpired", claimed, "B", window, nil},
		{"ClaimedBySelfExpired", claimed, "A", window, nil},
		{"QueuedBySelf", queued, "A", ms, inState(idempotency.Queued)},
		{"QueuedByOtherLeasePassed", queued, "B", lease, inState(idempotency.Queued)},
		{"QueuedByOtherNotExpired", queued, "B", window - ms, inState(idempotency.Queued)},
		{"QueuedByOtherExpired", queued, "B", window, nil},
		{"DeliveredBySelf", marked(idempotency.Delivered), "A", ms, inState(idempotency.Delivered)},
		{"DeliveredByOther", marked(idempotency.Delivered), "B", window - ms, inState(idempotency.Delivered)},
		{"DeliveredExpired", marked(idempotency.Delivered), "B", window, nil},
		{"DeadLetteredByOther", marked(idempotency.DeadLettered), "B", window - ms, inState(idempotency.DeadLettered)},
		{"DeadLetteredExpired", marked(idempotency.DeadLettered), "A", window, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "key-" + tc.name
			tc.prior(t, key)
			now := t0.Add(tc.after)
			if tc.want != nil {
				b.mustHeld(t, key, tc.by, "t2", now, *tc.want)
				return
			}
			b.mustClaim(t, key, tc.by, "t2", now)
			// A new claim starts afresh: the old event's ID is gone.
			h, ok := b.holder(t, key, now)
			require.True(t, ok)
			requireHolder(t, claimedBy(tc.by, "t2", now), h)
		})
	}
}

func testConfirm(t *testing.T, b *bundle) {
	b.mustClaim(t, "k", "A", "tA", t0)
	b.confirm(t, "k", "A", "tA", "e1")
	want := eventOf("A", "tA", "e1", idempotency.Queued)
	b.requireHeld(t, "k", want)

	// Again with the same ID, as after a crash between the confirm and
	// the removal of its pending record: nil, nothing changed.
	b.confirm(t, "k", "A", "tA", "e1")
	b.requireHeld(t, "k", want)

	// With another ID: lost.
	requireLost(t, b.w.Confirm(b.ctx, idempotency.Ref{Key: "k", Owner: "A", Token: "tA", ID: "e2"}))
	b.requireHeld(t, "k", want)

	// Once marked, a late Confirm is lost even with the same ID.
	require.NoError(t, b.w.Mark(b.ctx, idempotency.Ref{Key: "k", Owner: "A", ID: "e1"}, idempotency.Delivered))
	requireLost(t, b.w.Confirm(b.ctx, idempotency.Ref{Key: "k", Owner: "A", Token: "tA", ID: "e1"}))
	b.requireHeld(t, "k", eventOf("A", "tA", "e1", idempotency.Delivered))
}

// testConfirmAfterTakeover: the claim another owner took over after its
// lease cannot be confirmed, and the taker's claim is untouched.
func testConfirmAfterTakeover(t *testing.T, b *bundle) {
	b.mustClaim(t, "k", "A", "tA", t0)
	b.mustClaim(t, "k", "B", "tB", t0.Add(lease))
	err := b.w.Confirm(b.ctx, idempotency.Ref{Key: "k", Owner: "A", Token: "tA", ID: "eA"})
	requireLost(t, err)
	require.Contains(t, err.Error(), `"k"`, "the error names the key")
	b.requireHeld(t, "k", claimedBy("B", "tB", t0.Add(lease)))
	b.confirm(t, "k", "B", "tB", "eB")
}

// testConfirmRefused: a wrong token, a wrong owner or a missing key is
// lost, and changes or creates nothing.
func testConfirmRefused(t *testing.T, b *bundle) {
	b.mustClaim(t, "k", "A", "tA", t0)
	for _, r := range []idempotency.Ref{
		{Key: "k", Owner: "A", Token: "other", ID: "e"},
		{Key: "k", Owner: "B", Token: "tA", ID: "e"},
		{Key: "missing", Owner: "A", Token: "tA", ID: "e"},
	} {
		requireLost(t, b.w.Confirm(b.ctx, r), "%+v", r)
	}
	b.requireHeld(t, "k", claimedBy("A", "tA", t0))
	b.requireAbsent(t, "missing")
}

func testMark(t *testing.T, b *bundle) {
	for i, st := range []idempotency.State{idempotency.Delivered, idempotency.DeadLettered} {
		key := fmt.Sprintf("k%d", i)
		b.mustClaim(t, key, "A", "tA", t0)
		// Before Confirm the key holds no event: nothing to mark.
		requireLost(t, b.w.Mark(b.ctx, idempotency.Ref{Key: key, Owner: "A", ID: "e"}, st), "unconfirmed")
		b.confirm(t, key, "A", "tA", "e")
		for _, r := range []idempotency.Ref{
			{Key: key, Owner: "A", ID: "other"},
			{Key: key, Owner: "B", ID: "e"},
			{Key: "missing", Owner: "A", ID: "e"},
		} {
			requireLost(t, b.w.Mark(b.ctx, r, st), "%+v", r)
		}
		b.requireHeld(t, key, eventOf("A", "tA", "e", idempotency.Queued))
		// Mark needs no token.
		require.NoError(t, b.w.Mark(b.ctx, idempotency.Ref{Key: key, Owner: "A", ID: "e"}, st))
		b.requireHeld(t, key, eventOf("A", "tA", "e", st))
	}
	b.requireAbsent(t, "missing")

	for _, st := range []idempotency.State{idempotency.Queued, idempotency.Claimed, 0, 9} {
		err := b.w.Mark(b.ctx, idempotency.Ref{Key: "k0", Owner: "A", ID: "e"}, st)
		require.Error(t, err, "Mark to %v", st)
		require.NotErrorIs(t, err, idempotency.ErrLost, "Mark to %v", st)
	}
	b.requireHeld(t, "k0", eventOf("A", "tA", "e", idempotency.Delivered))
}

// testMarkAfterTakeover: an event whose key another owner took, after the
// lease of an unconfirmed claim or after the window, cannot mark it.
func testMarkAfterTakeover(t *testing.T, b *bundle) {
	// After the lease: A's confirm came too late, B confirmed.
	b.mustClaim(t, "lease", "A", "tA", t0)
	b.mustClaim(t, "lease", "B", "tB", t0.Add(lease))
	requireLost(t, b.w.Confirm(b.ctx, idempotency.Ref{Key: "lease", Owner: "A", Token: "tA", ID: "eA"}))
	b.confirm(t, "lease", "B", "tB", "eB")
	requireLost(t, b.w.Mark(b.ctx, idempotency.Ref{Key: "lease", Owner: "A", ID: "eA"}, idempotency.Delivered))
	requireLost(t, b.w.Mark(b.ctx, idempotency.Ref{Key: "lease", Owner: "A", ID: "eB"}, idempotency.Delivered), "B's event, A's name")
	h, ok := b.holder(t, "lease", t0.Add(lease))
	require.True(t, ok)
	require.Equal(t, "B", h.Owner)
	require.Equal(t, idempotency.Queued, h.State)

	// After the window: A's event was queued, the key expired, B claimed it.
	b.mustClaim(t, "window", "A", "tA", t0)
	b.confirm(t, "window", "A", "tA", "eA")
	b.mustClaim(t, "window", "B", "tB", t0.Add(window))
	requireLost(t, b.w.Mark(b.ctx, idempotency.Ref{Key: "window", Owner: "A", ID: "eA"}, idempotency.DeadLettered))
	h, ok = b.holder(t, "window", t0.Add(window))
	require.True(t, ok)
	requireHolder(t, claimedBy("B", "tB", t0.Add(window)), h)
}

func testRelease(t *testing.T, b *bundle) {
	// By token, before Confirm.
	b.mustClaim(t, "tok", "A", "tA", t0)
	require.NoError(t, b.w.Release(b.ctx, idempotency.Ref{Key: "tok", Owner: "A", Token: "other"}))
	b.requireHeld(t, "tok", claimedBy("A", "tA", t0))
	require.NoError(t, b.w.Release(b.ctx, idempotency.Ref{Key: "tok", Owner: "A", Token: "tA"}))
	b.requireAbsent(t, "tok")
	// Released, the key is free for anyone at once.
	b.mustClaim(t, "tok", "B", "tB", t0)

	// By ID, after Confirm.
	b.mustClaim(t, "id", "A", "tA", t0)
	b.confirm(t, "id", "A", "tA", "e")
	require.NoError(t, b.w.Release(b.ctx, idempotency.Ref{Key: "id", Owner: "A", ID: "other"}))
	require.NoError(t, b.w.Release(b.ctx, idempotency.Ref{Key: "id", Owner: "B", ID: "e"}))
	b.requireHeld(t, "id", eventOf("A", "tA", "e", idempotency.Queued))
	require.NoError(t, b.w.Release(b.ctx, idempotency.Ref{Key: "id", Owner: "A", ID: "e"}))
	b.requireAbsent(t, "id")

	// By ID, after Mark.
	b.mustClaim(t, "marked", "A", "tA", t0)
	b.confirm(t, "marked", "A", "tA", "e")
	require.NoError(t, b.w.Mark(b.ctx, idempotency.Ref{Key: "marked", Owner: "A", ID: "e"}, idempotency.Delivered))
	require.NoError(t, b.w.Release(b.ctx, idempotency.Ref{Key: "marked", Owner: "A", ID: "e"}))
	b.requireAbsent(t, "marked")

	// An absent key.
	require.NoError(t, b.w.Release(b.ctx, idempotency.Ref{Key: "absent", Owner: "A", Token: "tA"}))
	require.NoError(t, b.w.Release(b.ctx, idempotency.Ref{Key: "absent", Owner: "A", ID: "e"}))
	b.requireAbsent(t, "absent")
}

// testReleaseHeldByOther: a key another owner took over is its own, and
// the first owner's release is nil and keeps it.
func testReleaseHeldByOther(t *testing.T, b *bundle) {
	b.mustClaim(t, "k", "A", "tA", t0)
	b.mustClaim(t, "k", "B", "tB", t0.Add(lease))
	require.NoError(t, b.w.Release(b.ctx, idempotency.Ref{Key: "k", Owner: "A", Token: "tA"}))
	b.confirm(t, "k", "B", "tB", "eB")
	require.NoError(t, b.w.Release(b.ctx, idempotency.Ref{Key: "k", Owner: "A", ID: "eB"}))
	require.NoError(t, b.w.Release(b.ctx, idempotency.Ref{Key: "k", Owner: "A", Token: "tB"}))
	h, ok := b.holder(t, "k", t0.Add(lease))
	require.True(t, ok)
	require.Equal(t, idempotency.Holder{Owner: "B", Token: "tB", ID: "eB", State: idempotency.Queued}, idempotency.Holder{
		Owner: h.Owner, Token: h.Token, ID: h.ID, State: h.State,
	})
}

// testLookup looks up 250 distinct keys: held in each state, expired, and
// absent, some asked for twice.
func testLookup(t *testing.T, b *bundle) {
	var keys []string
	want := make(map[string]idempotency.Holder)
	for i := range 100 {
		key := fmt.Sprintf("held-%03d", i)
		keys = append(keys, key)
		token := "t" + key
		b.mustClaim(t, key, "A", token, t0)
		h := claimedBy("A", token, t0)
		switch i % 8 {
		case 1, 2:
			b.confirm(t, key, "A", token, "e"+key)
			h = eventOf("A", token, "e"+key, idempotency.Queued)
		case 3:
			b.confirm(t, key, "A", token, "e"+key)
			require.NoError(t, b.w.Mark(b.ctx, idempotency.Ref{Key: key, Owner: "A", ID: "e" + key}, idempotency.Delivered))
			h = eventOf("A", token, "e"+key, idempotency.Delivered)
		}
		want[key] = h
	}
	early := t0.Add(-window) // these expire at t0, the lookup's now
	for i := range 50 {
		key := fmt.Sprintf("expired-%02d", i)
		keys = append(keys, key)
		b.mustClaim(t, key, "B", "t", early)
	}
	for i := range 100 {
		keys = append(keys, fmt.Sprintf("absent-%03d", i))
	}
	require.Len(t, keys, 250)
	rand.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	keys = append(keys, keys[:30]...)

	got, err := b.w.Lookup(b.ctx, keys, t0)
	require.NoError(t, err)
	require.Len(t, got, len(want))
	for k, h := range want {
		g, ok := got[k]
		require.True(t, ok, "Lookup: %q missing", k)
		requireHolder(t, h, g)
	}

	// A millisecond earlier, the expired keys are still held.
	got, err = b.w.Lookup(b.ctx, keys, t0.Add(-ms))
	require.NoError(t, err)
	require.Len(t, got, len(want)+50)
	requireHolder(t, claimedBy("B", "t", early), got["expired-00"])

	for _, none := range [][]string{nil, {}} {
		got, err = b.w.Lookup(b.ctx, none, t0)
		require.NoError(t, err)
		require.Empty(t, got)
	}
}

// testConcurrentClaims races two owners, eight goroutines each, for the
// same 50 keys, all at one now: each key goes to exactly one owner, a
// claim that loses sees that owner, and the key ends with a token that
// won.
//
// Each key is claimed sixteen times however many keys there are; with 50
// rather than 100 the goroutines meet on a key more often, not less, for
// half the calls. DISPATCH_SOAK=1 races for 100.
func testConcurrentClaims(t *testing.T, b *bundle) {
	keys, perOwner := 50, 8
	if os.Getenv("DISPATCH_SOAK") == "1" {
		keys = 100
	}
	owners := []string{"A", "B"}
	type result struct {
		owner, token string
		won          bool
		held         idempotency.Holder
	}
	results := make([][]result, keys)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, len(owners)*perOwner)
	for _, owner := range owners {
		for g := range perOwner {
			wg.Go(func() {
				for _, k := range rand.Perm(keys) {
					token := fmt.Sprintf("%s-%d-%d", owner, g, k)
					h, ok, err := b.w.Claim(b.ctx, idempotency.Claim{
						Key: fmt.Sprintf("race-%03d", k), Owner: owner, Token: token, Window: window, Lease: lease,
					}, t0)
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					results[k] = append(results[k], result{owner: owner, token: token, won: ok, held: h})
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

	names := make([]string, keys)
	for k := range names {
		names[k] = fmt.Sprintf("race-%03d", k)
	}
	got, err := b.w.Lookup(b.ctx, names, t0)
	require.NoError(t, err)
	require.Len(t, got, keys)
	for k, rs := range results {
		require.Len(t, rs, len(owners)*perOwner)
		winners := map[string]bool{}
		tokens := map[string]bool{}
		for _, r := range rs {
			if r.won {
				winners[r.owner] = true
				tokens[r.token] = true
			}
		}
		require.Len(t, winners, 1, "key %d: won by %v", k, winners)
		final := got[names[k]]
		require.True(t, winners[final.Owner], "key %d: held by %s, won by %v", k, final.Owner, winners)
		require.True(t, tokens[final.Token], "key %d: held with token %q, which no claim won with", k, final.Token)
		require.Equal(t, idempotency.Claimed, final.State)
		for _, r := range rs {
			if r.won {
				continue
			}
			require.NotEqual(t, r.owner, final.Owner, "key %d: an owner is never held off by itself", k)
			require.Equal(t, final.Owner, r.held.Owner, "key %d: a lost claim names the winner", k)
			require.True(t, tokens[r.held.Token], "key %d: a lost claim sees a token that won", k)
			require.Equal(t, idempotency.Claimed, r.held.State, "key %d", k)
			require.True(t, r.held.Lease.Equal(t0.Add(lease)), "key %d: lease %v", k, r.held.Lease)
			require.True(t, r.held.Expires.Equal(t0.Add(window)), "key %d: expires %v", k, r.held.Expires)
		}
	}
}

// testValidation: calls with a field missing or out of range fail before
// they change anything, and are neither lost nor unavailable.
func testValidation(t *testing.T, b *bundle) {
	requireInvalid := func(t *testing.T, err error, what string) {
		t.Helper()
		require.Error(t, err, what)
		require.NotErrorIs(t, err, idempotency.ErrLost, what)
		require.NotErrorIs(t, err, idempotency.ErrUnavailable, what)
	}
	good := idempotency.Claim{Key: "new", Owner: "A", Token: "t", Window: window, Lease: lease}
	for _, tc := range []struct {
		name   string
		change func(*idempotency.Claim)
	}{
		{"EmptyKey", func(c *idempotency.Claim) { c.Key = "" }},
		{"EmptyOwner", func(c *idempotency.Claim) { c.Owner = "" }},
		{"EmptyToken", func(c *idempotency.Claim) { c.Token = "" }},
		{"ZeroWindow", func(c *idempotency.Claim) { c.Window = 0 }},
		{"NegativeWindow", func(c *idempotency.Claim) { c.Window = -time.Second }},
		{"ZeroLease", func(c *idempotency.Claim) { c.Lease = 0 }},
		{"NegativeLease", func(c *idempotency.Claim) { c.Lease = -time.Second }},
	} {
		c := good
		tc.change(&c)
		_, ok, err := b.w.Claim(b.ctx, c, t0)
		requireInvalid(t, err, "Claim "+tc.name)
		require.False(t, ok, "Claim %s", tc.name)
	}
	b.requireAbsent(t, "new")

	b.mustClaim(t, "k", "A", "tA", t0)
	for _, tc := range []struct {
		name string
		run  func() error
	}{
		{"ConfirmEmptyKey", func() error {
			return b.w.Confirm(b.ctx, idempotency.Ref{Owner: "A", Token: "tA", ID: "e"})
		}},
		{"ConfirmEmptyOwner", func() error {
			return b.w.Confirm(b.ctx, idempotency.Ref{Key: "k", Token: "tA", ID: "e"})
		}},
		{"ConfirmEmptyToken", func() error {
			return b.w.Confirm(b.ctx, idempotency.Ref{Key: "k", Owner: "A", ID: "e"})
		}},
		{"ConfirmEmptyID", func() error {
			return b.w.Confirm(b.ctx, idempotency.Ref{Key: "k", Owner: "A", Token: "tA"})
		}},
		{"MarkEmptyOwner", func() error {
			return b.w.Mark(b.ctx, idempotency.Ref{Key: "k", ID: "e"}, idempotency.Delivered)
		}},
		{"MarkEmptyID", func() error {
			return b.w.Mark(b.ctx, idempotency.Ref{Key: "k", Owner: "A", Token: "tA"}, idempotency.Delivered)
		}},
		{"ReleaseEmptyKey", func() error {
			return b.w.Release(b.ctx, idempotency.Ref{Owner: "A", Token: "tA"})
		}},
		{"ReleaseEmptyOwner", func() error {
			return b.w.Release(b.ctx, idempotency.Ref{Key: "k", Token: "tA"})
		}},
		{"ReleaseNeitherTokenNorID", func() error {
			return b.w.Release(b.ctx, idempotency.Ref{Key: "k", Owner: "A"})
		}},
		{"LookupEmptyKey", func() error {
			_, err := b.w.Lookup(b.ctx, []string{"k", ""}, t0)
			return err
		}},
	} {
		requireInvalid(t, tc.run(), tc.name)
	}
	b.requireHeld(t, "k", claimedBy("A", "tA", t0))
}

// testCanceledContext: a call whose context has ended returns an error
// wrapping the context's, and changes nothing.
func testCanceledContext(t *testing.T, b *bundle) {
	b.mustClaim(t, "k", "A", "tA", t0)
	ctx, cancel := context.WithCancel(b.ctx)
	cancel()
	_, _, err := b.w.Claim(ctx, idempotency.Claim{Key: "new", Owner: "A", Token: "t", Window: window, Lease: lease}, t0)
	requireCanceled(t, err, "Claim")
	requireCanceled(t, b.w.Confirm(ctx, idempotency.Ref{Key: "k", Owner: "A", Token: "tA", ID: "e"}), "Confirm")
	requireCanceled(t, b.w.Release(ctx, idempotency.Ref{Key: "k", Owner: "A", Token: "tA"}), "Release")
	_, err = b.w.Lookup(ctx, []string{"k"}, t0)
	requireCanceled(t, err, "Lookup")
	b.requireAbsent(t, "new")
	b.requireHeld(t, "k", claimedBy("A", "tA", t0))

	b.confirm(t, "k", "A", "tA", "e")
	requireCanceled(t, b.w.Mark(ctx, idempotency.Ref{Key: "k", Owner: "A", ID: "e"}, idempotency.Delivered), "Mark")
	b.requireHeld(t, "k", eventOf("A", "tA", "e", idempotency.Queued))
}

func requireCanceled(t *testing.T, err error, op string) {
	t.Helper()
	require.Error(t, err, op)
	require.True(t, errors.Is(err, context.Canceled), "%s: %v does not wrap context.Canceled", op, err)
}
