package dynamo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/lambdadispatch/dispatcher/idempotency"
)

// API is the part of the DynamoDB client a [Window] calls. A
// *dynamodb.Client implements it.
type API interface {
	PutItem(ctx context.Context, params *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, params *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(ctx context.Context, params *dynamodb.DeleteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	GetItem(ctx context.Context, params *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	BatchGetItem(ctx context.Context, params *dynamodb.BatchGetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
}

// Attribute names of an item. The TTL attribute's is an [Option].
const (
	attrKey     = "key"
	attrOwner   = "owner"
	attrToken   = "token"
	attrID      = "id"
	attrState   = "state"
	attrLease   = "lease"
	attrExpires = "expires"
)

// DefaultTTLAttribute is the attribute that holds an item's expiry in Unix
// seconds, for DynamoDB's time to live, unless [WithTTLAttribute] names
// another.
const DefaultTTLAttribute = "ttl"

// MaxKeyBytes is the longest key, in bytes of UTF-8, that a Window
// accepts: DynamoDB's limit on a partition key.
const MaxKeyBytes = 2048

// batchGetMax is the most keys one BatchGetItem may ask for.
const batchGetMax = 100

// claimTries bounds how many conditional writes one Claim makes when the
// item changes between its write and its read of the holder.
const claimTries = 3

// batchGetRounds bounds how many times Lookup asks again for keys that
// BatchGetItem left unprocessed, with a backoff from batchGetBackoff up to
// batchGetMaxBackoff between rounds.
const (
	batchGetRounds     = 8
	batchGetBackoff    = 10 * time.Millisecond
	batchGetMaxBackoff = 500 * time.Millisecond
)

// Option configures a [Window] or [CreateTable].
type Option func(*config)

type config struct {
	ttlAttr string
}

// WithTTLAttribute names the attribute that holds an item's expiry in Unix
// seconds, the one the table's time to live is enabled on. The default is
// [DefaultTTLAttribute]. A Window and the CreateTable that made its table
// must be given the same name.
func WithTTLAttribute(name string) Option {
	return func(c *config) { c.ttlAttr = name }
}

func newConfig(opts []Option) (config, error) {
	c := config{ttlAttr: DefaultTTLAttribute}
	for _, o := range opts {
		o(&c)
	}
	switch c.ttlAttr {
	case "":
		return c, errors.New("dynamo: empty TTL attribute name")
	case attrKey, attrOwner, attrToken, attrID, attrState, attrLease, attrExpires:
		return c, fmt.Errorf("dynamo: TTL attribute %q is one of the item's own attributes", c.ttlAttr)
	}
	return c, nil
}

// Window is a shared key window in a DynamoDB table: an
// [idempotency.Shared]. Its methods may be called from several goroutines
// at once; it holds no state beyond its configuration.
type Window struct {
	client  API
	table   string
	ttlAttr string
	names   map[string]string // ExpressionAttributeNames for every request
}

var _ idempotency.Shared = (*Window)(nil)

// New returns the window kept in table, reached through client. The table
// must exist with the layout [CreateTable] gives it. New makes no request.
func New(client API, table string, opts ...Option) (*Window, error) {
	if client == nil {
		return nil, errors.New("dynamo: nil client")
	}
	if table == "" {
		return nil, errors.New("dynamo: empty table name")
	}
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return &Window{
		client:  client,
		table:   table,
		ttlAttr: c.ttlAttr,
		names: map[string]string{
			"#k":     attrKey,
			"#own":   attrOwner,
			"#tok":   attrToken,
			"#id":    attrID,
			"#st":    attrState,
			"#lease": attrLease,
			"#exp":   attrExpires,
		},
	}, nil
}

// Table returns the name of the window's table.
func (w *Window) Table() string { return w.table }

// namesFor returns the ExpressionAttributeNames for an expression that uses
// exactly the placeholders given: DynamoDB rejects names a request does
// not use.
func (w *Window) namesFor(placeholders ...string) map[string]string {
	m := make(map[string]string, len(placeholders))
	for _, p := range placeholders {
		m[p] = w.names[p]
	}
	return m
}

// Expressions, one per operation. Every comparison with :now is made with
// the caller's clock: a key is expired when expires <= now, and a lease has
// passed when lease <= now, as in the local Index.
const (
	claimCondition = "attribute_not_exists(#k) OR #exp <= :now OR " +
		"(#st = :claimed AND (#own = :me OR #lease <= :now))"
	confirmUpdate    = "SET #st = :queued, #id = :id REMOVE #lease"
	confirmCondition = "#own = :me AND #tok = :tok AND " +
		"(#st = :claimed OR (#st = :queued AND #id = :id))"
	markUpdate     = "SET #st = :s"
	markCondition  = "#own = :me AND #id = :id"
	releaseByToken = "#own = :me AND #tok = :tok"
	releaseByID    = "#own = :me AND #id = :id"
)

// Claim takes c.Key for c.Owner when no one holds it, in one conditional
// PutItem; see [idempotency.Shared]. When the key is held it returns the
// holder, read from the failed write's old item where DynamoDB returns it
// and otherwise with one consistent GetItem. If that read finds the key
// free again (deleted, expired, or its lease passed in between), Claim
// writes again; after three such races it returns an
// *idempotency.UnavailableError.
func (w *Window) Claim(ctx context.Context, c idempotency.Claim, now time.Time) (idempotency.Holder, bool, error) {
	if err := c.Check(MaxKeyBytes); err != nil {
		return idempotency.Holder{}, false, fmt.Errorf("dynamo: Claim key %q: %w", c.Key, err)
	}
	nowMS := now.UnixMilli()
	lease := now.Add(c.Lease).UnixMilli()
	expires := now.Add(c.Window).UnixMilli()
	item := map[string]types.AttributeValue{
		attrKey:     str(c.Key),
		attrOwner:   str(c.Owner),
		attrToken:   str(c.Token),
		attrState:   num(int64(idempotency.Claimed)),
		attrLease:   num(lease),
		attrExpires: num(expires),
		w.ttlAttr:   num(ttlSeconds(expires)),
	}
	in := &dynamodb.PutItemInput{
		TableName:                aws.String(w.table),
		Item:                     item,
		ConditionExpression:      aws.String(claimCondition),
		ExpressionAttributeNames: w.namesFor("#k", "#exp", "#st", "#own", "#lease"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":now":     num(nowMS),
			":claimed": num(int64(idempotency.Claimed)),
			":me":      str(c.Owner),
		},
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}
	for range claimTries {
		_, err := w.client.PutItem(ctx, in)
		if err == nil {
			return idempotency.Holder{}, true, nil
		}
		var failed *types.ConditionalCheckFailedException
		if !errors.As(err, &failed) {
			return idempotency.Holder{}, false, w.fail(ctx, "Claim", c.Key, err)
		}
		old := failed.Item
		if len(old) == 0 {
			// DynamoDB returns the old item only when asked and only
			// since 2023; servers that ignore the parameter need a read.
			out, err := w.client.GetItem(ctx, &dynamodb.GetItemInput{
				TableName:      aws.String(w.table),
				Key:            map[string]types.AttributeValue{attrKey: str(c.Key)},
				ConsistentRead: aws.Bool(true),
			})
			if err != nil {
				return idempotency.Holder{}, false, w.fail(ctx, "Claim", c.Key, err)
			}
			old = out.Item
		}
		if len(old) == 0 {
			continue // removed since the write: try again
		}
		key, h, err := decodeItem(old)
		if err != nil {
			return idempotency.Holder{}, false, fmt.Errorf("dynamo: Claim key %q in table %q: %w", c.Key, w.table, err)
		}
		if key != c.Key {
			return idempotency.Holder{}, false, fmt.Errorf("dynamo: Claim key %q in table %q: %w: read item of key %q",
				c.Key, w.table, idempotency.ErrCorrupt, key)
		}
		if claimable(h, c.Owner, nowMS) {
			continue // changed since the write, so that it may be claimed now
		}
		return h, false, nil
	}
	return idempotency.Holder{}, false, &idempotency.UnavailableError{
		Op: "Claim", Key: c.Key,
		Err: fmt.Errorf("dynamo: the item changed between each of %d conditional writes and the read that followed", claimTries),
	}
}

// claimable reports whether h meets the claim condition for owner at
// nowMS: the write that failed would succeed against it.
func claimable(h idempotency.Holder, owner string, nowMS int64) bool {
	if h.Expires.UnixMilli() <= nowMS {
		return true
	}
	return h.State == idempotency.Claimed && (h.Owner == owner || h.Lease.UnixMilli() <= nowMS)
}

// Confirm moves r.Key from Claimed to Queued and records r.ID, with one
// conditional UpdateItem; see [idempotency.Shared].
func (w *Window) Confirm(ctx context.Context, r idempotency.Ref) error {
	if err := r.Check(true, true); err != nil {
		return fmt.Errorf("dynamo: Confirm key %q: %w", r.Key, err)
	}
	_, err := w.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                aws.String(w.table),
		Key:                      map[string]types.AttributeValue{attrKey: str(r.Key)},
		UpdateExpression:         aws.String(confirmUpdate),
		ConditionExpression:      aws.String(confirmCondition),
		ExpressionAttributeNames: w.namesFor("#st", "#id", "#lease", "#own", "#tok"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":queued":  num(int64(idempotency.Queued)),
			":claimed": num(int64(idempotency.Claimed)),
			":id":      str(r.ID),
			":me":      str(r.Owner),
			":tok":     str(r.Token),
		},
	})
	return w.conditional(ctx, "Confirm", r.Key, err, true)
}

// Mark sets the state of r.Key to s, Delivered or DeadLettered, with one
// conditional UpdateItem; see [idempotency.Shared].
func (w *Window) Mark(ctx context.Context, r idempotency.Ref, s idempotency.State) error {
	if err := r.Check(false, true); err != nil {
		return fmt.Errorf("dynamo: Mark key %q: %w", r.Key, err)
	}
	if s != idempotency.Delivered && s != idempotency.DeadLettered {
		return fmt.Errorf("dynamo: Mark key %q: state %v is neither %v nor %v", r.Key, s, idempotency.Delivered, idempotency.DeadLettered)
	}
	_, err := w.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                aws.String(w.table),
		Key:                      map[string]types.AttributeValue{attrKey: str(r.Key)},
		UpdateExpression:         aws.String(markUpdate),
		ConditionExpression:      aws.String(markCondition),
		ExpressionAttributeNames: w.namesFor("#st", "#own", "#id"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":s":  num(int64(s)),
			":me": str(r.Owner),
			":id": str(r.ID),
		},
	})
	return w.conditional(ctx, "Mark", r.Key, err, true)
}

