package lambdatest_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/lambdadispatch/dispatcher/lambdatest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// bundle is what most tests need: a server, a client of it, and a context
// with a deadline.
type bundle struct {
	srv    *lambdatest.Server
	client *lambda.Client
	ctx    context.Context
}

func setup(t *testing.T, opts ...lambdatest.Option) *bundle {
	t.Helper()
	srv := lambdatest.NewServer(opts...)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return &bundle{srv: srv, client: srv.Client(), ctx: ctx}
}

// find returns the recorded invocation with the given request id.
func (b *bundle) find(t *testing.T, requestID string) lambdatest.Invocation {
	t.Helper()
	for _, inv := range b.srv.Invocations("") {
		if inv.RequestID == requestID {
			return inv
		}
	}
	require.Failf(t, "invocation not recorded", "request id %q", requestID)
	return lambdatest.Invocation{}
}
