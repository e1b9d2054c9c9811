//go:build unix

package safefile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// Lock takes an exclusive flock(2) on path, creating it (mode 0600) if it
// is missing, and waits up to timeout for another process (or another
// writer in this one) to release it; timeout 0 waits as long as it takes.
// It returns the function that releases the lock.
//
// The file is opened with O_NOFOLLOW, O_NONBLOCK (a FIFO planted at path
// cannot stall the open) and O_CLOEXEC (a child process does not inherit
// the lock); a symlink at path is refused with ErrSymlinkLock, anything but
// a regular file with ErrNotRegular.
func Lock(path string, timeout time.Duration) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		// O_NOFOLLOW fails with ELOOP on Linux, EMLINK on FreeBSD, EFTYPE
		// on NetBSD: ask the file system instead.
		if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return nil, fmt.Errorf("lock file %s: %w (remove it: it is recreated as a plain file)", path, ErrSymlinkLock)
		}
		return nil, fmt.Errorf("lock file: %w", err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("lock file: %w", err)
		}
		return nil, fmt.Errorf("lock file %s: %w (%v)", path, ErrNotRegular, fi.Mode().Type())
	}
	if err := flock(f, timeout); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		// Closing the descriptor releases the lock as well.
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// flock takes the exclusive lock on f. flock(2) has no timed wait, so with
// a timeout it polls.
func flock(f *os.File, timeout time.Duration) error {
	fd := int(f.Fd())
	if timeout <= 0 {
		for {
			err := syscall.Flock(fd, syscall.LOCK_EX)
			if !errors.Is(err, syscall.EINTR) {
				return err
			}
		}
	}
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("held by another writer for more than %v", timeout)
		}
		time.Sleep(wait)
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// owner is the uid that owns fi's file.
func owner(fi fs.FileInfo) (uid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