// Release removes r.Key if r holds it, with one conditional DeleteItem;
// see [idempotency.Shared].
func (w *Window) Release(ctx context.Context, r idempotency.Ref) error {
	if err := r.Check(false, false); err != nil {
		return fmt.Errorf("dynamo: Release key %q: %w", r.Key, err)
	}
	in := &dynamodb.DeleteItemInput{
		TableName: aws.String(w.table),
		Key:       map[string]types.AttributeValue{attrKey: str(r.Key)},
	}
	switch {
	case r.Token != "":
		in.ConditionExpression = aws.String(releaseByToken)
		in.ExpressionAttributeNames = w.namesFor("#own", "#tok")
		in.ExpressionAttributeValues = map[string]types.AttributeValue{":me": str(r.Owner), ":tok": str(r.Token)}
	case r.ID != "":
		in.ConditionExpression = aws.String(releaseByID)
		in.ExpressionAttributeNames = w.namesFor("#own", "#id")
		in.ExpressionAttributeValues = map[string]types.AttributeValue{":me": str(r.Owner), ":id": str(r.ID)}
	default:
		return fmt.Errorf("dynamo: Release key %q: neither a token nor an event ID", r.Key)
	}
	_, err := w.client.DeleteItem(ctx, in)
	return w.conditional(ctx, "Release", r.Key, err, false)
}

