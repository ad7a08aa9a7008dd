package store

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestChanged: the channel closes at the next commit of any write, once;
// a caller re-arms by asking again.
func TestChanged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, Options{})

	// Nobody asked: commits make no channel.
	enqueue(t, b.st, newEvents(3, "A")...)
	b.st.statMu.Lock()
	require.Nil(t, b.st.changed)
	b.st.statMu.Unlock()

	ch := b.st.Changed()
	require.Equal(t, ch, b.st.Changed(), "the same until a commit")
	require.False(t, closed(ch))
	got := lease(t, b.st, 1)
	require.True(t, closed(ch), "a lease commits")

	next := b.st.Changed()
	require.NotEqual(t, ch, next, "re-armed")
	require.False(t, closed(next))
	_, err := b.st.Get(got[0].Seq)
	require.NoError(t, err)
	_, err = b.st.Stats()
	require.NoError(t, err)
	require.False(t, closed(next), "reads are not changes")

	// A waiter wakes on the commit of another goroutine's write.
	woke := make(chan struct{})
	go func() {
		<-next
		close(woke)
	}()
	require.NoError(t, b.st.Ack(ctx, got[0].Seq))
	<-woke

	for _, write := range []func(){
		func() { _, err := b.st.Cancel(ctx, []uint64{2}, nil); require.NoError(t, err) },
		func() { require.NoError(t, b.st.SetPaused(ctx, "A", true)) },
		func() { require.NoError(t, b.st.Update(ctx, func(*Tx) error { return nil })) },
	} {
		ch := b.st.Changed()
		write()
		require.True(t, closed(ch))
	}

	// A drain: wait until the store holds nothing, re-arming before each
	// look.
	require.NoError(t, b.st.SetPaused(ctx, "A", false))
	go func() {
		for {
			evs, err := b.st.Lease(ctx, 1, time.Minute)
			if err != nil || len(evs) == 0 {
				return
			}
			if b.st.Ack(ctx, evs[0].Seq) != nil {
				return
			}
		}
	}()
	for {
		ch := b.st.Changed()
		if stats(t, b.st).Events == 0 {
			break
		}
		<-ch
	}

	last := b.st.Changed()
	require.NoError(t, b.st.Close())
	require.True(t, closed(last), "Close wakes whoever waits")
	require.True(t, closed(b.st.Changed()), "and no commit is to come")
}
