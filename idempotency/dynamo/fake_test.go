package dynamo_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher/idempotency"
	"github.com/lambdadispatch/dispatcher/idempotency/dynamo"
)

// fakeAPI is an API whose methods are funcs; a nil one answers with an
// error naming the unexpected call.
type fakeAPI struct {
	put    func(*dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error)
	update func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error)
	del    func(*dynamodb.DeleteItemInput) (*dynamodb.DeleteItemOutput, error)
	get    func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error)
	batch  func(*dynamodb.BatchGetItemInput) (*dynamodb.BatchGetItemOutput, error)

	calls atomic.Int64
}

var errUnexpected = errors.New("fakeAPI: unexpected call")

func (f *fakeAPI) PutItem(_ context.Context, in *dynamodb.PutItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	f.calls.Add(1)
	if f.put == nil {
		return nil, fmt.Errorf("%w: PutItem", errUnexpected)
	}
	return f.put(in)
}

func (f *fakeAPI) UpdateItem(_ context.Context, in *dynamodb.UpdateItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	f.calls.Add(1)
	if f.update == nil {
		return nil, fmt.Errorf("%w: UpdateItem", errUnexpected)
	}
	return f.update(in)
}

func (f *fakeAPI) DeleteItem(_ context.Context, in *dynamodb.DeleteItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	f.calls.Add(1)
	if f.del == nil {
		return nil, fmt.Errorf("%w: DeleteItem", errUnexpected)
	}
	return f.del(in)
}

func (f *fakeAPI) GetItem(_ context.Context, in *dynamodb.GetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	f.calls.Add(1)
	if f.get == nil {
		return nil, fmt.Errorf("%w: GetItem", errUnexpected)
	}
	return f.get(in)
}

func (f *fakeAPI) BatchGetItem(_ context.Context, in *dynamodb.BatchGetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	f.calls.Add(1)
	if f.batch == nil {
		return nil, fmt.Errorf("%w: BatchGetItem", errUnexpected)
	}
	return f.batch(in)
}

// heldItem is an item Claimed by B at t0.
func heldItem(key string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		"key": s(key), "owner": s("B"), "token": s("tB"), "state": n(int64(idempotency.Claimed)),
		"lease": n(t0.Add(lease).UnixMilli()), "expires": n(t0.Add(window).UnixMilli()), "ttl": n(t0.Add(window).Unix()),
	}
}

var claimA = idempotency.Claim{Key: "k", Owner: "A", Token: "tA", Window: window, Lease: lease}

func newWindow(t *testing.T, f *fakeAPI) *dynamo.Window {
	t.Helper()
	w, err := dynamo.New(f, "tbl")
	require.NoError(t, err)
	return w
}

// TestClaimUsesOldItem checks that a held Claim reads the holder from the
// failed write when DynamoDB returns it, without a GetItem.
func TestClaimUsesOldItem(t *testing.T) {
	t.Parallel()
	f := &fakeAPI{put: func(in *dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
		require.Equal(t, types.ReturnValuesOnConditionCheckFailureAllOld, in.ReturnValuesOnConditionCheckFailure)
		return nil, &types.ConditionalCheckFailedException{Message: aws.String("no"), Item: heldItem("k")}
	}}
	h, ok, err := newWindow(t, f).Claim(context.Background(), claimA, t0)
	require.NoError(t, err)
	require.False(t, ok)
	require.Equal(t, idempotency.Holder{
		Owner: "B", Token: "tB", State: idempotency.Claimed, Lease: t0.Add(lease), Expires: t0.Add(window),
	}, h)
	require.EqualValues(t, 1, f.calls.Load(), "one round trip")
}

