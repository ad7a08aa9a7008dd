package sharedkeys

import (
	"context"
	"slices"
	"sync"
)

// keyLocks serialises, within the process, the claims of events with the
// same key, so that one claim's confirm is never overtaken by another's.
type keyLocks struct {
	mu   sync.Mutex
	held map[string]chan struct{}
}

// lock takes the locks of keys, in sorted order so that two batches
// cannot deadlock, and returns the function that gives them back.
func (l *keyLocks) lock(ctx context.Context, keys []string) (func(), error) {
	sorted := slices.Sorted(slices.Values(keys))
	var got []string
	unlock := func() {
		l.mu.Lock()
		for _, k := range got {
			close(l.held[k])
			delete(l.held, k)
		}
		l.mu.Unlock()
	}
	for _, k := range sorted {
		for {
			l.mu.Lock()
			if l.held == nil {
				l.held = map[string]chan struct{}{}
			}
			ch, busy := l.held[k]
			if !busy {
				l.held[k] = make(chan struct{})
				l.mu.Unlock()
				got = append(got, k)
				break
			}
			l.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				unlock()
				return nil, ctx.Err()
			}
		}
	}
	return unlock, nil
}
