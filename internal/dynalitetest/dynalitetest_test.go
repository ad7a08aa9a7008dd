package dynalitetest_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/lambdadispatch/dispatcher/idempotency/dynamo"
	"github.com/lambdadispatch/dispatcher/internal/dynalitetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestDynalite starts one dynalite for its subtests, each with its own
// table.
func TestDynalite(t *testing.T) {
	endpoint := dynalitetest.Start(t)

	t.Run("PutAndGet", func(t *testing.T) {
		t.Parallel()
		client := dynalitetest.Client(t, endpoint)
		table := dynalitetest.Table(t, client)
		ctx := testContext(t)
		_, err := client.PutItem(ctx, &dynamodb.PutItemInput{
			TableName: aws.String(table),
			Item:      map[string]types.AttributeValue{"key": &types.AttributeValueMemberS{Value: "a"}},
		})
		require.NoError(t, err)
		out, err := client.GetItem(ctx, &dynamodb.GetItemInput{
			TableName:      aws.String(table),
			Key:            map[string]types.AttributeValue{"key": &types.AttributeValueMemberS{Value: "a"}},
			ConsistentRead: aws.Bool(true),
		})
		require.NoError(t, err)
		require.Equal(t, &types.AttributeValueMemberS{Value: "a"}, out.Item["key"])
	})

	t.Run("ThrottleDecodesAsTypedError", func(t *testing.T) {
		t.Parallel()
		proxy := dynalitetest.NewFaultProxy(t, endpoint)
		client := dynalitetest.Client(t, proxy.URL())
		table := dynalitetest.Table(t, client)
		ctx := testContext(t)
		key := map[string]types.AttributeValue{"key": &types.AttributeValueMemberS{Value: "a"}}

		proxy.Throttle(2)
		for range 2 {
			_, err := client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), Key: key})
			var pte *types.ProvisionedThroughputExceededException
			require.ErrorAs(t, err, &pte)
			require.Equal(t, dynalitetest.ThrottleMessage, pte.ErrorMessage())
		}
		_, err := client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), Key: key})
		require.NoError(t, err, "only the first two requests are throttled")
		require.Equal(t, 3, proxy.Count("GetItem"))
		require.Equal(t, 1, proxy.Count("CreateTable"))
	})

	t.Run("OfflineIsATransportError", func(t *testing.T) {
		t.Parallel()
		proxy := dynalitetest.NewFaultProxy(t, endpoint)
		client := dynalitetest.Client(t, proxy.URL())
		ctx := testContext(t)

		proxy.Offline(true)
		_, err := client.ListTables(ctx, &dynamodb.ListTablesInput{})
		require.Error(t, err)
		var api smithy.APIError
		require.False(t, errors.As(err, &api), "an offline proxy answers nothing: %v", err)
		var conn interface{ ConnectionError() bool }
		require.ErrorAs(t, err, &conn)

		proxy.Offline(false)
		_, err = client.ListTables(ctx, &dynamodb.ListTablesInput{})
		require.NoError(t, err)
		require.Equal(t, 2, proxy.Count("ListTables"))
	})

	// The quirks of dynalite that idempotency/dynamo's tests rely on: if
	// one of these fails, dynalite changed, and those tests may no longer
	// cover what they say.
	t.Run("QuirkNoUpdateTimeToLive", func(t *testing.T) {
		t.Parallel()
		client := dynalitetest.Client(t, endpoint)
		table := dynalitetest.Table(t, client)
		_, err := client.UpdateTimeToLive(testContext(t), &dynamodb.UpdateTimeToLiveInput{
			TableName: aws.String(table),
			TimeToLiveSpecification: &types.TimeToLiveSpecification{
				AttributeName: aws.String("ttl"), Enabled: aws.Bool(true),
			},
		})
		var api smithy.APIError
		require.ErrorAs(t, err, &api)
		require.Equal(t, "UnknownOperationException", api.ErrorCode())
	})

	t.Run("QuirkNoOldItemOnConditionFailure", func(t *testing.T) {
		t.Parallel()
		client := dynalitetest.Client(t, endpoint)
		table := dynalitetest.Table(t, client)
		ctx := testContext(t)
		item := map[string]types.AttributeValue{"key": &types.AttributeValueMemberS{Value: "a"}}
		put := &dynamodb.PutItemInput{
			TableName:                           aws.String(table),
			Item:                                item,
			ConditionExpression:                 aws.String("attribute_not_exists(#k)"),
			ExpressionAttributeNames:            map[string]string{"#k": "key"},
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		}
		_, err := client.PutItem(ctx, put)
		require.NoError(t, err)
		_, err = client.PutItem(ctx, put)
		var failed *types.ConditionalCheckFailedException
		require.ErrorAs(t, err, &failed)
		require.Empty(t, failed.Item, "dynalite ignores ReturnValuesOnConditionCheckFailure")
	})

	t.Run("TableNamesAreUnique", func(t *testing.T) {
		t.Parallel()
		a, b := dynalitetest.TableName(t), dynalitetest.TableName(t)
		require.NotEqual(t, a, b)
		require.Regexp(t, `^[a-zA-Z0-9_.-]{3,255}$`, a)
	})

	t.Run("TableToleratesTTL", func(t *testing.T) {
		t.Parallel()
		client := dynalitetest.Client(t, endpoint)
		table := dynalitetest.Table(t, client)
		err := dynamo.CreateTable(testContext(t), client, table)
		require.ErrorIs(t, err, dynamo.ErrTTLNotEnabled)
	})
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestServer: a Server starts once for all who ask, and again after Stop.
func TestServer(t *testing.T) {
	var s dynalitetest.Server
	defer s.Stop(io.Discard, false)
	a := s.Endpoint(t)
	require.Equal(t, a, s.Endpoint(t), "started once")
	client := dynalitetest.Client(t, a)
	_ = dynalitetest.Table(t, client)

	var out strings.Builder
	s.Stop(&out, true)
	require.Contains(t, out.String(), "dynalite on "+a+" exited")
	_, err := client.ListTables(testContext(t), &dynamodb.ListTablesInput{})
	require.Error(t, err, "stopped")

	b := s.Endpoint(t)
	_, err = dynalitetest.Client(t, b).ListTables(testContext(t), &dynamodb.ListTablesInput{})
	require.NoError(t, err, "started again")
}