// TestClaimRetriesRaces checks the bounded retry when the item changes
// between the failed write and the read of the holder.
func TestClaimRetriesRaces(t *testing.T) {
	t.Parallel()
	failed := &types.ConditionalCheckFailedException{Message: aws.String("no")}
	expired := heldItem("k")
	expired["expires"] = n(t0.UnixMilli())
	leasePassed := heldItem("k")
	leasePassed["lease"] = n(t0.UnixMilli())

	for _, tc := range []struct {
		name  string
		reads []map[string]types.AttributeValue // what each GetItem finds
		puts  int                               // PutItems that fail before one succeeds; -1: all fail
		want  error
	}{
		{"DeletedThenClaimed", []map[string]types.AttributeValue{nil}, 1, nil},
		{"ExpiredThenClaimed", []map[string]types.AttributeValue{expired}, 1, nil},
		{"LeasePassedThenClaimed", []map[string]types.AttributeValue{leasePassed}, 1, nil},
		{"AlwaysRacing", []map[string]types.AttributeValue{nil, expired, nil}, -1, idempotency.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			puts, gets := 0, 0
			f := &fakeAPI{
				put: func(*dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
					puts++
					if tc.puts >= 0 && puts > tc.puts {
						return &dynamodb.PutItemOutput{}, nil
					}
					return nil, failed
				},
				get: func(in *dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
					require.True(t, aws.ToBool(in.ConsistentRead))
					gets++
					return &dynamodb.GetItemOutput{Item: tc.reads[gets-1]}, nil
				},
			}
			_, ok, err := newWindow(t, f).Claim(context.Background(), claimA, t0)
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
				require.Equal(t, 3, puts, "bounded")
				return
			}
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, tc.puts+1, puts)
		})
	}
}