// conditional maps the error of a conditional write: a failed condition is
// ErrLost when lost is set, else nil.
func (w *Window) conditional(ctx context.Context, op, key string, err error, lost bool) error {
	if err == nil {
		return nil
	}
	var failed *types.ConditionalCheckFailedException
	if errors.As(err, &failed) {
		if !lost {
			return nil
		}
		return fmt.Errorf("dynamo: %s key %q in table %q: %w", op, key, w.table, idempotency.ErrLost)
	}
	return w.fail(ctx, op, key, err)
}

// Lookup returns the holders of those keys that are held and unexpired at
// now, with consistent BatchGetItem reads of up to 100 keys each; see
// [idempotency.Shared]. Keys that DynamoDB leaves unprocessed are asked for
// again, a bounded number of times, after a growing pause; if some are
// still left, Lookup returns an *idempotency.UnavailableError with
// Throttled set.
func (w *Window) Lookup(ctx context.Context, keys []string, now time.Time) (map[string]idempotency.Holder, error) {
	nowMS := now.UnixMilli()
	found := make(map[string]idempotency.Holder)
	seen := make(map[string]bool, len(keys))
	batch := make([]map[string]types.AttributeValue, 0, min(len(keys), batchGetMax))
	for i, key := range keys {
		if key == "" {
			return nil, errors.New("dynamo: Lookup: empty key")
		}
		if !seen[key] {
			seen[key] = true
			batch = append(batch, map[string]types.AttributeValue{attrKey: str(key)})
		}
		if len(batch) == batchGetMax || (i == len(keys)-1 && len(batch) > 0) {
			if err := w.batchGet(ctx, batch, nowMS, found); err != nil {
				return nil, err
			}
			batch = batch[:0]
		}
	}
	return found, nil
}

