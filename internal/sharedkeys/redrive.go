package sharedkeys

import (
	"context"
	"slices"
	"time"

	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/store"
)

// Redrive is one redrive batch carried through the shared window: its
// keys released by the letters' old events and claimed for the new ones.
// The keys stay locked within the process until Finish.
type Redrive struct {
	k *Keys
	// IDs are the letters to redrive: unkeyed, or with their key claimed.
	IDs    []string
	window pendingWindow
	claims map[string]*claimResult
	unlock func()
}

// Redrive releases the keys of a batch of letters, held by the
// dead-lettered events, and claims them for the redriven events, each for
// window. keyOf maps the id of each keyed letter among ids to its key. A
// letter whose key another dispatcher holds now is left a letter (not in
// the returned IDs). The caller must call Finish once the batch is
// committed or has failed.
func (k *Keys) Redrive(ctx context.Context, ids []string, keyOf map[string]string, window time.Duration) (*Redrive, error) {
	var keys []string
	for _, key := range keyOf {
		keys = append(keys, key)
	}
	keys = slices.Compact(slices.Sorted(slices.Values(keys)))
	unlock, err := k.locks.lock(ctx, keys)
	if err != nil {
		return nil, err
	}
	for id, key := range keyOf {
		if err := k.cfg.Window.Release(ctx, idempotency.Ref{Key: key, Owner: k.owner, ID: id}); err != nil {
			unlock()
			return nil, err
		}
	}
	claims, err := k.claimAll(ctx, keys, func(string) time.Duration { return window })
	if err != nil {
		unlock()
		return nil, err
	}
	now := k.cfg.Now()
	r := &Redrive{k: k, claims: claims, unlock: unlock, window: pendingWindow{local: k.cfg.Local, claims: map[string]pendingClaim{}}}
	for key, c := range claims {
		if !c.held {
			r.window.claims[key] = pendingClaim{key: key, token: c.token, expires: now.Add(window)}
		}
	}
	for _, id := range ids {
		if c := claims[keyOf[id]]; c != nil && c.held {
			k.log.Warn("not redriving a letter: its key is held by another dispatcher", "id", id, "key", keyOf[id], "holder", c.holder.Owner, "holder_id", c.holder.ID)
			continue
		}
		r.IDs = append(r.IDs, id)
	}
	return r, nil
}

// Window is the key window the batch's events are to be committed
// through: the file's own index, with a pending record of each claim.
func (r *Redrive) Window() store.KeyWindow { return r.window }

// Finish confirms the claims of the redriven events, seqs, whose keys are
// keys (one each, "" for none), or gives the claims back if the batch was
// not committed (err). Claims whose letter went between Redrive and the
// commit are given back too.
func (r *Redrive) Finish(ctx context.Context, err error, seqs []uint64, keys []string) {
	defer r.unlock()
	k := r.k
	if err != nil {
		if ctx.Err() == nil {
			k.releaseClaims(r.claims)
		}
		return
	}
	unused := map[string]*claimResult{}
	for key, c := range r.claims {
		if !slices.Contains(keys, key) {
			unused[key] = c // its letter went between the read and the batch
		}
	}
	k.releaseClaims(unused)
	for i, seq := range seqs {
		pc, ok := r.window.claims[keys[i]]
		if !ok {
			continue
		}
		k.pend(seq, pc)
		if _, err := k.confirmClaim(ctx, seq, true); err != nil {
			k.log.Warn("could not confirm a key claim; confirming it in the background", "id", formatID(seq), "key", keys[i], "error", redacted(err))
		}
	}
}
