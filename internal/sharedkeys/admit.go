package sharedkeys

import (
	"context"
	"sync"
	"time"

	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/store"
)

// Receipt is what Admit says of one event: its ID, in this file or, for a
// key held elsewhere, in the holder's, and whether it is a duplicate.
type Receipt struct {
	ID        string
	Duplicate bool
}

// admission is one Admit's batch, as its steps fill it in.
type admission struct {
	news    []store.NewEvent
	keys    []string                 // distinct keys, in order of first use
	windows map[string]time.Duration // each key's window: its first event's
	now     time.Time

	remote []string                      // plan: keys to claim in the shared window
	held   map[string]idempotency.Holder // plan: keys read as queued or done elsewhere
	claims map[string]*claimResult       // claim: claimed with a token, or held elsewhere
	rs     []Receipt                     // commit, confirm
}

// confirmation is an event committed with a pending claim to confirm.
type confirmation struct {
	i   int // in news
	seq uint64
}

// Admit queues news, a batch with at least one keyed event, deduplicated
// against the shared window as well as the file's own index: plan, claim,
// commit, confirm. It returns a receipt for each event, in order, and
// calls Config.Duplicate for each duplicate. An error means nothing was
// queued, unless ctx ended during the commit (see commit).
//
// The keys of the batch are locked within the process from the plan to
// the confirm, so that no claim of this owner replaces another one (same
// owner, so the window allows it) that is about to be confirmed.
func (k *Keys) Admit(ctx context.Context, news []store.NewEvent) ([]Receipt, error) {
	a := newAdmission(news)
	unlock, err := k.locks.lock(ctx, a.keys)
	if err != nil {
		return nil, err
	}
	defer unlock()
	a.now = k.cfg.Now()
	if err := k.plan(ctx, a); err != nil {
		return nil, err
	}
	if err := k.claim(ctx, a); err != nil {
		return nil, err
	}
	confirms, err := k.commit(ctx, a)
	if err != nil {
		return nil, err
	}
	lost := k.confirm(ctx, a, confirms)
	// Those lost to a takeover were counted as they were removed.
	for i, r := range a.rs {
		if r.Duplicate && !lost[i] {
			k.cfg.Duplicate()
		}
	}
	return a.rs, nil
}

// newAdmission collects the distinct keys of news. A key is claimed once
// per batch, for the window of its first event: the later events of the
// key are the first one's duplicates, refused by the commit.
func newAdmission(news []store.NewEvent) *admission {
	a := &admission{news: news, windows: map[string]time.Duration{}}
	for _, e := range news {
		if _, seen := a.windows[e.Key]; e.Key != "" && !seen {
			a.keys = append(a.keys, e.Key)
			a.windows[e.Key] = e.Window
		}
	}
	return a
}

// plan decides which keys need a claim. A key the file's own index holds
// needs no round trip: the commit's transaction finds it there and
// refuses its events. Of the rest, a batch reads its keys first, up to a
// hundred a round trip, so that keys queued or done elsewhere (a
// redelivered batch, say) cost no failed conditional write each; a key
// only Claimed elsewhere is still claimed, to wait that claim out or take
// it over.
func (k *Keys) plan(ctx context.Context, a *admission) error {
	local, err := k.cfg.Local.Holds(a.keys, a.now)
	if err != nil {
		return err
	}
	for _, key := range a.keys {
		if !local[key] {
			a.remote = append(a.remote, key)
		}
	}
	if len(a.remote) <= 1 {
		return nil
	}
	hs, err := k.cfg.Window.Lookup(ctx, a.remote, a.now)
	if err != nil {
		k.noteUnavailable(err)
		return err
	}
	a.held = map[string]idempotency.Holder{}
	var rest []string
	for _, key := range a.remote {
		if h, ok := hs[key]; ok && h.State != idempotency.Claimed {
			a.held[key] = h
			continue
		}
		rest = append(rest, key)
	}
	a.remote = rest
	return nil
}

// claim takes the planned keys in the shared window for this file's
// owner, each with a fresh token and a lease, and adds the keys the plan
// read as held elsewhere. Either every key is claimed or held, or none is
// left claimed (claimAll releases them) and the error is returned.
func (k *Keys) claim(ctx context.Context, a *admission) error {
	claims, err := k.claimAll(ctx, a.remote, func(key string) time.Duration { return a.windows[key] })
	if err != nil {
		return err
	}
	for key, h := range a.held {
		claims[key] = &claimResult{holder: h, held: true}
	}
	a.claims = claims
	return nil
}

// commit writes the events whose keys are not held elsewhere, in one
// transaction that also writes a pending record of each claim with its
// event: from here a death before the confirm loses nothing, since Open
// confirms what the records name. It returns the events to confirm. If the
// commit certainly failed, the claims are given back; after a ctx error
// it may still land, and its pending records will confirm the claims.
func (k *Keys) commit(ctx context.Context, a *admission) ([]confirmation, error) {
	a.rs = make([]Receipt, len(a.news))
	var write []store.NewEvent
	var at []int
	for i, e := range a.news {
		if c := a.claims[e.Key]; c != nil && c.held {
			a.rs[i] = Receipt{ID: c.holder.ID, Duplicate: true}
			continue
		}
		write = append(write, e)
		at = append(at, i)
	}
	if len(write) == 0 {
		return nil, nil
	}
	pcs := map[string]pendingClaim{}
	for key, c := range a.claims {
		if !c.held {
			pcs[key] = pendingClaim{key: key, token: c.token, expires: a.now.Add(a.windows[key])}
		}
	}
	results, err := k.cfg.Queue.EnqueueUnique(ctx, write, pendingWindow{local: k.cfg.Local, claims: pcs})
	if err != nil {
		if ctx.Err() == nil {
			k.releaseClaims(a.claims)
		}
		return nil, err
	}
	var confirms []confirmation
	for j, r := range results {
		i := at[j]
		a.rs[i] = Receipt{ID: formatID(r.Seq), Duplicate: r.Duplicate}
		if r.Duplicate {
			continue
		}
		if pc, ok := pcs[a.news[i].Key]; ok {
			k.pend(r.Seq, pc)
			confirms = append(confirms, confirmation{i, r.Seq})
		}
	}
	return confirms, nil
}

// confirm confirms the claims of the events committed, concurrently. An
// event whose claim was taken over before its confirm was removed from
// the queue as it was confirmed, so exactly one event keeps the key: its
// receipt becomes the holder's, as a duplicate. A confirm that fails is
// left to the background loop, and its event reported queued: the
// pending record keeps the claim. It returns the indexes of the events
// lost to a takeover.
func (k *Keys) confirm(ctx context.Context, a *admission, confirms []confirmation) map[int]bool {
	var wg sync.WaitGroup
	lostTo := make([]*idempotency.Holder, len(confirms))
	for j, c := range confirms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := k.confirmClaim(ctx, c.seq, true)
			if err != nil {
				k.log.Warn("could not confirm a key claim; confirming it in the background", "id", formatID(c.seq), "key", a.news[c.i].Key, "error", redacted(err))
				k.wake()
			}
			lostTo[j] = h
		}()
	}
	wg.Wait()
	lost := map[int]bool{}
	for j, c := range confirms {
		if h := lostTo[j]; h != nil {
			a.rs[c.i] = Receipt{ID: h.ID, Duplicate: true}
			lost[c.i] = true
		}
	}
	return lost
}