// batchGet reads keys, at most batchGetMax of them, into found.
func (w *Window) batchGet(ctx context.Context, keys []map[string]types.AttributeValue, nowMS int64, found map[string]idempotency.Holder) error {
	pending := map[string]types.KeysAndAttributes{
		w.table: {Keys: keys, ConsistentRead: aws.Bool(true)},
	}
	backoff := batchGetBackoff
	for round := 0; ; round++ {
		out, err := w.client.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: pending})
		if err != nil {
			return w.fail(ctx, "Lookup", "", err)
		}
		for _, item := range out.Responses[w.table] {
			key, h, err := decodeItem(item)
			if err != nil {
				return fmt.Errorf("dynamo: Lookup in table %q: %w", w.table, err)
			}
			if h.Expires.UnixMilli() > nowMS {
				found[key] = h
			}
		}
		left, ok := out.UnprocessedKeys[w.table]
		if !ok || len(left.Keys) == 0 {
			return nil
		}
		if round+1 >= batchGetRounds {
			return &idempotency.UnavailableError{
				Op: "Lookup", Throttled: true,
				Err: fmt.Errorf("dynamo: BatchGetItem left %d keys unprocessed after %d requests", len(left.Keys), batchGetRounds),
			}
		}
		pending = map[string]types.KeysAndAttributes{
			w.table: {Keys: left.Keys, ConsistentRead: aws.Bool(true)},
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("dynamo: Lookup in table %q: %w", w.table, ctx.Err())
		case <-t.C:
		}
		backoff = min(2*backoff, batchGetMaxBackoff)
	}
}

// throttleCodes are the error codes with which DynamoDB refuses a request
// for load or contention: retrying later may succeed.
var throttleCodes = map[string]bool{
	"ProvisionedThroughputExceededException": true,
	"ThrottlingException":                    true,
	"RequestLimitExceeded":                   true,
	"TransactionConflictException":           true, // a transaction holds the item
}

// unavailableCodes are the error codes of a DynamoDB that failed to answer.
var unavailableCodes = map[string]bool{
	"InternalServerError":     true,
	"InternalFailure":         true,
	"ServiceUnavailable":      true,
	"RequestTimeout":          true,
	"RequestTimeoutException": true,
}

// fail classifies err, which the client returned for op on key: the
// context's own error if ctx ended, an *idempotency.UnavailableError if
// DynamoDB could not be reached or refused for load, else a plain error
// naming op, key and the table.
func (w *Window) fail(ctx context.Context, op, key string, err error) error {
	where := fmt.Sprintf("dynamo: %s in table %q", op, w.table)
	if key != "" {
		where = fmt.Sprintf("dynamo: %s key %q in table %q", op, key, w.table)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", where, ctx.Err())
	}
	if throttled, ok := unavailable(err); ok {
		return &idempotency.UnavailableError{Op: op, Key: key, Throttled: throttled, Err: err}
	}
	return fmt.Errorf("%s: %w", where, err)
}

// unavailable reports whether err means that DynamoDB could not be reached
// or refused for load, and which of the two.
func unavailable(err error) (throttled, ok bool) {
	var api smithy.APIError
	if errors.As(err, &api) {
		code := api.ErrorCode()
		if throttleCodes[code] {
			return true, true
		}
		if unavailableCodes[code] {
			return false, true
		}
	}
	var status interface{ HTTPStatusCode() int }
	if errors.As(err, &status) && status.HTTPStatusCode() >= 500 {
		return false, true
	}
	if api != nil {
		return false, false // DynamoDB answered, and said no
	}
	var conn interface{ ConnectionError() bool }
	if errors.As(err, &conn) && conn.ConnectionError() {
		return false, true
	}
	var timeout interface{ Timeout() bool }
	if errors.As(err, &timeout) && timeout.Timeout() {
		return false, true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return false, true
	}
	var quota ratelimit.QuotaExceededError
	if errors.As(err, &quota) {
		return false, true
	}
	// The SDK gives up with MaxAttemptsError only on errors it retries.
	var attempts *retry.MaxAttemptsError
	if errors.As(err, &attempts) {
		return false, true
	}
	return false, false
}

