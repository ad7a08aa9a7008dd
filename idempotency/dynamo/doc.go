// Package dynamo keeps a shared key window ([idempotency.Shared]) in an
// Amazon DynamoDB table, so that dispatchers in several processes, on
// several machines, deduplicate against the same keys.
//
// [New] returns a [Window] on an existing table; [CreateTable] creates one.
// Both take the small client interfaces [API] and [TableAPI], which a
// *dynamodb.Client implements.
//
// # Items
//
// The table has one item per key, with the partition key "key" (S) and no
// sort key. Its attributes:
//
//	key      S  the deduplication key
//	owner    S  the dispatcher holding the key
//	token    S  the claim that took the key
//	id       S  the event's ID in its owner's file; set by Confirm
//	state    N  the idempotency.State: 4 Claimed, 1 Queued, 2 Delivered, 3 DeadLettered
//	lease    N  Unix milliseconds: while Claimed, when other owners may take the key over
//	expires  N  Unix milliseconds: the exact end of the key's window
//	ttl      N  Unix seconds: expires rounded up, for DynamoDB's time to live
//
// The TTL attribute is named by [WithTTLAttribute]. Times are kept to the
// millisecond; a [idempotency.Holder]'s times are truncated to it.
//
// # Operations
//
// Every change is one conditional write. Claim's condition compares
// expires and lease with the caller's now: a key is expired when
// expires <= now, and a lease has passed when lease <= now. The other
// conditions do not look at the time.
//
//	Claim    PutItem    if attribute_not_exists(key) OR expires <= now OR
//	                    (state = Claimed AND (owner = me OR lease <= now))
//	Confirm  UpdateItem state = Queued, id, lease removed;
//	                    if owner = me AND token = mine AND
//	                    (state = Claimed OR (state = Queued AND id = mine))
//	Mark     UpdateItem state = Delivered or DeadLettered; if owner = me AND id = mine
//	Release  DeleteItem if owner = me AND token = mine (when a token is given),
//	                    else if owner = me AND id = mine
//	Lookup   BatchGetItem, consistent reads, of items with expires > now
//
// A failed condition is the answer, not a failure: Claim returns the
// holder, Confirm and Mark return [idempotency.ErrLost], Release returns
// nil.
//
// # Round trips
//
// Claim makes one conditional PutItem for a key no one holds. For a held
// key it asks DynamoDB to return the item that failed the condition
// (ReturnValuesOnConditionCheckFailure); a server that does not (dynalite,
// older DynamoDB-compatible servers) costs one more request, a consistent
// GetItem. If the item changed between the two so that it may now be
// claimed, Claim writes again, at most three times in all. Confirm, Mark
// and Release make one request each. Lookup makes one BatchGetItem per 100
// distinct keys, plus one for each time DynamoDB leaves keys unprocessed,
// with a growing pause between them.
//
// # Errors
//
// A request that DynamoDB throttled (ProvisionedThroughputExceededException,
// ThrottlingException, RequestLimitExceeded, TransactionConflictException),
// that failed on its side (HTTP 5xx, InternalServerError,
// ServiceUnavailable), or that never reached it (a connection or timeout
// error, or the SDK giving up its retries) returns an
// *[idempotency.UnavailableError], with Throttled set for the first kind.
// When the caller's context ends, the error wraps the context's error
// instead. Any other error (a missing table, denied access, a validation
// error) wraps the client's error and names the operation, key and table:
// retrying will not help. An item that cannot be read returns an error
// wrapping [idempotency.ErrCorrupt].
//
// # Caveats
//
// Clocks. The conditions compare the times written by one machine with
// the now of another, so the machines sharing a table must keep their
// clocks within a small fraction of the lease of each other: a claimer
// whose clock runs ahead by more than that takes over claims whose lease
// has not passed, and one whose clock runs behind waits longer than the
// lease before it may.
//
// Time to live. DynamoDB deletes expired items lazily, often within days
// of their expiry, not at it. No condition relies on the deletion: an
// expired item is treated as absent however long it stays. Time to live
// only keeps the table from growing without end; without it (see
// [ErrTTLNotEnabled]) expired items stay until overwritten.
//
// # IAM
//
// A Window needs the actions that [RuntimeActions] lists on its table;
// CreateTable needs those of [SetupActions]. A policy for both:
//
//	{
//	  "Version": "2012-10-17",
//	  "Statement": [
//	    {
//	      "Sid": "DispatcherKeyWindow",
//	      "Effect": "Allow",
//	      "Action": [
//	        "dynamodb:PutItem",
//	        "dynamodb:UpdateItem",
//	        "dynamodb:DeleteItem",
//	        "dynamodb:GetItem",
//	        "dynamodb:BatchGetItem"
//	      ],
//	      "Resource": "arn:aws:dynamodb:REGION:ACCOUNT:table/TABLE"
//	    },
//	    {
//	      "Sid": "DispatcherKeyWindowSetup",
//	      "Effect": "Allow",
//	      "Action": [
//	        "dynamodb:CreateTable",
//	        "dynamodb:DescribeTable",
//	        "dynamodb:DescribeTimeToLive",
//	        "dynamodb:UpdateTimeToLive"
//	      ],
//	      "Resource": "arn:aws:dynamodb:REGION:ACCOUNT:table/TABLE"
//	    }
//	  ]
//	}
//
// # Testing
//
// The package's tests run the real SDK client over HTTP against dynalite,
// a DynamoDB-compatible server on Node.js that .ci/install-dynalite
// installs; see internal/dynalitetest.
package dynamo
