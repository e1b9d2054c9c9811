package safefile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// maxLinks bounds a chain of symlinks, as the kernel's ELOOP does.
const maxLinks = 40

// ErrUnsafeLink is wrapped by Resolve's error when path is a symlink it
// will not write through: a link owned by another user, or one that leads
// to a file that is not a regular file of this user's that only it may
// write.
var ErrUnsafeLink = errors.New("refusing to write through a symlink")

// ErrSymlinkLock is wrapped by Lock's error when the lock file is a
// symlink.
var ErrSymlinkLock = errors.New("is a symlink; refusing to follow it")

// ErrNotRegular is wrapped by Lock's error when the lock file is a FIFO, a
// device, a directory or anything else but a regular file.
var ErrNotRegular = errors.New("not a regular file")

// Resolve returns the file that a write of path must replace: path itself
// when it is not a symlink or does not exist yet, otherwise the file at the
// end of its chain of links. It follows a link only when the link is owned
// by this user or root, and writes through it only to a regular file owned
// by this user that neither group nor others may write; otherwise the
// error names path and the reason and wraps ErrUnsafeLink. A link to a
// file that does not exist is an error wrapping fs.ErrNotExist: creating a
// file where a link points is not what anyone expects from an edit.
func Resolve(path string) (string, error) {
	p := path
	for hops := 0; ; hops++ {
		fi, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist) && p == path:
			return path, nil
		case errors.Is(err, fs.ErrNotExist):
			return "", fmt.Errorf("%s is a symlink to %s, which does not exist: %w", path, p, fs.ErrNotExist)
		case err != nil:
			return "", fmt.Errorf("resolve %s: %w", path, err)
		case fi.Mode()&fs.ModeSymlink == 0 && p == path:
			return path, nil
		case fi.Mode()&fs.ModeSymlink == 0:
			return p, checkTarget(path, p, fi)
		case hops == maxLinks:
			return "", fmt.Errorf("%s: more than %d symlinks in a chain: %w", path, maxLinks, ErrUnsafeLink)
		}
		if uid, ok := owner(fi); ok && uid != os.Geteuid() && uid != 0 {
			return "", fmt.Errorf("%s: the symlink %s is owned by uid %d, not by this user (uid %d) or root: %w",
				path, p, uid, os.Geteuid(), ErrUnsafeLink)
		}
		next, err := os.Readlink(p)
		if err != nil {
			return "", fmt.Errorf("resolve %s: %w", path, err)
		}
		if !filepath.IsAbs(next) {
			next = filepath.Join(filepath.Dir(p), next)
		}
		p = filepath.Clean(next)
	}
}

// checkTarget refuses to write through the link path to target unless
// target is a regular file of this user's that nobody else may write.
func checkTarget(path, target string, fi fs.FileInfo) error {
	uid, ok := owner(fi) // where it is unknown, so are the meanings of the mode bits
	switch {
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s is a symlink to %s, which is not a regular file: %w", path, target, ErrUnsafeLink)
	case ok && uid != os.Geteuid():
		return fmt.Errorf("%s is a symlink to %s, which is owned by uid %d, not by this user (uid %d): %w",
			path, target, uid, os.Geteuid(), ErrUnsafeLink)
	case ok && fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("%s is a symlink to %s, which is writable by others (mode %04o; chmod 600 it): %w",
			path, target, fi.Mode().Perm(), ErrUnsafeLink)
	}
	return nil
}
