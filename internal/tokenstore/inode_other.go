//go:build !unix

package tokenstore

import "os"

// inode is unknown here; mtime and size tell file versions apart.
func inode(os.FileInfo) uint64 { return 0 }
