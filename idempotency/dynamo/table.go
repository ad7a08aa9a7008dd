package dynamo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// TableAPI is the part of the DynamoDB client [CreateTable] calls. A
// *dynamodb.Client implements it.
type TableAPI interface {
	CreateTable(ctx context.Context, params *dynamodb.CreateTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DescribeTable(ctx context.Context, params *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	DescribeTimeToLive(ctx context.Context, params *dynamodb.DescribeTimeToLiveInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTimeToLiveOutput, error)
	UpdateTimeToLive(ctx context.Context, params *dynamodb.UpdateTimeToLiveInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateTimeToLiveOutput, error)
}

// ErrTTLNotEnabled is wrapped by the error [CreateTable] returns when the
// table is ready for a [Window] but DynamoDB's time to live could not be
// enabled on the TTL attribute: the server does not implement
// UpdateTimeToLive (dynalite, for one), TTL is already enabled on another
// attribute, or UpdateTimeToLive failed, in which case the error wraps
// its cause too. The window works without TTL, but expired items stay in
// the table until something deletes them.
var ErrTTLNotEnabled = errors.New("dynamo: time to live not enabled")

// ErrKeySchema is wrapped by the error [CreateTable] returns when the table
// exists with a key schema other than a Window's: a partition key "key" of
// type string, and no sort key.
var ErrKeySchema = errors.New("dynamo: the table's key schema is not a window's")

// RuntimeActions returns the IAM actions a [Window] calls on its table.
func RuntimeActions() []string {
	return []string{
		"dynamodb:PutItem",
		"dynamodb:UpdateItem",
		"dynamodb:DeleteItem",
		"dynamodb:GetItem",
		"dynamodb:BatchGetItem",
	}
}

// SetupActions returns the IAM actions [CreateTable] calls.
func SetupActions() []string {
	return []string{
		"dynamodb:CreateTable",
		"dynamodb:DescribeTable",
		"dynamodb:DescribeTimeToLive",
		"dynamodb:UpdateTimeToLive",
	}
}

// Polling of DescribeTable while a table is being created: the first poll
// after tablePoll, each next one twice as late, up to tableMaxPoll.
const (
	tablePoll    = 50 * time.Millisecond
	tableMaxPoll = 2 * time.Second
)

// CreateTable creates table for a [Window], on-demand (PAY_PER_REQUEST)
// with the partition key "key" of type string, waits until it is ACTIVE,
// then enables time to live on the TTL attribute ([WithTTLAttribute]). It
// waits as long as ctx allows: give ctx a deadline.
//
// If the table exists, CreateTable checks its key schema, returning an
// error wrapping [ErrKeySchema] if it is not a window's, and waits for it
// to be ACTIVE and for TTL as for a new table; calling it again is
// harmless. If TTL cannot be enabled the table is still ready and the
// error wraps [ErrTTLNotEnabled].
func CreateTable(ctx context.Context, client TableAPI, table string, opts ...Option) error {
	if client == nil {
		return errors.New("dynamo: CreateTable: nil client")
	}
	if table == "" {
		return errors.New("dynamo: CreateTable: empty table name")
	}
	c, err := newConfig(opts)
	if err != nil {
		return err
	}
	_, err = client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(attrKey), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(attrKey), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("dynamo: CreateTable %q: %w", table, err)
	}
	if err := waitActive(ctx, client, table); err != nil {
		return err
	}
	return enableTTL(ctx, client, table, c.ttlAttr)
}

// waitActive polls DescribeTable until table is ACTIVE, checking its key
// schema on the way.
func waitActive(ctx context.Context, client TableAPI, table string) error {
	poll := tablePoll
	for {
		out, err := client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
		if err != nil {
			return fmt.Errorf("dynamo: CreateTable %q: DescribeTable: %w", table, err)
		}
		if out.Table == nil {
			return fmt.Errorf("dynamo: CreateTable %q: DescribeTable returned no table", table)
		}
		if err := checkKeySchema(out.Table); err != nil {
			return fmt.Errorf("dynamo: CreateTable %q: %w", table, err)
		}
		switch out.Table.TableStatus {
		case types.TableStatusActive:
			return nil
		case types.TableStatusCreating, types.TableStatusUpdating:
		default:
			return fmt.Errorf("dynamo: CreateTable %q: table is %s", table, out.Table.TableStatus)
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("dynamo: CreateTable %q: waiting for the table to be ACTIVE (it is %s): %w",
				table, out.Table.TableStatus, ctx.Err())
		case <-t.C:
		}
		poll = min(2*poll, tableMaxPoll)
	}
}

// checkKeySchema returns an error wrapping ErrKeySchema unless the table's
// only key is the partition key "key" of type string.
func checkKeySchema(d *types.TableDescription) error {
	hashOK := len(d.KeySchema) == 1 && aws.ToString(d.KeySchema[0].AttributeName) == attrKey &&
		d.KeySchema[0].KeyType == types.KeyTypeHash
	typeOK := false
	for _, a := range d.AttributeDefinitions {
		if aws.ToString(a.AttributeName) == attrKey {
			typeOK = a.AttributeType == types.ScalarAttributeTypeS
		}
	}
	if hashOK && typeOK {
		return nil
	}
	schema := ""
	for i, k := range d.KeySchema {
		if i > 0 {
			schema += ", "
		}
		typ := types.ScalarAttributeType("?")
		for _, a := range d.AttributeDefinitions {
			if aws.ToString(a.AttributeName) == aws.ToString(k.AttributeName) {
				typ = a.AttributeType
			}
		}
		schema += fmt.Sprintf("%s %s (%s)", aws.ToString(k.AttributeName), k.KeyType, typ)
	}
	return fmt.Errorf("%w: it has [%s]; want only a partition key %q of type S", ErrKeySchema, schema, attrKey)
}

// enableTTL enables time to live on attr, unless it is enabled already.
func enableTTL(ctx context.Context, client TableAPI, table, attr string) error {
	d, err := client.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(table)})
	if err != nil {
		return fmt.Errorf("dynamo: CreateTable %q: %w on %q: DescribeTimeToLive: %w", table, ErrTTLNotEnabled, attr, err)
	}
	if ttl := d.TimeToLiveDescription; ttl != nil &&
		(ttl.TimeToLiveStatus == types.TimeToLiveStatusEnabled || ttl.TimeToLiveStatus == types.TimeToLiveStatusEnabling) {
		if on := aws.ToString(ttl.AttributeName); on != attr {
			return fmt.Errorf("dynamo: CreateTable %q: %w on %q: it is %s on attribute %q, and a table has only one",
				table, ErrTTLNotEnabled, attr, ttl.TimeToLiveStatus, on)
		}
		return nil
	}
	_, err = client.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName: aws.String(table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{
			AttributeName: aws.String(attr),
			Enabled:       aws.Bool(true),
		},
	})
	if err != nil {
		return fmt.Errorf("dynamo: CreateTable %q: %w on %q: UpdateTimeToLive: %w", table, ErrTTLNotEnabled, attr, err)
	}
	return nil
}
