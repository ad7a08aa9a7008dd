package sharedkeys

import (
	"context"
	"sync"
	"time"

	"github.com/lambdadispatch/dispatcher/idempotency"
)

// claimResult is the outcome of claiming one key in the shared window.
type claimResult struct {
	token  string
	holder idempotency.Holder
	held   bool // by another event: the key's events here are duplicates
	err    error
}

// claimAll claims keys in the shared window, a few at a time, waiting out
// claims of other owners that are not yet committed. On an error it
// releases the claims it made, so that nobody waits for their leases.
func (k *Keys) claimAll(ctx context.Context, keys []string, window func(key string) time.Duration) (map[string]*claimResult, error) {
	out := make(map[string]*claimResult, len(keys))
	for _, key := range keys {
		out[key] = &claimResult{token: newToken()}
	}
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, key := range keys {
		r := out[key]
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r.holder, r.held, r.err = k.claimOne(ctx, idempotency.Claim{Key: key, Owner: k.owner, Token: r.token, Window: window(key), Lease: k.cfg.Lease})
		}()
	}
	wg.Wait()
	for _, key := range keys {
		if err := out[key].err; err != nil {
			k.noteUnavailable(err)
			k.releaseClaims(out)
			return nil, err
		}
	}
	return out, nil
}

// claimOne claims c.Key, or reports its holder. A claim of another owner
// that is not yet committed is waited for: it will be confirmed, or its
// lease will pass and the key be taken over.
func (k *Keys) claimOne(ctx context.Context, c idempotency.Claim) (idempotency.Holder, bool, error) {
	wait := 2 * time.Millisecond
	for {
		now := k.cfg.Now()
		h, claimed, err := k.cfg.Window.Claim(ctx, c, now)
		if err != nil {
			return h, false, err
		}
		k.count.Claims.Add(1)
		if claimed {
			return h, false, nil
		}
		if h.State != idempotency.Claimed {
			return h, true, nil
		}
		// Another dispatcher claimed the key and has not committed yet: it
		// will confirm in a moment, or, if it died, its lease will pass
		// and the next try takes the key over.
		k.count.Waits.Add(1)
		if !sleep(ctx, wait) {
			return h, false, ctx.Err()
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// releaseClaims gives back the claims made for events that will not be
// committed, so that nobody waits for their leases. It is best effort: a
// claim left behind only delays others by its lease.
func (k *Keys) releaseClaims(rs map[string]*claimResult) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for key, r := range rs {
		if r.err == nil && !r.held {
			if err := k.cfg.Window.Release(ctx, idempotency.Ref{Key: key, Owner: k.owner, Token: r.token}); err != nil {
				k.log.Warn("could not release a key claim; it lapses with its lease", "key", key, "error", redacted(err))
			}
		}
	}
}
