package dispatcher

// Event is one asynchronous invocation waiting to be sent to a Lambda function.
type Event struct {
	// Function names the function in any form Lambda's Invoke accepts: a name
	// ("my-function"), a name with a version or alias ("my-function:prod"), a
	// partial ARN ("123456789012:function:my-function") or a full ARN.
	Function string
	// Qualifier optionally selects a version or alias. When Function already
	// carries one, the two must agree.
	Qualifier string
	// Payload is the JSON document the function receives. It may be empty.
	Payload []byte
	// Key optionally identifies the event for deduplication (an order id, a
	// reading id). Events without a key are never deduplicated.
	Key string
}

// Receipt reports the outcome of an Enqueue.
type Receipt struct {
	// ID identifies the queued event. For a duplicate it is the id of the
	// event that was queued first under the same key.
	ID string
	// Duplicate is true when the event was not queued because its key was
	// already seen inside the deduplication window. A duplicate is a result,
	// not an error.
	Duplicate bool
}
