package delivery

import (
	"context"
	"math/rand/v2"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/lambdadispatch/dispatcher/retry"
)

// pause stops leasing until a probe gets through. Invocations in flight
// finish on their own; each that fails the same way is released too.
func (r *runner) pause(function string, ie *retry.InvokeError) {
	if r.paused.CompareAndSwap(false, true) {
		r.pausedOn.Store(function)
		r.cfg.Counters.Paused.Store(true)
		attrs := []any{"class", ie.Class.String(), "code", ie.Code, "status", ie.StatusCode, "request_id", ie.RequestID}
		// A credentials failure is the one whose message AWS fills with
		// the request it refused, signed headers and token included:
		// redaction is pattern matching, so none of that text is trusted
		// to a log line. Code, status and request id say what failed, and
		// AWS support can find the rest from the request id.
		if ie.Class != retry.Credentials {
			attrs = append(attrs, "error", ie.Error())
		}
		r.log.Warn("Lambda unreachable or credentials failing: dispatch paused", attrs...)
	}
}

// probe waits with backoff and sends a DryRun invocation until one gets an
// answer that is not unreachable or a credentials failure; then dispatch
// resumes at full speed. It returns false when ctx ends first.
func (r *runner) probe(ctx context.Context) bool {
	function, _ := r.pausedOn.Load().(string)
	for n := 1; ; n++ {
		if !sleep(ctx, r.cfg.Policy.ProbeDelay(n, rand.Float64())) {
			return false
		}
		pctx, cancel := context.WithTimeout(ctx, r.cfg.InvokeTimeout)
		_, err := r.cfg.Lambda.Invoke(pctx, &lambda.InvokeInput{
			FunctionName:   aws.String(function),
			InvocationType: types.InvocationTypeDryRun,
		}, noSDKRetries)
		cancel()
		if ctx.Err() != nil {
			return false
		}
		if c := retry.Classify(err); err == nil || (c != retry.Unreachable && c != retry.Credentials) {
			r.paused.Store(false)
			r.cfg.Counters.Paused.Store(false)
			r.log.Info("Lambda reachable again: dispatch resumed", "probes", n)
			return true
		}
	}
}