func TestClaimCorruptHolder(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		change func(map[string]types.AttributeValue)
		says   string
	}{
		{"NoOwner", func(m map[string]types.AttributeValue) { delete(m, "owner") }, `"owner" missing`},
		{"StateString", func(m map[string]types.AttributeValue) { m["state"] = s("4") }, `"state" is *types.AttributeValueMemberS`},
		{"BadState", func(m map[string]types.AttributeValue) { m["state"] = n(7) }, "unknown state 7"},
		{"FractionalExpiry", func(m map[string]types.AttributeValue) {
			m["expires"] = &types.AttributeValueMemberN{Value: "1.5"}
		}, `"1.5" is not an integer`},
		{"OtherKey", func(m map[string]types.AttributeValue) { m["key"] = s("other") }, `item of key "other"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			item := heldItem("k")
			tc.change(item)
			f := &fakeAPI{put: func(*dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
				return nil, &types.ConditionalCheckFailedException{Item: item}
			}}
			_, _, err := newWindow(t, f).Claim(context.Background(), claimA, t0)
			require.ErrorIs(t, err, idempotency.ErrCorrupt)
			require.ErrorContains(t, err, tc.says)
			require.ErrorContains(t, err, `"tbl"`)
		})
	}
}

// TestErrorClassification feeds each kind of client error to each
// operation.
func TestErrorClassification(t *testing.T) {
	t.Parallel()
	api := func(code string) error { return &smithy.GenericAPIError{Code: code, Message: "m"} }
	status := func(code int, err error) error {
		return &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: code}}, Err: err}
	}
	refused := &smithyhttp.RequestSendError{Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	const (
		throttled = iota
		unavailable
		plain
	)
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"ProvisionedThroughputExceeded", &types.ProvisionedThroughputExceededException{Message: aws.String("m")}, throttled},
		{"ThrottlingException", &types.ThrottlingException{Message: aws.String("m")}, throttled},
		{"RequestLimitExceeded", &types.RequestLimitExceeded{Message: aws.String("m")}, throttled},
		{"TransactionConflict", &types.TransactionConflictException{Message: aws.String("m")}, throttled},
		{"ThrottleAfterMaxAttempts", &retry.MaxAttemptsError{Attempt: 3, Err: api("ThrottlingException")}, throttled},
		{"ThrottleAndQuota", errors.Join(api("ProvisionedThroughputExceededException"), ratelimit.QuotaExceededError{Available: 0, Requested: 5}), throttled},
		{"InternalServerError", &types.InternalServerError{Message: aws.String("m")}, unavailable},
		{"ServiceUnavailable", api("ServiceUnavailable"), unavailable},
		{"HTTP503", status(503, api("UnknownError")), unavailable},
		{"ConnectionRefused", refused, unavailable},
		{"Timeout", &net.DNSError{Err: "timeout", IsTimeout: true}, unavailable},
		{"QuotaExceeded", ratelimit.QuotaExceededError{Available: 0, Requested: 5}, unavailable},
		{"MaxAttempts", &retry.MaxAttemptsError{Attempt: 3, Err: errors.New("io: read/write on closed pipe")}, unavailable},
		{"ResourceNotFound", &types.ResourceNotFoundException{Message: aws.String("m")}, plain},
		{"AccessDenied", status(400, api("AccessDeniedException")), plain},
		{"Validation", api("ValidationException"), plain},
		{"Unknown", errors.New("something else"), plain},
	} {
		for _, op := range ops {
			t.Run(tc.name+"/"+op.name, func(t *testing.T) {
				fail := func() error { return tc.err }
				f := &fakeAPI{
					put:    func(*dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) { return nil, fail() },
					update: func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) { return nil, fail() },
					del:    func(*dynamodb.DeleteItemInput) (*dynamodb.DeleteItemOutput, error) { return nil, fail() },
					batch:  func(*dynamodb.BatchGetItemInput) (*dynamodb.BatchGetItemOutput, error) { return nil, fail() },
				}
				err := op.run(context.Background(), newWindow(t, f), "k")
				require.ErrorIs(t, err, tc.err, "the cause is kept")
				var ue *idempotency.UnavailableError
				switch tc.want {
				case throttled, unavailable:
					require.ErrorAs(t, err, &ue)
					require.Equal(t, tc.want == throttled, ue.Throttled)
					require.Equal(t, op.name, ue.Op)
				case plain:
					require.False(t, errors.As(err, &ue), "%v", err)
					require.ErrorContains(t, err, op.name)
					require.ErrorContains(t, err, `"tbl"`)
				}
			})
		}
	}

	// When ctx has ended, its error wins over the client's.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f := &fakeAPI{put: func(*dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) { return nil, refused }}
	_, _, err := newWindow(t, f).Claim(ctx, claimA, t0)
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, idempotency.ErrUnavailable)
}

// keysOf returns the keys a BatchGetItem asks for, checking that it reads
// consistently and asks for no key twice.
func keysOf(t *testing.T, in *dynamodb.BatchGetItemInput) []string {
	ka, ok := in.RequestItems["tbl"]
	require.True(t, ok)
	require.Len(t, in.RequestItems, 1)
	require.True(t, aws.ToBool(ka.ConsistentRead))
	require.LessOrEqual(t, len(ka.Keys), 100)
	var keys []string
	seen := map[string]bool{}
	for _, k := range ka.Keys {
		key := k["key"].(*types.AttributeValueMemberS).Value
		require.False(t, seen[key], "duplicate key %q", key)
		seen[key] = true
		keys = append(keys, key)
	}
	return keys
}

func TestLookupUnprocessedKeys(t *testing.T) {
	t.Parallel()
	var keys []string
	for i := range 150 {
		keys = append(keys, "k"+strconv.Itoa(i))
	}
	t.Run("AskedAgain", func(t *testing.T) {
		t.Parallel()
		var requests [][]string
		f := &fakeAPI{batch: func(in *dynamodb.BatchGetItemInput) (*dynamodb.BatchGetItemOutput, error) {
			asked := keysOf(t, in)
			requests = append(requests, asked)
			// Answer the first key of each request, leave the rest once.
			out := &dynamodb.BatchGetItemOutput{Responses: map[string][]map[string]types.AttributeValue{
				"tbl": {heldItem(asked[0])},
			}}
			if len(requests)%2 == 1 && len(asked) > 1 {
				var left []map[string]types.AttributeValue
				for _, k := range asked[1:] {
					left = append(left, map[string]types.AttributeValue{"key": s(k)})
				}
				out.UnprocessedKeys = map[string]types.KeysAndAttributes{"tbl": {Keys: left, ConsistentRead: aws.Bool(true)}}
			} else {
				for _, k := range asked[1:] {
					out.Responses["tbl"] = append(out.Responses["tbl"], heldItem(k))
				}
			}
			return out, nil
		}}
		got, err := newWindow(t, f).Lookup(context.Background(), append(keys, keys...), t0)
		require.NoError(t, err)
		require.Len(t, got, 150)
		require.Len(t, requests, 4)
		require.Len(t, requests[0], 100)
		require.Equal(t, requests[0][1:], requests[1], "only the unprocessed keys are asked again")
		require.Len(t, requests[2], 50)
	})

	t.Run("GivesUp", func(t *testing.T) {
		t.Parallel()
		f := &fakeAPI{batch: func(in *dynamodb.BatchGetItemInput) (*dynamodb.BatchGetItemOutput, error) {
			ka := in.RequestItems["tbl"]
			return &dynamodb.BatchGetItemOutput{UnprocessedKeys: map[string]types.KeysAndAttributes{"tbl": ka}}, nil
		}}
		start := time.Now()
		_, err := newWindow(t, f).Lookup(context.Background(), keys[:1], t0)
		var ue *idempotency.UnavailableError
		require.ErrorAs(t, err, &ue)
		require.True(t, ue.Throttled)
		require.EqualValues(t, 8, f.calls.Load())
		t.Logf("gave up after %v", time.Since(start))
	})

	t.Run("ContextEnds", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		f := &fakeAPI{batch: func(in *dynamodb.BatchGetItemInput) (*dynamodb.BatchGetItemOutput, error) {
			cancel() // during the first pause
			ka := in.RequestItems["tbl"]
			return &dynamodb.BatchGetItemOutput{UnprocessedKeys: map[string]types.KeysAndAttributes{"tbl": ka}}, nil
		}}
		_, err := newWindow(t, f).Lookup(ctx, keys[:1], t0)
		require.ErrorIs(t, err, context.Canceled)
		require.EqualValues(t, 1, f.calls.Load())
	})
}

// fakeTables is a TableAPI whose methods are funcs; a nil one answers with
// an error naming the unexpected call.
type fakeTables struct {
	create      func(*dynamodb.CreateTableInput) (*dynamodb.CreateTableOutput, error)
	describe    func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error)
	describeTTL func(*dynamodb.DescribeTimeToLiveInput) (*dynamodb.DescribeTimeToLiveOutput, error)
	updateTTL   func(*dynamodb.UpdateTimeToLiveInput) (*dynamodb.UpdateTimeToLiveOutput, error)
}

func (f *fakeTables) CreateTable(_ context.Context, in *dynamodb.CreateTableInput, _ ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error) {
	if f.create == nil {
		return nil, fmt.Errorf("%w: CreateTable", errUnexpected)
	}
	return f.create(in)
}

func (f *fakeTables) DescribeTable(_ context.Context, in *dynamodb.DescribeTableInput, _ ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error) {
	if f.describe == nil {
		return nil, fmt.Errorf("%w: DescribeTable", errUnexpected)
	}
	return f.describe(in)
}

func (f *fakeTables) DescribeTimeToLive(_ context.Context, in *dynamodb.DescribeTimeToLiveInput, _ ...func(*dynamodb.Options)) (*dynamodb.DescribeTimeToLiveOutput, error) {
	if f.describeTTL == nil {
		return nil, fmt.Errorf("%w: DescribeTimeToLive", errUnexpected)
	}
	return f.describeTTL(in)
}

func (f *fakeTables) UpdateTimeToLive(_ context.Context, in *dynamodb.UpdateTimeToLiveInput, _ ...func(*dynamodb.Options)) (*dynamodb.UpdateTimeToLiveOutput, error) {
	if f.updateTTL == nil {
		return nil, fmt.Errorf("%w: UpdateTimeToLive", errUnexpected)
	}
	return f.updateTTL(in)
}

func windowTable(status types.TableStatus) *dynamodb.DescribeTableOutput {
	return &dynamodb.DescribeTableOutput{Table: &types.TableDescription{
		TableStatus:          status,
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("key"), KeyType: types.KeyTypeHash}},
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("key"), AttributeType: types.ScalarAttributeTypeS}},
	}}
}

func TestCreateTableTTL(t *testing.T) {
	t.Parallel()
	exists := func(*dynamodb.CreateTableInput) (*dynamodb.CreateTableOutput, error) {
		return nil, &types.ResourceInUseException{Message: aws.String("exists")}
	}
	active := func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
		return windowTable(types.TableStatusActive), nil
	}
	ttlOn := func(attr string, status types.TimeToLiveStatus) func(*dynamodb.DescribeTimeToLiveInput) (*dynamodb.DescribeTimeToLiveOutput, error) {
		return func(*dynamodb.DescribeTimeToLiveInput) (*dynamodb.DescribeTimeToLiveOutput, error) {
			return &dynamodb.DescribeTimeToLiveOutput{TimeToLiveDescription: &types.TimeToLiveDescription{
				AttributeName: aws.String(attr), TimeToLiveStatus: status,
			}}, nil
		}
	}

	t.Run("AlreadyEnabled", func(t *testing.T) {
		f := &fakeTables{create: exists, describe: active, describeTTL: ttlOn("ttl", types.TimeToLiveStatusEnabled)}
		require.NoError(t, dynamo.CreateTable(context.Background(), f, "tbl"), "no UpdateTimeToLive")
	})
	t.Run("EnabledOnOther", func(t *testing.T) {
		f := &fakeTables{create: exists, describe: active, describeTTL: ttlOn("other", types.TimeToLiveStatusEnabled)}
		err := dynamo.CreateTable(context.Background(), f, "tbl")
		require.ErrorIs(t, err, dynamo.ErrTTLNotEnabled)
		require.ErrorContains(t, err, `"other"`)
	})
	t.Run("Enables", func(t *testing.T) {
		var spec *types.TimeToLiveSpecification
		f := &fakeTables{
			create: func(in *dynamodb.CreateTableInput) (*dynamodb.CreateTableOutput, error) {
				require.Equal(t, types.BillingModePayPerRequest, in.BillingMode)
				return &dynamodb.CreateTableOutput{}, nil
			},
			describe:    active,
			describeTTL: ttlOn("", types.TimeToLiveStatusDisabled),
			updateTTL: func(in *dynamodb.UpdateTimeToLiveInput) (*dynamodb.UpdateTimeToLiveOutput, error) {
				spec = in.TimeToLiveSpecification
				return &dynamodb.UpdateTimeToLiveOutput{}, nil
			},
		}
		require.NoError(t, dynamo.CreateTable(context.Background(), f, "tbl", dynamo.WithTTLAttribute("exp_s")))
		require.Equal(t, "exp_s", aws.ToString(spec.AttributeName))
		require.True(t, aws.ToBool(spec.Enabled))
	})
	t.Run("WaitsForActive", func(t *testing.T) {
		describes := 0
		f := &fakeTables{
			create: exists,
			describe: func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
				describes++
				if describes < 3 {
					return windowTable(types.TableStatusCreating), nil
				}
				return windowTable(types.TableStatusActive), nil
			},
			describeTTL: ttlOn("ttl", types.TimeToLiveStatusEnabling),
		}
		require.NoError(t, dynamo.CreateTable(context.Background(), f, "tbl"))
		require.Equal(t, 3, describes)
	})
	t.Run("ContextEndsWhileCreating", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		f := &fakeTables{create: exists, describe: func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
			cancel()
			return windowTable(types.TableStatusCreating), nil
		}}
		err := dynamo.CreateTable(ctx, f, "tbl")
		require.ErrorIs(t, err, context.Canceled)
		require.ErrorContains(t, err, "CREATING")
	})
	t.Run("Deleting", func(t *testing.T) {
		f := &fakeTables{create: exists, describe: func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
			return windowTable(types.TableStatusDeleting), nil
		}}
		require.ErrorContains(t, dynamo.CreateTable(context.Background(), f, "tbl"), "DELETING")
	})
	t.Run("CreateFails", func(t *testing.T) {
		f := &fakeTables{create: func(*dynamodb.CreateTableInput) (*dynamodb.CreateTableOutput, error) {
			return nil, &smithy.GenericAPIError{Code: "AccessDeniedException"}
		}}
		err := dynamo.CreateTable(context.Background(), f, "tbl")
		require.ErrorContains(t, err, "AccessDeniedException")
		require.NotErrorIs(t, err, dynamo.ErrTTLNotEnabled)
	})
}
