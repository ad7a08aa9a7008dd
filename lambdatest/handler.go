package lambdatest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
)

// Handler is a Lambda function written in Go. It receives the invocation
// (payload, qualifier, client context, request id...) and returns the
// function's response payload, or an error, which the server reports as an
// unhandled function error: for a RequestResponse invocation the caller
// gets a 200 with X-Amz-Function-Error: Unhandled and a body
// {"errorMessage": err.Error(), "errorType": ...}; for an Event invocation
// the error is only recorded. A panic is reported the same way.
//
// ctx is cancelled when the caller goes away or the server goes offline or
// closes. inv.Payload must not be modified. A nil payload answers an empty
// body.
type Handler func(ctx context.Context, inv Invocation) ([]byte, error)

// FunctionError is an error a [Handler] returns to choose the errorType the
// caller sees. For any other error the errorType is the name of the error's
// Go type, as the Go runtime for Lambda (aws-lambda-go) reports it: for
// example "errorString" for errors.New.
type FunctionError struct {
	Type    string // errorType in the response body
	Message string // errorMessage in the response body
}

// Error returns the message.
func (e *FunctionError) Error() string { return e.Message }

// OK returns a handler that succeeds with an empty response.
func OK() Handler {
	return func(context.Context, Invocation) ([]byte, error) { return nil, nil }
}

// Echo returns a handler that responds with the payload it received.
func Echo() Handler {
	return func(_ context.Context, inv Invocation) ([]byte, error) { return inv.Payload, nil }
}

// Respond returns a handler that always responds with payload.
func Respond(payload []byte) Handler {
	return func(context.Context, Invocation) ([]byte, error) { return payload, nil }
}

// Raise returns a handler that always fails with a [FunctionError] of the
// given errorType and message.
func Raise(errorType, message string) Handler {
	return func(context.Context, Invocation) ([]byte, error) {
		return nil, &FunctionError{Type: errorType, Message: message}
	}
}

// call runs h, turning a panic into a function error.
func call(ctx context.Context, h Handler, inv Invocation) (out []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, &FunctionError{Type: errorType(p), Message: fmt.Sprint(p)}
		}
	}()
	return h(ctx, inv)
}

// errorType names an error (or panic value) as aws-lambda-go does.
func errorType(v any) string {
	if err, ok := v.(error); ok {
		var fe *FunctionError
		if errors.As(err, &fe) && fe.Type != "" {
			return fe.Type
		}
	}
	t := reflect.TypeOf(v)
	if t == nil {
		return "nil"
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Name()
}
