package dispatcher

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/retry"
	"github.com/lambdadispatch/dispatcher/store"
)

// ErrKeysUnavailable is matched (errors.Is) by the error Enqueue returns
// when the shared key window (WithSharedKeys) could not be reached or was
// throttled. Nothing was queued: the caller may retry. The error is an
// *idempotency.UnavailableError, which says which.
var ErrKeysUnavailable = idempotency.ErrUnavailable

// DefaultClaimLease is how long an unconfirmed claim in a shared key window
// keeps other dispatchers out (WithClaimLease).
const DefaultClaimLease = 30 * time.Second

// The file's side of a shared window: the owner's identity, and the claims
// committed but not yet confirmed, so that a crash between the commit and
// the confirm is finished at the next Open.
var (
	bucketShared  = []byte("shared")
	bucketPending = []byte("sharedpending")
	keyOwner      = []byte("owner")
)

const pendingVersion = 1

// sharedKeys is the dispatcher's side of a shared key window: claim,
// commit with a pending record, confirm. The sequence, and why a death
// between any two steps loses nothing, is in package idempotency's doc.
type sharedKeys struct {
	w     idempotency.Shared
	owner string
	lease time.Duration
	locks keyLocks

	mu          sync.Mutex
	unconfirmed map[uint64]pendingClaim // committed, not confirmed
	settling    map[uint64]*settleCall  // settles under way
	settled     []uint64                // pending records to delete from the file

	kick chan struct{}
	stop context.CancelFunc
	done chan struct{}

	degradedUntil atomic.Int64 // Unix ns: delivery-side marks skipped until then

	claims, waits, lost, unavailable, marksSkipped atomic.Uint64
}

// pendingClaim is a claim whose event is committed but not yet confirmed.
type pendingClaim struct {
	key, token string
	expires    time.Time // the end of the key's window
}

func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

func encodePending(p pendingClaim) []byte {
	b := make([]byte, 0, 1+8+binary.MaxVarintLen64+len(p.token)+len(p.key))
	b = append(b, pendingVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(p.expires.UnixNano()))
	b = binary.AppendUvarint(b, uint64(len(p.token)))
	b = append(b, p.token...)
	return append(b, p.key...)
}

func decodePending(v []byte) (pendingClaim, error) {
	if len(v) < 10 || v[0] != pendingVersion {
		return pendingClaim{}, fmt.Errorf("dispatcher: unreadable pending claim (%d bytes)", len(v))
	}
	exp := int64(binary.BigEndian.Uint64(v[1:9]))
	n, w := binary.Uvarint(v[9:])
	if w <= 0 || n > uint64(len(v)-9-w) {
		return pendingClaim{}, fmt.Errorf("dispatcher: unreadable pending claim (%d bytes)", len(v))
	}
	rest := v[9+w:]
	return pendingClaim{token: string(rest[:n]), key: string(rest[n:]), expires: time.Unix(0, exp)}, nil
}

// openShared reads or creates the file's owner identity, loads the claims
// left unconfirmed, and starts the loop that confirms them.
func (d *Dispatcher) openShared(w idempotency.Shared) error {
	sk := &sharedKeys{w: w, lease: d.opts.claimLease, unconfirmed: map[uint64]pendingClaim{}, settling: map[uint64]*settleCall{}, kick: make(chan struct{}, 1)}
	err := d.st.Update(context.Background(), func(tx *bolt.Tx) error {
		clear(sk.unconfirmed)
		b, err := tx.CreateBucketIfNotExists(bucketShared)
		if err != nil {
			return err
		}
		if v := b.Get(keyOwner); v != nil {
			sk.owner = string(v)
		} else {
			sk.owner = newToken()
			if err := b.Put(keyOwner, []byte(sk.owner)); err != nil {
				return err
			}
		}
		p, err := tx.CreateBucketIfNotExists(bucketPending)
		if err != nil {
			return err
		}
		return p.ForEach(func(k, v []byte) error {
			pc, err := decodePending(v)
			if err != nil || len(k) != 8 {
				d.log.Error("dropping an unreadable pending claim", "error", err)
				return nil
			}
			sk.unconfirmed[binary.BigEndian.Uint64(k)] = pc
			return nil
		})
	})
	if err != nil {
		return translate(err)
	}
	d.shared = sk
	ctx, stop := context.WithCancel(context.Background())
	sk.stop, sk.done = stop, make(chan struct{})
	go d.confirmLoop(ctx)
	return nil
}

