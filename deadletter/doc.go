// Package deadletter holds the events the dispatcher gave up on, with why
// and what was tried: the [Letter], the [Sink] that receives letters, and
// the default sink, [Bolt], which keeps them in the queue's own file.
//
// # Sinks
//
// The dispatcher hands a letter to a Sink when Lambda refused the event
// ([Rejected]), when its retries ran out ([RetriesExhausted]), or when it
// grew too old ([EventAgeExceeded]). Only once Put returns nil is the event
// removed from the queue; when Put fails, the event stays queued and is
// handed over again later, so a failing sink never loses an event, and a
// sink may see a letter twice. [SinkFunc] adapts a function to a Sink, as
// http.HandlerFunc does.
//
// A sink that keeps letters in the queue's bbolt file implements [TxSink]
// as well: the dispatcher then writes the letter in the same transaction
// that removes the event from the queue, so the event is in exactly one of
// the two, never both and never neither, even across a crash.
//
// # The bbolt sink
//
// [Bolt] keeps letters in the bucket "deadletters" of the queue's file and
// touches no other bucket. The key is the event id as 8 bytes, big-endian,
// so letters sort in event order; only ids that are decimal sequence numbers
// ("42") can be stored. The value is a format version byte (1), then a JSON
// object: the letter's fields, the payload in base64, times in RFC 3339 with
// nanoseconds in UTC. The decoder refuses a version it does not know,
// ignores fields it does not know (so version 1 can gain optional fields),
// and reports what it cannot read as a *[CorruptError]. The bucket's
// sequence number is the count of letters, so [Bolt.Count] reads one number.
//
// [Bolt.Get] and [Bolt.List] read letters back; List pages by cursor, one
// short read transaction per page.
//
// # Caveats
//
// A letter whose id is already held replaces it: that is what makes a
// repeated Put, or a transaction run again, harmless. Times are kept in UTC
// without the monotonic clock reading, and an empty payload comes back as
// nil. The strings of [ErrorInfo] are made valid UTF-8 before they are
// stored; every other string must already be, or Put refuses the letter.
//
// # Lambda's record format
//
// [Letter.Record] and [Letter.MarshalRecord] give a letter the JSON form of
// the record Lambda sends to an on-failure destination when an asynchronous
// invocation fails, so a consumer written for Lambda's records reads ours
// unchanged: "version" "1.0", a millisecond "timestamp" in UTC (when the
// letter was made), "requestContext" with the condition and the attempt
// count, the payload itself as "requestPayload" when it is JSON, and the
// last error in "responseContext" and "responsePayload". [Reason.Condition]
// maps [RetriesExhausted] and [EventAgeExceeded] to Lambda's conditions of
// the same names, and [Rejected] to "RejectedByLambda", a name of our own.
// Where the dispatcher knows less than Lambda, the record says so: the
// functionArn is the function as the event named it, perhaps not an ARN;
// the requestId is the letter's ID when Lambda gave none; functionError is
// the Lambda service's error code, not "Handled" or "Unhandled"; and
// executedVersion is left out.
package deadletter
