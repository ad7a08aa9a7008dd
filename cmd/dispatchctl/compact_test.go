package main_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/store"
)

func TestCompact(t *testing.T) {
	t.Parallel()
	path := seed(t)
	// Churn leaves free pages behind: enqueue and dead-letter-purge a lot.
	d, err := dispatcher.Open(path)
	require.NoError(t, err)
	big := []byte(`{"pad":"` + strings.Repeat("x", 4000) + `"}`)
	var evs []dispatcher.Event
	for range 200 {
		evs = append(evs, dispatcher.Event{Function: "churn", Payload: big})
	}
	_, err = d.EnqueueBatch(context.Background(), evs)
	require.NoError(t, err)
	require.NoError(t, d.Close())
	st, err := store.Open(path, store.Options{})
	require.NoError(t, err)
	var seqs []uint64
	require.NoError(t, st.Scan(func(e store.Event) error {
		if e.Function == "churn" {
			seqs = append(seqs, e.Seq)
		}
		return nil
	}))
	leased, err := st.Lease(context.Background(), len(seqs)+3, time.Minute)
	require.NoError(t, err)
	var back []uint64
	for _, e := range leased {
		if e.Function != "churn" {
			back = append(back, e.Seq)
		}
	}
	require.NoError(t, st.Ack(context.Background(), seqs...))
	require.NoError(t, st.Release(context.Background(), true, back...))
	require.NoError(t, st.Close())

	before := stats(t, path)
	fiBefore, err := os.Stat(path)
	require.NoError(t, err)

	r := ctl(t, "", "compact", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, fmt.Sprintf("%d bytes before", fiBefore.Size()))
	fiAfter, err := os.Stat(path)
	require.NoError(t, err)
	require.LessOrEqual(t, fiAfter.Size(), fiBefore.Size())
	require.Less(t, fiAfter.Size(), fiBefore.Size(), "churned file shrinks")
	_, err = os.Stat(path + ".compact")
	require.ErrorIs(t, err, os.ErrNotExist)

	require.Equal(t, before, stats(t, path))
	rows := jsonLines(t, ctl(t, "", "export", path).stdout)
	require.Equal(t, []string{"1", "2", "3"}, ids(rows))

	r = ctl(t, "", "--json", "compact", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, fmt.Sprintf(`{"before":%d,"after":%d}`, fiAfter.Size(), fiAfter.Size()), r.stdout)
}