// Owner returns the identity this dispatcher's file claims keys under in a
// shared key window, or "" without one. It is stable across restarts.
func (d *Dispatcher) Owner() string {
	if d.shared == nil {
		return ""
	}
	return d.shared.owner
}

// confirmLoop confirms the claims left unconfirmed by a crash or by an
// unreachable window, and deletes the records of those settled, until
// Close.
func (d *Dispatcher) confirmLoop(ctx context.Context) {
	sk := d.shared
	defer close(sk.done)
	backoff := 0
	for {
		wait := time.Second
		if backoff > 0 {
			wait = min(time.Duration(1<<min(backoff, 6))*100*time.Millisecond, 30*time.Second)
		}
		if d.confirmPending(ctx) {
			backoff = 0
		} else {
			backoff++
		}
		d.flushSettled(ctx)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-sk.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// confirmPending tries every unconfirmed claim once, and reports false if
// the window was unavailable.
func (d *Dispatcher) confirmPending(ctx context.Context) bool {
	sk := d.shared
	sk.mu.Lock()
	seqs := make([]uint64, 0, len(sk.unconfirmed))
	for seq := range sk.unconfirmed {
		seqs = append(seqs, seq)
	}
	sk.mu.Unlock()
	slices.Sort(seqs)
	// A few at a time: the claims must be confirmed before their leases
	// pass, and one slow request each, in turn, would not keep up.
	var failed atomic.Bool
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, seq := range seqs {
		if ctx.Err() != nil || failed.Load() {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := d.settleClaim(ctx, seq, true); err != nil {
				if !errors.Is(err, idempotency.ErrUnavailable) && ctx.Err() == nil {
					d.log.Error("could not confirm a key claim", "id", formatID(seq), "error", redacted(err))
				}
				failed.Store(true)
			}
		})
	}
	wg.Wait()
	return !failed.Load()
}

// settleClaim confirms the pending claim of event seq, if it has one. It
// returns the holder elsewhere when the claim was lost to it; then, if
// remove is set, the event is taken out of the queue as the duplicate it
// turned out to be. An error leaves the claim pending.
//
// Concurrent settles of one event (Enqueue's, the runner's, the background
// loop's) share one attempt and its outcome.
func (d *Dispatcher) settleClaim(ctx context.Context, seq uint64, remove bool) (*idempotency.Holder, error) {
	sk := d.shared
	sk.mu.Lock()
	pc, ok := sk.unconfirmed[seq]
	if !ok {
		sk.mu.Unlock()
		return nil, nil
	}
	if c := sk.settling[seq]; c != nil {
		sk.mu.Unlock()
		select {
		case <-c.done:
			return c.holder, c.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c := &settleCall{done: make(chan struct{})}
	sk.settling[seq] = c
	sk.mu.Unlock()
	defer func() {
		sk.mu.Lock()
		delete(sk.settling, seq)
		sk.mu.Unlock()
		close(c.done)
	}()
	c.holder, c.err = d.trySettle(ctx, seq, pc, remove)
	return c.holder, c.err
}

// settleCall is one settle of an event's claim under way.
type settleCall struct {
	done   chan struct{}
	holder *idempotency.Holder
	err    error
}

func (d *Dispatcher) trySettle(ctx context.Context, seq uint64, pc pendingClaim, remove bool) (*idempotency.Holder, error) {
	sk := d.shared
	// The event may be gone from the file already, delivered while the
	// window was too slow to confirm before the invoke: its claim is
	// confirmed all the same, or another dispatcher would take the key
	// over once the lease passed and deliver it a second time.
	ref := idempotency.Ref{Key: pc.key, Owner: sk.owner, Token: pc.token, ID: formatID(seq)}
	for tries := 0; ; tries++ {
		err := sk.w.Confirm(ctx, ref)
		if err == nil {
			sk.settle(seq)
			return nil, nil
		}
		if !errors.Is(err, idempotency.ErrLost) {
			sk.noteUnavailable(err)
			return nil, err
		}
		now := d.opts.now()
		if !pc.expires.After(now) {
			// The window is over: the key deduplicates nothing any more.
			sk.settle(seq)
			return nil, nil
		}
		// Our claim is gone. If nobody holds the key, this event is still
		// its only one: claim it again. Otherwise the key's event is
		// elsewhere and this one is the duplicate.
		h, claimed, err := sk.w.Claim(ctx, idempotency.Claim{Key: pc.key, Owner: sk.owner, Token: pc.token, Window: pc.expires.Sub(now), Lease: sk.lease}, now)
		if err != nil {
			sk.noteUnavailable(err)
			return nil, err
		}
		if claimed {
			if tries < 3 {
				continue
			}
			return nil, fmt.Errorf("dispatcher: key %q: claimed again but the confirm keeps failing", pc.key)
		}
		if h.Owner == sk.owner && h.ID == ref.ID {
			// Confirmed already, by a concurrent settle of the same
			// event, and perhaps delivered since.
			sk.settle(seq)
			return nil, nil
		}
		if h.State == idempotency.Claimed && h.Lease.After(now) {
			return nil, fmt.Errorf("dispatcher: key %q: claimed by %s, not yet committed", pc.key, h.Owner)
		}
		sk.lost.Add(1)
		d.log.Warn("a key claim was taken over before it was confirmed: the event is a duplicate", "id", formatID(seq), "key", pc.key, "holder", h.Owner, "holder_id", h.ID)
		if remove {
			if _, err := d.st.Remove(ctx, seq, func(tx *bolt.Tx, _ store.Event) error {
				return deletePending(tx, seq)
			}); err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
			d.duplicates.Add(1)
			d.opts.metrics.Deduplicated("enqueue")
		}
		sk.settle(seq)
		return &h, nil
	}
}

func deletePending(tx *bolt.Tx, seqs ...uint64) error {
	b := tx.Bucket(bucketPending)
	if b == nil {
		return nil
	}
	for _, seq := range seqs {
		if err := b.Delete(binary.BigEndian.AppendUint64(nil, seq)); err != nil {
			return err
		}
	}
	return nil
}

// settle drops seq from the unconfirmed claims; its record in the file
// goes with the next flush, so that a confirm costs no commit of its own.
// A record left by a crash is confirmed again at Open, which is harmless.
func (sk *sharedKeys) settle(seq uint64) {
	sk.mu.Lock()
	if _, ok := sk.unconfirmed[seq]; ok {
		delete(sk.unconfirmed, seq)
		sk.settled = append(sk.settled, seq)
	}
	sk.mu.Unlock()
}

func (d *Dispatcher) flushSettled(ctx context.Context) {
	sk := d.shared
	sk.mu.Lock()
	seqs := sk.settled
	sk.settled = nil
	sk.mu.Unlock()
	if len(seqs) == 0 {
		return
	}
	if err := d.st.Update(ctx, func(tx *bolt.Tx) error { return deletePending(tx, seqs...) }); err != nil {
		sk.mu.Lock()
		sk.settled = append(sk.settled, seqs...)
		sk.mu.Unlock()
	}
}

func (sk *sharedKeys) noteUnavailable(err error) {
	if errors.Is(err, idempotency.ErrUnavailable) {
		sk.unavailable.Add(1)
	}
}

func (d *Dispatcher) closeShared() {
	if d.shared == nil {
		return
	}
	d.shared.stop()
	<-d.shared.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d.flushSettled(ctx)
}

// sharedWindow is the store's KeyWindow in shared mode: the file's own
// index, plus a pending record for each claim, written with its event.
type sharedWindow struct {
	idempotency.Window
	claims map[string]pendingClaim
}

// Claim claims key in the file's index and records the shared claim as
// pending, in the transaction that writes the event seq.
func (w sharedWindow) Claim(tx *bolt.Tx, key string, seq uint64, now time.Time, window time.Duration) error {
	if err := w.Window.Claim(tx, key, seq, now, window); err != nil {
		return err
	}
	pc, ok := w.claims[key]
	if !ok {
		return nil
	}
	b, err := tx.CreateBucketIfNotExists(bucketPending)
	if err != nil {
		return err
	}
	return b.Put(binary.BigEndian.AppendUint64(nil, seq), encodePending(pc))
}

// claimResult is the outcome of claiming one key in the shared window.
type claimResult struct {
	token  string
	holder idempotency.Holder
	held   bool
	err    error
}

// claimAll claims keys in the shared window, a few at a time, waiting out
// claims of other owners that are not yet committed. On an error it
// releases the claims it made.
func (d *Dispatcher) claimAll(ctx context.Context, keys []string, window func(key string) time.Duration) (map[string]*claimResult, error) {
	sk := d.shared
	out := make(map[string]*claimResult, len(keys))
	for _, k := range keys {
		out[k] = &claimResult{token: newToken()}
	}
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, k := range keys {
		r := out[k]
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r.holder, r.held, r.err = d.claimOne(ctx, idempotency.Claim{Key: k, Owner: sk.owner, Token: r.token, Window: window(k), Lease: sk.lease})
		}()
	}
	wg.Wait()
	for _, k := range keys {
		if err := out[k].err; err != nil {
			sk.noteUnavailable(err)
			d.releaseClaims(out)
			return nil, err
		}
	}
	return out, nil
}

func (d *Dispatcher) claimOne(ctx context.Context, c idempotency.Claim) (idempotency.Holder, bool, error) {
	sk := d.shared
	wait := 2 * time.Millisecond
	for {
		now := d.opts.now()
		h, claimed, err := sk.w.Claim(ctx, c, now)
		if err != nil {
			return h, false, err
		}
		sk.claims.Add(1)
		if claimed {
			return h, false, nil
		}
		if h.State != idempotency.Claimed {
			return h, true, nil
		}
		// Another dispatcher claimed the key and has not committed yet: it
		// will confirm in a moment, or, if it died, its lease will pass
		// and the next try takes the key over.
		sk.waits.Add(1)
		if !sleep(ctx, wait) {
			return h, false, ctx.Err()
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// releaseClaims gives back the claims made for events that will not be
// committed, so that nobody waits for their leases. It is best effort: a
// claim left behind only delays others by its lease.
func (d *Dispatcher) releaseClaims(rs map[string]*claimResult) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for k, r := range rs {
		if r.err == nil && !r.held {
			if err := d.shared.w.Release(ctx, idempotency.Ref{Key: k, Owner: d.shared.owner, Token: r.token}); err != nil {
				d.log.Warn("could not release a key claim; it lapses with its lease", "key", k, "error", redacted(err))
			}
		}
	}
}

// enqueueShared is enqueue for a batch with keys when the key window is
// shared: claim, commit, confirm.
func (d *Dispatcher) enqueueShared(ctx context.Context, news []store.NewEvent) ([]Receipt, error) {
	sk := d.shared
	var keys []string
	windows := map[string]time.Duration{}
	for _, e := range news {
		if _, seen := windows[e.Key]; e.Key != "" && !seen {
			keys = append(keys, e.Key)
			windows[e.Key] = e.Window
		}
	}
	unlock, err := sk.locks.lock(ctx, keys)
	if err != nil {
		return nil, err
	}
	defer unlock()

	// Keys this file holds already need no round trip.
	now := d.opts.now()
	local := map[string]bool{}
	if err := d.st.DB().View(func(tx *bolt.Tx) error {
		for _, k := range keys {
			_, ok, err := d.keys.Lookup(tx, k, now)
			if err != nil {
				return err
			}
			local[k] = ok
		}
		return nil
	}); err != nil {
		return nil, err
	}
	var remote []string
	for _, k := range keys {
		if !local[k] {
			remote = append(remote, k)
		}
	}
	// A batch reads its keys first, up to a hundred a round trip, so that
	// keys held elsewhere (a redelivered batch, say) cost no failed
	// conditional write each.
	var heldElsewhere map[string]idempotency.Holder
	if len(remote) > 1 {
		hs, err := sk.w.Lookup(ctx, remote, now)
		if err != nil {
			sk.noteUnavailable(err)
			return nil, err
		}
		heldElsewhere = map[string]idempotency.Holder{}
		var rest []string
		for _, k := range remote {
			if h, ok := hs[k]; ok && h.State != idempotency.Claimed {
				heldElsewhere[k] = h
				continue
			}
			rest = append(rest, k)
		}
		remote = rest
	}
	claims, err := d.claimAll(ctx, remote, func(k string) time.Duration { return windows[k] })
	if err != nil {
		return nil, err
	}
	for k, h := range heldElsewhere {
		claims[k] = &claimResult{holder: h, held: true}
	}

	rs := make([]Receipt, len(news))
	var write []store.NewEvent
	var at []int
	for i, e := range news {
		if c := claims[e.Key]; c != nil && c.held {
			rs[i] = Receipt{ID: c.holder.ID, Duplicate: true}
			continue
		}
		write = append(write, e)
		at = append(at, i)
	}
	pcs := map[string]pendingClaim{}
	for k, c := range claims {
		if !c.held {
			pcs[k] = pendingClaim{key: k, token: c.token, expires: now.Add(windows[k])}
		}
	}
	var results []store.Result
	if len(write) > 0 {
		results, err = d.st.EnqueueUnique(ctx, write, sharedWindow{Window: idempotency.Window{Index: d.keys}, claims: pcs})
		if err != nil {
			if ctx.Err() == nil {
				// Certainly not committed: give the claims back. After a
				// ctx error the commit may still land, and its pending
				// records will confirm the claims.
				d.releaseClaims(claims)
			}
			return nil, translate(err)
		}
	}
	type confirm struct {
		i   int
		seq uint64
	}
	var confirms []confirm
	written := 0
	for j, r := range results {
		i := at[j]
		rs[i] = Receipt{ID: formatID(r.Seq), Duplicate: r.Duplicate}
		if r.Duplicate {
			continue
		}
		written++
		if pc, ok := pcs[news[i].Key]; ok {
			sk.mu.Lock()
			sk.unconfirmed[r.Seq] = pc
			sk.mu.Unlock()
			confirms = append(confirms, confirm{i, r.Seq})
		}
	}
	var wg sync.WaitGroup
	lostTo := make([]*idempotency.Holder, len(confirms))
	for j, c := range confirms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := d.settleClaim(ctx, c.seq, true)
			if err != nil {
				d.log.Warn("could not confirm a key claim; confirming it in the background", "id", formatID(c.seq), "key", news[c.i].Key, "error", redacted(err))
				select {
				case sk.kick <- struct{}{}:
				default:
				}
			}
			lostTo[j] = h
		}()
	}
	wg.Wait()
	lostAt := map[int]bool{}
	for j, c := range confirms {
		if h := lostTo[j]; h != nil {
			rs[c.i] = Receipt{ID: h.ID, Duplicate: true}
			lostAt[c.i] = true
			written--
		}
	}
	// Those lost to a takeover were counted as they were removed.
	for i, r := range rs {
		if r.Duplicate && !lostAt[i] {
			d.duplicates.Add(1)
			d.opts.metrics.Deduplicated("enqueue")
		}
	}
	d.opts.metrics.Enqueued(written)
	return rs, nil
}

// deliveryShared is the shared window's side of delivery: the hooks
// package delivery calls for a keyed event before its invoke and after
// its outcome.
type deliveryShared struct{ d *Dispatcher }

// BeforeInvoke settles a keyed event's pending claim before it is sent,
// and reports whether the event turned out to be a duplicate. When the
// window is unreachable the event is sent on the local index's word.
func (s deliveryShared) BeforeInvoke(ctx context.Context, ev store.Event) bool {
	d, sk := s.d, s.d.shared
	now := time.Now()
	if now.UnixNano() < sk.degradedUntil.Load() {
		// The window failed moments ago: do not make every event wait for
		// it to fail again.
		return false
	}
	cctx, cancel := context.WithTimeout(ctx, min(d.opts.invokeTimeout, 10*time.Second))
	defer cancel()
	// An Enqueue of this key may still be confirming it, with no deadline
	// but its caller's: let it finish rather than race it under ours.
	if unlock, err := sk.locks.lock(cctx, []string{ev.Key}); err == nil {
		defer unlock()
	}
	h, err := d.settleClaim(cctx, ev.Seq, false)
	if err != nil {
		if ctx.Err() == nil {
			sk.degradedUntil.Store(now.Add(degradedFor).UnixNano())
			d.log.Warn("shared key window unavailable: delivering on the local key index alone for 30s", "id", formatID(ev.Seq), "key", ev.Key, "error", redacted(err))
		}
		return false
	}
	return h != nil
}

// Record records a keyed event's outcome in the shared window. It never
// holds up delivery for long: after the window fails, marks are skipped
// for a while, with a warning, and the local index stands alone.
func (s deliveryShared) Record(ctx context.Context, ev store.Event, state idempotency.State) {
	d, sk := s.d, s.d.shared
	if sk == nil || ev.Key == "" {
		return
	}
	now := time.Now()
	if now.UnixNano() < sk.degradedUntil.Load() {
		sk.marksSkipped.Add(1)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, min(d.opts.invokeTimeout, 5*time.Second))
	defer cancel()
	err := sk.w.Mark(cctx, idempotency.Ref{Key: ev.Key, Owner: sk.owner, ID: formatID(ev.Seq)}, state)
	switch {
	case err == nil, errors.Is(err, idempotency.ErrLost):
		// Lost: the window passed, or the claim was never confirmed; the
		// key is no longer this event's to mark.
	case ctx.Err() != nil:
	default:
		sk.unavailable.Add(1) // unreachable, throttled, or slower than the timeout above
		sk.degradedUntil.Store(now.Add(degradedFor).UnixNano())
		d.log.Warn("shared key window unavailable: not marking outcomes there for 30s", "id", formatID(ev.Seq), "key", ev.Key, "state", state.String(), "error", redacted(err))
	}
}

// degradedFor is how long delivery leaves the shared window alone after it
// failed: long enough not to slow every event, short enough to notice soon
// that it is back.
const degradedFor = 30 * time.Second

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

// sharedRedrive carries one redrive batch through the shared window: its
// keys released by the letters' old events and claimed for the new ones.
type sharedRedrive struct {
	d      *Dispatcher
	ids    []string // the letters to redrive: unkeyed, or with their key claimed
	window sharedWindow
	claims map[string]*claimResult
	unlock func()
}

// prepareSharedRedrive releases the keys of the batch's letters (held by
// the dead-lettered events) and claims them for the redriven events. A
// letter whose key another dispatcher holds now is left a letter.
func (d *Dispatcher) prepareSharedRedrive(ctx context.Context, ids []string) (*sharedRedrive, error) {
	sk := d.shared
	keyOf := map[string]string{}
	if err := d.st.DB().View(func(tx *bolt.Tx) error {
		for _, id := range ids {
			l, err := d.letters.GetTx(tx, id)
			if err == nil && l.Key != "" {
				keyOf[id] = l.Key
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	var keys []string
	for _, k := range keyOf {
		keys = append(keys, k)
	}
	keys = slices.Compact(slices.Sorted(slices.Values(keys)))
	unlock, err := sk.locks.lock(ctx, keys)
	if err != nil {
		return nil, err
	}
	for id, k := range keyOf {
		if err := sk.w.Release(ctx, idempotency.Ref{Key: k, Owner: sk.owner, ID: id}); err != nil {
			unlock()
			return nil, err
		}
	}
	claims, err := d.claimAll(ctx, keys, func(string) time.Duration { return d.opts.keyWindow })
	if err != nil {
		unlock()
		return nil, err
	}
	now := d.opts.now()
	sh := &sharedRedrive{d: d, claims: claims, unlock: unlock, window: sharedWindow{Window: idempotency.Window{Index: d.keys}, claims: map[string]pendingClaim{}}}
	for k, c := range claims {
		if !c.held {
			sh.window.claims[k] = pendingClaim{key: k, token: c.token, expires: now.Add(d.opts.keyWindow)}
		}
	}
	for _, id := range ids {
		if c := claims[keyOf[id]]; c != nil && c.held {
			d.log.Warn("not redriving a letter: its key is held by another dispatcher", "id", id, "key", keyOf[id], "holder", c.holder.Owner, "holder_id", c.holder.ID)
			continue
		}
		sh.ids = append(sh.ids, id)
	}
	return sh, nil
}

// finish confirms the claims of the redriven events, or gives them back if
// the batch was not committed.
func (sh *sharedRedrive) finish(ctx context.Context, err error, seqs []uint64, keys []string) {
	defer sh.unlock()
	d, sk := sh.d, sh.d.shared
	if err != nil {
		if ctx.Err() == nil {
			d.releaseClaims(sh.claims)
		}
		return
	}
	unused := map[string]*claimResult{}
	for k, c := range sh.claims {
		if !slices.Contains(keys, k) {
			unused[k] = c // its letter went between the read and the batch
		}
	}
	d.releaseClaims(unused)
	for i, seq := range seqs {
		pc, ok := sh.window.claims[keys[i]]
		if !ok {
			continue
		}
		sk.mu.Lock()
		sk.unconfirmed[seq] = pc
		sk.mu.Unlock()
		if _, err := d.settleClaim(ctx, seq, true); err != nil {
			d.log.Warn("could not confirm a key claim; confirming it in the background", "id", formatID(seq), "key", keys[i], "error", redacted(err))
		}
	}
}

// redacted is err's text for a log line, without the credentials an AWS
// service (a dead-letter queue, a shared key window) can quote back in it.
func redacted(err error) string { return retry.Redact(err.Error()) }

// sleep waits for d or until ctx ends, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
