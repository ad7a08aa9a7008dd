package dispatcher_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/lambdadispatch/dispatcher"
	"github.com/lambdadispatch/dispatcher/idempotency/dynamo"
)

// Every machine of a service opens its own file with the same table: a key
// enqueued on any of them is a duplicate on all. (Compiled, not run: it
// needs AWS credentials and a region.)
func ExampleWithSharedKeys() {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		log.Fatal(err)
	}
	db := dynamodb.NewFromConfig(cfg)
	// Once, at deploy time; on a table that exists it only checks it.
	if err := dynamo.CreateTable(ctx, db, "dispatch-keys"); err != nil && !errors.Is(err, dynamo.ErrTTLNotEnabled) {
		log.Fatal(err)
	}
	keys, err := dynamo.New(db, "dispatch-keys")
	if err != nil {
		log.Fatal(err)
	}
	d, err := dispatcher.Open("events.db", dispatcher.WithLambda(lambda.NewFromConfig(cfg)), dispatcher.WithSharedKeys(keys))
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()

	r, err := d.Enqueue(ctx, dispatcher.Event{Function: "orders", Key: "order-42", Payload: []byte(`{"order":42}`)})
	switch {
	case errors.Is(err, dispatcher.ErrKeysUnavailable):
		// DynamoDB throttled or unreachable: nothing was queued; retry later.
	case err != nil:
		log.Fatal(err)
	case r.Duplicate:
		fmt.Println("order-42 is already queued, here or on another machine, as", r.ID)
	}
}
