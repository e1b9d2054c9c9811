package safefile

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// WriteAtomic replaces path with data: a temporary file in the same
// directory (mode 0600) is written and fsynced; check, when not nil, is
// called with its name and its error (returned as it is) stops the write;
// then the file is renamed over path and the directory fsynced, so that the
// rename itself is durable. A crash at any point leaves either the old file
// or the new one at path. The caller holds the lock and has resolved path
// (Resolve): the rename replaces a symlink at path, it does not follow it.
func WriteAtomic(path string, data []byte, check func(tmp string) error) (err error) {
	dir, base := filepath.Split(path)
	tmp, err := os.CreateTemp(dir, tempPrefix(base)+"*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// CreateTemp makes the file 0600; say so explicitly in case its
	// behaviour or the umask ever differs.
	if err := tmp.Chmod(0o600); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if check != nil {
		if err := check(tmp.Name()); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if err := syncDir(dir); err != nil {
		// The new file is in place; only its durability across a power
		// loss is in doubt. Report it all the same.
		return fmt.Errorf("fsync directory: %w", err)
	}
	return nil
}

// RemoveTemps deletes the temporary files that a writer of path which
// crashed left next to it. The caller holds the lock, so no live writer
// owns one.
func RemoveTemps(path string) {
	dir, base := filepath.Split(path)
	matches, _ := filepath.Glob(filepath.Join(dir, tempPrefix(base)+"*"))
	for _, m := range matches {
		// Glob's pattern would also match through a base holding
		// pattern characters; the prefix check does not.
		if strings.HasPrefix(filepath.Base(m), tempPrefix(base)) {
			os.Remove(m)
		}
	}
}

// tempPrefix is the name prefix of a file's temporary files: hidden, and
// tied to the file they will replace.
func tempPrefix(base string) string { return "." + base + ".tmp-" }

// syncDir fsyncs a directory, making a rename in it durable.
func syncDir(dir string) error {
	if dir == "" {
		dir = "."
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
