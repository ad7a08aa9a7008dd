//go:build !unix

package store

import "os"

// keepOwner does nothing where files have no Unix owner to keep.
func keepOwner(*os.File, os.FileInfo) error { return nil }
