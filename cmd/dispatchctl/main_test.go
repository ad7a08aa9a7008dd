package main_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
)

func TestFileInUse(t *testing.T) {
	t.Parallel()
	path := seed(t)
	d, err := dispatcher.Open(path)
	require.NoError(t, err)
	defer d.Close()

	for _, args := range [][]string{
		{"stats", path}, {"ls", path}, {"ls", "--state", "dead", path}, {"show", "1", path},
		{"redrive", "--all", path}, {"purge", "--all", "--yes", path}, {"export", path}, {"cancel", "--all", "--yes", path},
		{"pause", path, "orders"},
	} {
		r := ctl(t, "", args...)
		require.Equal(t, 3, r.code, "%v: %s", args, r.stderr)
		require.Contains(t, r.stderr, path+" is held by a running dispatcher; use --url with the service's admin URL")
	}
	for _, args := range [][]string{{"compact", path}, {"check", path}} {
		r := ctl(t, "", args...)
		require.Equal(t, 3, r.code, "%v: %s", args, r.stderr)
		require.Contains(t, r.stderr, path+" is held by a running dispatcher; stop it first", "--url cannot do what these do")
	}
}

func TestMissingFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "nope.db")
	for _, args := range [][]string{{"stats", path}, {"ls", path}, {"show", "1", path}, {"compact", path}, {"export", "--dead", path}} {
		r := ctl(t, "", args...)
		require.Equal(t, 1, r.code, "%v", args)
		require.Contains(t, r.stderr, "no such file")
	}
	_, err := os.Stat(path)
	require.ErrorIs(t, err, os.ErrNotExist, "not created")
}

func TestUsage(t *testing.T) {
	t.Parallel()
	for _, c := range []string{"stats", "ls", "show", "redrive", "purge", "export", "compact"} {
		r := ctl(t, "", c, "--help")
		require.Equal(t, 0, r.code, c)
		require.Contains(t, r.stdout, "usage: dispatchctl "+c)
		require.Contains(t, r.stdout, "-json")
	}
	r := ctl(t, "", "--help")
	require.Equal(t, 0, r.code)
	require.Contains(t, r.stdout, "Commands:")

	r = ctl(t, "", "frobnicate")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, `unknown command "frobnicate"`)
	require.Equal(t, 2, ctl(t, "").code, "no command")
	require.Equal(t, 2, ctl(t, "", "stats", "--bogus", "x").code, "unknown flag")
	require.Equal(t, 2, ctl(t, "", "stats", "a", "b").code, "two files")
}
