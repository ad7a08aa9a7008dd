package dynamo_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/idempotency/dynamo"
	"github.com/lambdadispatch/dispatcher/internal/dynalitetest"
)

// BenchmarkClaim claims keys on dynalite, through the fault proxy, and
// reports the requests each claim made: one for a new key; two for a held
// one, since dynalite does not return the old item with a failed
// condition (DynamoDB does, so one there). Its times are dynalite's, not
// DynamoDB's.
func BenchmarkClaim(b *testing.B) {
	endpoint := dynalitetest.Start(b)
	direct := dynalitetest.Client(b, endpoint)
	table := dynalitetest.Table(b, direct)
	proxy := dynalitetest.NewFaultProxy(b, endpoint)
	w, err := dynamo.New(dynalitetest.Client(b, proxy.URL()), table)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	claim := func(b *testing.B, key, owner string) bool {
		_, ok, err := w.Claim(ctx, idempotency.Claim{Key: key, Owner: owner, Token: owner, Window: window, Lease: lease}, t0)
		if err != nil {
			b.Fatal(err)
		}
		return ok
	}
	requests := func() int { return proxy.Count("PutItem") + proxy.Count("GetItem") }

	next := 0 // keys stay new across the runs of b.N
	b.Run("New", func(b *testing.B) {
		before := requests()
		for range b.N {
			next++
			if !claim(b, fmt.Sprintf("new-%d", next), "A") {
				b.Fatal("held")
			}
		}
		b.ReportMetric(float64(requests()-before)/float64(b.N), "requests/op")
	})
	b.Run("Held", func(b *testing.B) {
		if !claim(b, "held", "A") {
			b.Fatal("held")
		}
		b.ResetTimer()
		before := requests()
		for range b.N {
			if claim(b, "held", "B") {
				b.Fatal("claimed")
			}
		}
		b.ReportMetric(float64(requests()-before)/float64(b.N), "requests/op")
	})
}
