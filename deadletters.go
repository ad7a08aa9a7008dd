package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/lambdadispatch/dispatcher/deadletter"
	"github.com/lambdadispatch/dispatcher/internal/lambdaname"
	"github.com/lambdadispatch/dispatcher/internal/sharedkeys"
	"github.com/lambdadispatch/dispatcher/store"
)

// DeadLetters returns the inspector of the dead letters kept in the
// queue's file.
func (d *Dispatcher) DeadLetters() *DeadLetters { return &DeadLetters{d: d, b: d.letters} }

// DeadLetters reads and acts on the dead letters kept in the queue's file:
// the default sink's. It is what someone on call uses to see what failed
// and why, and to send it again once the cause is fixed. After the
// Dispatcher's Close, every method returns ErrClosed without touching the
// file.
type DeadLetters struct {
	d *Dispatcher
	b *deadletter.Bolt
}

// LetterFilter selects dead letters. Zero fields match everything.
type LetterFilter struct {
	Function string            // exactly as the event named it
	Reason   deadletter.Reason // RetriesExhausted, EventAgeExceeded or Rejected
	Since    time.Time         // dead-lettered at or after
	Until    time.Time         // dead-lettered before
}

func (f LetterFilter) match(l deadletter.Letter) bool {
	return (f.Function == "" || l.Function == f.Function) &&
		(f.Reason == "" || l.Reason == f.Reason) &&
		(f.Since.IsZero() || !l.DeadLettered.Before(f.Since)) &&
		(f.Until.IsZero() || l.DeadLettered.Before(f.Until))
}

// Count returns the number of dead letters.
func (l *DeadLetters) Count() (int, error) {
	if l.d.closed.Load() {
		return 0, ErrClosed
	}
	return l.b.Count()
}

// Get returns the letter of the event with the given id. An id that
// names no letter returns an error matching ErrNotFound (and
// deadletter.ErrNotFound).
func (l *DeadLetters) Get(id string) (deadletter.Letter, error) {
	if l.d.closed.Load() {
		return deadletter.Letter{}, ErrClosed
	}
	letter, err := l.b.Get(id)
	return letter, notFound(err)
}

// List returns up to limit letters in id order, starting after the cursor
// after ("" for the first page), and the cursor of the next page, "" at the
// end.
func (l *DeadLetters) List(ctx context.Context, after string, limit int) ([]deadletter.Letter, string, error) {
	if l.d.closed.Load() {
		return nil, "", ErrClosed
	}
	return l.b.List(ctx, after, limit)
}

// Find is List with a filter: up to limit matching letters after the
// cursor after, and the cursor to go on from ("" at the end).
func (l *DeadLetters) Find(ctx context.Context, f LetterFilter, after string, limit int) ([]deadletter.Letter, string, error) {
	if l.d.closed.Load() {
		return nil, "", ErrClosed
	}
	if limit < 1 {
		return nil, "", fmt.Errorf("dispatcher: find: limit %d, want at least 1", limit)
	}
	var out []deadletter.Letter
	for {
		page, next, err := l.b.List(ctx, after, deadletter.MaxListLimit)
		if err != nil {
			return nil, "", err
		}
		for _, letter := range page {
			if !f.match(letter) {
				continue
			}
			if len(out) == limit {
				// A match past the page: there is a next page. The
				// last page's cursor is "", even when it is full.
				return out, out[limit-1].ID, nil
			}
			out = append(out, letter)
		}
		if next == "" {
			return out, "", nil
		}
		after = next
	}
}

// All returns an iterator over every letter f selects, in id order. It
// reads a page at a time, each in a short read transaction, none held
// while the loop's body runs. Breaking out of the loop stops the reading.
// An error (ctx ending, Close, a letter that cannot be read) is yielded
// once, with a zero Letter, and ends the iteration.
func (l *DeadLetters) All(ctx context.Context, f LetterFilter) iter.Seq2[deadletter.Letter, error] {
	return func(yield func(deadletter.Letter, error) bool) {
		after := ""
		for {
			if l.d.closed.Load() {
				yield(deadletter.Letter{}, ErrClosed)
				return
			}
			page, next, err := l.b.List(ctx, after, deadletter.MaxListLimit)
			if err != nil {
				yield(deadletter.Letter{}, err)
				return
			}
			for _, letter := range page {
				if f.match(letter) && !yield(letter, nil) {
					return
				}
			}
			if next == "" {
				return
			}
			after = next
		}
	}
}

