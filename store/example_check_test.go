package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/lambdadispatch/dispatcher/store"
)

// A file Open refuses still yields what can be read of it: Check says
// what is wrong, Salvage copies the rest into a new file.
func ExampleSalvage() {
	dir, _ := os.MkdirTemp("", "salvage")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "events.db")
	st, _ := store.Open(path, store.Options{})
	_, _ = st.Enqueue(context.Background(), []store.NewEvent{{Function: "orders", Payload: []byte(`{"id":1}`)}})
	_ = st.Close()
	_ = os.Truncate(path, 3*int64(os.Getpagesize())) // a disk that lost the end of the file

	rep, _ := store.Check(path)
	fmt.Println("check ok:", rep.OK())
	_, err := store.Open(path, store.Options{})
	fmt.Println("open refused:", err != nil)

	srep, err := store.Salvage(path, filepath.Join(dir, "salvaged.db"))
	fmt.Println("salvaged:", srep.Events, "events, lost pages:", srep.LostPages, err)
	for _, p := range srep.Problems {
		fmt.Println(p.Where)
	}
	// Output:
	// check ok: false
	// open refused: true
	// salvaged: 1 events, lost pages: 0 <nil>
	// meta
}