// decodeItem reads an item of the table. It returns an error wrapping
// idempotency.ErrCorrupt, never panics, for an item with an attribute
// missing, of the wrong type, or out of range.
func decodeItem(item map[string]types.AttributeValue) (string, idempotency.Holder, error) {
	var h idempotency.Holder
	key, err := getS(item, attrKey, true)
	if err != nil {
		return "", h, err
	}
	corrupt := func(err error) (string, idempotency.Holder, error) {
		return key, idempotency.Holder{}, fmt.Errorf("item of key %q: %w", key, err)
	}
	if h.Owner, err = getS(item, attrOwner, true); err != nil {
		return corrupt(err)
	}
	if h.Token, err = getS(item, attrToken, true); err != nil {
		return corrupt(err)
	}
	if h.ID, err = getS(item, attrID, false); err != nil {
		return corrupt(err)
	}
	state, _, err := getN(item, attrState, true)
	if err != nil {
		return corrupt(err)
	}
	h.State = idempotency.State(state)
	if int64(h.State) != state || !knownState(h.State) {
		return corrupt(fmt.Errorf("%w: attribute %q: unknown state %d", idempotency.ErrCorrupt, attrState, state))
	}
	expires, _, err := getN(item, attrExpires, true)
	if err != nil {
		return corrupt(err)
	}
	h.Expires = time.UnixMilli(expires)
	lease, hasLease, err := getN(item, attrLease, h.State == idempotency.Claimed)
	if err != nil {
		return corrupt(err)
	}
	if hasLease {
		h.Lease = time.UnixMilli(lease)
	}
	if h.State != idempotency.Claimed && h.ID == "" {
		return corrupt(fmt.Errorf("%w: state %v without attribute %q", idempotency.ErrCorrupt, h.State, attrID))
	}
	return key, h, nil
}

func knownState(s idempotency.State) bool {
	switch s {
	case idempotency.Claimed, idempotency.Queued, idempotency.Delivered, idempotency.DeadLettered:
		return true
	}
	return false
}

func getS(item map[string]types.AttributeValue, name string, required bool) (string, error) {
	v, ok := item[name]
	if !ok || v == nil {
		if required {
			return "", fmt.Errorf("%w: attribute %q missing", idempotency.ErrCorrupt, name)
		}
		return "", nil
	}
	s, ok := v.(*types.AttributeValueMemberS)
	if !ok || s == nil {
		return "", fmt.Errorf("%w: attribute %q is %T, not a string", idempotency.ErrCorrupt, name, v)
	}
	if s.Value == "" {
		return "", fmt.Errorf("%w: attribute %q is empty", idempotency.ErrCorrupt, name)
	}
	return s.Value, nil
}

// maxMillis bounds the Unix milliseconds a time.Time can hold and that
// time.UnixMilli converts without overflow, with room to spare.
const maxMillis = 1 << 52

func getN(item map[string]types.AttributeValue, name string, required bool) (int64, bool, error) {
	v, ok := item[name]
	if !ok || v == nil {
		if required {
			return 0, false, fmt.Errorf("%w: attribute %q missing", idempotency.ErrCorrupt, name)
		}
		return 0, false, nil
	}
	n, ok := v.(*types.AttributeValueMemberN)
	if !ok || n == nil {
		return 0, false, fmt.Errorf("%w: attribute %q is %T, not a number", idempotency.ErrCorrupt, name, v)
	}
	i, err := strconv.ParseInt(n.Value, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%w: attribute %q: %q is not an integer", idempotency.ErrCorrupt, name, n.Value)
	}
	if i < -maxMillis || i > maxMillis {
		return 0, false, fmt.Errorf("%w: attribute %q: %d is out of range", idempotency.ErrCorrupt, name, i)
	}
	return i, true, nil
}

func str(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

func num(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

// ttlSeconds is the TTL attribute's value for an item that expires at
// expiresMS, Unix milliseconds: the first whole second not before it, so
// that DynamoDB never deletes an item before it expired.
func ttlSeconds(expiresMS int64) int64 {
	s := expiresMS / 1000
	if expiresMS%1000 > 0 {
		s++
	}
	return s
}
