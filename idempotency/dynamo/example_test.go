package dynamo_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/idempotency/dynamo"
)

// Example creates the table once, then claims a key in it. It needs AWS
// credentials and a region, so it is compiled but not run; the package's
// tests run the same calls against dynalite.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		log.Fatal(err)
	}
	client := dynamodb.NewFromConfig(cfg)

	// At setup, with the SetupActions: create the table and enable TTL.
	err = dynamo.CreateTable(ctx, client, "dispatcher-keys")
	if errors.Is(err, dynamo.ErrTTLNotEnabled) {
		log.Printf("expired keys will not be deleted: %v", err)
	} else if err != nil {
		log.Fatal(err)
	}

	// At run time, with the RuntimeActions.
	w, err := dynamo.New(client, "dispatcher-keys")
	if err != nil {
		log.Fatal(err)
	}
	holder, claimed, err := w.Claim(ctx, idempotency.Claim{
		Key:    "order-42",
		Owner:  "host-a",
		Token:  "claim-7f3a",
		Window: 24 * time.Hour,
		Lease:  30 * time.Second,
	}, time.Now())
	switch {
	case errors.Is(err, idempotency.ErrUnavailable):
		log.Fatalf("DynamoDB unavailable, try again later: %v", err)
	case err != nil:
		log.Fatal(err)
	case !claimed:
		fmt.Printf("order-42 is held by %s (%v)\n", holder.Owner, holder.State)
	default:
		fmt.Println("order-42 is ours")
	}
}
