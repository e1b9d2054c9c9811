//go:build !unix

package tokenstore

import (
	"os"
	"time"
)

// lockFile is a no-op where flock(2) does not exist: only one process may
// use a state directory there. The proxy is built and tested for Unix.
func lockFile(string, time.Duration) (func(), error) { return func() {}, nil }

// inode is unknown here; mtime and size tell file versions apart.
func inode(os.FileInfo) uint64 { return 0 }