// RedriveOptions change where redriven events go. Zero fields keep the
// letter's own. They are validated as Enqueue validates an event's, each
// field whether or not the other is set: a bad one fails the redrive with
// the *ValidationError Enqueue would return, and no letter moves.
type RedriveOptions struct {
	Function  string // send to this function instead
	Qualifier string // with this qualifier instead
}

// validate checks o before any letter moves. A Qualifier alone is checked
// against each letter's Function too, as its events are built.
func (o RedriveOptions) validate(lim limits) error {
	if o.Function != "" {
		return validateEvent(0, &Event{Function: o.Function, Qualifier: o.Qualifier}, lim)
	}
	if reason := lambdaname.Qualifier(o.Qualifier, ""); reason != "" {
		return &ValidationError{Field: "Qualifier", Reason: reason}
	}
	return nil
}

// redriveBatch bounds one redrive or purge transaction, so that acting on
// thousands of letters never holds one huge write transaction.
const redriveBatch = 500

// Redrive queues the events of the given letters again, as new events with
// their attempts reset and their key kept, and removes the letters, in one
// transaction per batch: each letter is either back in the queue or still
// a letter, never both, never neither. Ids that name no letter are
// skipped. It returns how many were redriven.
func (l *DeadLetters) Redrive(ctx context.Context, ids []string, o RedriveOptions) (int, error) {
	if l.d.closed.Load() {
		return 0, ErrClosed
	}
	if l.d.opts.readOnly {
		return 0, ErrReadOnly
	}
	if err := o.validate(l.d.lim); err != nil {
		return 0, err
	}
	n := 0
	for len(ids) > 0 {
		batch := ids[:min(len(ids), redriveBatch)]
		ids = ids[len(batch):]
		var window store.KeyWindow = l.d.keys
		var sh *sharedkeys.Redrive
		if l.d.shared != nil {
			keyOf, err := l.letterKeys(batch)
			if err != nil {
				return n, err
			}
			if sh, err = l.d.shared.Redrive(ctx, batch, keyOf, l.d.opts.keyWindow); err != nil {
				return n, err
			}
			batch, window = sh.IDs, sh.Window()
		}
		var keys []string
		seqs, err := l.d.st.Insert(ctx, func(tx *store.Tx) ([]store.NewEvent, error) {
			var evs []store.NewEvent
			var err error
			evs, keys, err = l.requeue(tx, batch, o)
			return evs, err
		}, window)
		if sh != nil {
			if err != nil {
				// The writer may still be running fn (see store.Update):
				// keys is not ours to read.
				sh.Finish(ctx, err, nil, nil)
			} else {
				sh.Finish(ctx, nil, seqs, keys)
			}
		}
		if err != nil {
			return n, translate(err)
		}
		n += len(seqs)
	}
	return n, nil
}

