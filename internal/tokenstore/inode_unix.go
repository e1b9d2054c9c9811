//go:build unix

package tokenstore

import (
	"os"
	"syscall"
)

// inode is the file's inode number, 0 if unknown.
func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino) // not uint64 on every unix
	}
	return 0
}
