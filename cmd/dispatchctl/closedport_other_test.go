//go:build !unix

package main_test

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// closedPort returns the URL of a port nothing listened on a moment ago.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return "http://" + addr
}