// requeue, inside the redrive's transaction, reads the letters ids (those
// still there), removes them, and returns their events to queue and their
// keys, "" for none, in the same order.
func (l *DeadLetters) requeue(tx *store.Tx, ids []string, o RedriveOptions) ([]store.NewEvent, []string, error) {
	var evs []store.NewEvent
	var found, keys []string
	for _, id := range ids {
		letter, err := l.b.GetTx(tx, id)
		if errors.Is(err, deadletter.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		// The letter's mark on its key goes; the redriven event claims the
		// key afresh as it is written.
		if letter.Key != "" {
			if err := l.d.keys.Forget(tx, letter.Key); err != nil {
				return nil, nil, err
			}
		}
		ev := store.NewEvent{Function: letter.Function, Qualifier: letter.Qualifier, Key: letter.Key, Payload: letter.Payload, Window: l.d.opts.keyWindow}
		if o.Function != "" {
			ev.Function, ev.Qualifier = o.Function, o.Qualifier
		} else if o.Qualifier != "" {
			// The letter's Function may carry a qualifier of its own that
			// this one contradicts.
			if err := validateEvent(0, &Event{Function: letter.Function, Qualifier: o.Qualifier}, l.d.lim); err != nil {
				return nil, nil, fmt.Errorf("dispatcher: redrive of letter %s: %w", id, err)
			}
			ev.Qualifier = o.Qualifier
		}
		evs = append(evs, ev)
		found = append(found, id)
		keys = append(keys, ev.Key)
	}
	if _, err := l.b.DeleteTx(tx, found...); err != nil {
		return nil, nil, err
	}
	return evs, keys, nil
}

// letterKeys maps the id of each keyed letter among ids to its key, for
// the shared key window to release and claim afresh.
func (l *DeadLetters) letterKeys(ids []string) (map[string]string, error) {
	keyOf := map[string]string{}
	err := l.d.st.View(func(tx *store.Tx) error {
		for _, id := range ids {
			letter, err := l.b.GetTx(tx, id)
			if err == nil && letter.Key != "" {
				keyOf[id] = letter.Key
			}
		}
		return nil
	})
	return keyOf, err
}

// RedriveMatching redrives every letter that f selects, a bounded batch
// per transaction, and returns how many.
func (l *DeadLetters) RedriveMatching(ctx context.Context, f LetterFilter, o RedriveOptions) (int, error) {
	if l.d.closed.Load() {
		return 0, ErrClosed
	}
	// Checked before the search, so that a bad option fails even when no
	// letter matches.
	if err := o.validate(l.d.lim); err != nil {
		return 0, err
	}
	return l.eachBatch(ctx, f, func(ids []string) (int, error) { return l.Redrive(ctx, ids, o) })
}

// Delete deletes the letters of the given ids, a bounded batch per
// transaction, and returns how many it deleted; ids that name no letter
// are skipped.
func (l *DeadLetters) Delete(ctx context.Context, ids []string) (int, error) {
	if l.d.closed.Load() {
		return 0, ErrClosed
	}
	if l.d.opts.readOnly {
		return 0, ErrReadOnly
	}
	n := 0
	for len(ids) > 0 {
		batch := ids[:min(len(ids), redriveBatch)]
		ids = ids[len(batch):]
		m, err := l.deleteBatch(ctx, batch)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (l *DeadLetters) deleteBatch(ctx context.Context, ids []string) (int, error) {
	var n int
	err := l.d.st.Update(ctx, func(tx *store.Tx) error {
		var err error
		n, err = l.b.DeleteTx(tx, ids...)
		return err
	})
	if err != nil {
		return 0, translate(err) // n may still be written by the writer
	}
	return n, nil
}

// Purge deletes every letter that f selects, a bounded batch per
// transaction, and returns how many.
func (l *DeadLetters) Purge(ctx context.Context, f LetterFilter) (int, error) {
	if l.d.closed.Load() {
		return 0, ErrClosed
	}
	return l.eachBatch(ctx, f, func(ids []string) (int, error) { return l.deleteBatch(ctx, ids) })
}

// eachBatch finds the letters f selects, redriveBatch at a time, and hands
// their ids to act, which removes them: so each search starts again from
// the first letter after the ones it kept.
func (l *DeadLetters) eachBatch(ctx context.Context, f LetterFilter, act func(ids []string) (int, error)) (int, error) {
	if l.d.opts.readOnly {
		return 0, ErrReadOnly
	}
	total := 0
	after := ""
	for {
		page, next, err := l.Find(ctx, f, after, redriveBatch)
		if err != nil {
			return total, err
		}
		if len(page) == 0 {
			return total, nil
		}
		ids := make([]string, len(page))
		for i, letter := range page {
			ids[i] = letter.ID
		}
		n, err := act(ids)
		total += n
		if err != nil {
			return total, err
		}
		if next == "" {
			return total, nil
		}
		after = next
	}
}
