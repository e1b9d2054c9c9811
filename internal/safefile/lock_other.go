//go:build !unix

package safefile

import (
	"io/fs"
	"time"
)

// Lock is a no-op where flock(2) does not exist: only one process may
// write a file there. The proxy is built and tested for Unix.
func Lock(string, time.Duration) (func(), error) { return func() {}, nil }

// owner is unknown here: Resolve checks only modes.
func owner(fs.FileInfo) (int, bool) { return 0, false }
