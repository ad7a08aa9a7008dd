package main_test

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lambdadispatch/dispatcher"
)

// TestFileInUse runs every command that opens the file while a
// dispatcher holds it: each gives up after its lock timeout, with exit
// code 3 and a message that says what to do instead. The commands run at
// once, each waiting out its own timeout, rather than one after another.
func TestFileInUse(t *testing.T) {
	t.Parallel()
	path := seed(t)
	d, err := dispatcher.Open(path)
	require.NoError(t, err)
	defer d.Close()

	live := path + " is held by a running dispatcher; use --url with the service's admin URL"
	stop := path + " is held by a running dispatcher; stop it first" // --url cannot do what these do
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"stats", path}, live}, {[]string{"ls", path}, live}, {[]string{"ls", "--state", "dead", path}, live},
		{[]string{"show", "1", path}, live}, {[]string{"redrive", "--all", path}, live},
		{[]string{"purge", "--all", "--yes", path}, live}, {[]string{"export", path}, live},
		{[]string{"cancel", "--all", "--yes", path}, live}, {[]string{"pause", path, "orders"}, live},
		{[]string{"compact", path}, stop}, {[]string{"check", path}, stop},
	}
	results := make([]result, len(cases))
	errs := make([]error, len(cases))
	var wg sync.WaitGroup
	for i, c := range cases {
		wg.Go(func() { results[i], errs[i] = runCtl(nil, "", c.args...) })
	}
	wg.Wait()
	for i, c := range cases {
		require.NoError(t, errs[i], "run %v", c.args)
		r := results[i]
		require.Equal(t, 3, r.code, "%v: %s", c.args, r.stderr)
		require.Contains(t, r.stderr, c.want, "%v", c.args)
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
