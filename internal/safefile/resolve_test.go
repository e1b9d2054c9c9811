package safefile_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/safefile"
)

func TestResolve(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// setup builds the tree under dir and returns the path to resolve
		// and the file it must resolve to ("" when refused).
		setup func(t *testing.T, dir string) (path, want string)
		err   error // wrapped by a refusal
		msg   string
	}{
		{name: "a plain file is itself", setup: func(t *testing.T, dir string) (string, string) {
			p := write(t, dir, "accounts.json", 0o600)
			return p, p
		}},
		{name: "a missing file is itself", setup: func(t *testing.T, dir string) (string, string) {
			p := filepath.Join(dir, "accounts.json")
			return p, p
		}},
		{name: "a relative link", setup: func(t *testing.T, dir string) (string, string) {
			target := write(t, dir, "srv/accounts.json", 0o600)
			return link(t, "../srv/accounts.json", filepath.Join(dir, "etc/accounts.json")), target
		}},
		{name: "a chain of links", setup: func(t *testing.T, dir string) (string, string) {
			target := write(t, dir, "srv/v2/accounts.json", 0o600)
			mid := link(t, target, filepath.Join(dir, "srv/current.json"))
			return link(t, mid, filepath.Join(dir, "etc/accounts.json")), target
		}},
		{name: "a link to a group-writable file", err: safefile.ErrUnsafeLink, msg: "writable by others (mode 0660",
			setup: func(t *testing.T, dir string) (string, string) {
				target := write(t, dir, "srv/accounts.json", 0o660)
				return link(t, target, filepath.Join(dir, "accounts.json")), ""
			}},
		{name: "a link to a directory", err: safefile.ErrUnsafeLink, msg: "not a regular file",
			setup: func(t *testing.T, dir string) (string, string) {
				return link(t, dir, filepath.Join(dir, "accounts.json")), ""
			}},
		{name: "a link to nothing", err: fs.ErrNotExist, msg: "which does not exist",
			setup: func(t *testing.T, dir string) (string, string) {
				return link(t, filepath.Join(dir, "gone.json"), filepath.Join(dir, "accounts.json")), ""
			}},
		{name: "a loop", err: safefile.ErrUnsafeLink, msg: "more than 40 symlinks",
			setup: func(t *testing.T, dir string) (string, string) {
				link(t, "b", filepath.Join(dir, "a"))
				return link(t, "a", filepath.Join(dir, "b")), ""
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path, want := tc.setup(t, t.TempDir())
			got, err := safefile.Resolve(path)
			if tc.err == nil {
				if err != nil || got != want {
					t.Fatalf("Resolve = %q, %v; want %q", got, err, want)
				}
				return
			}
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Resolve = %q, %v; want an error wrapping %v, naming %s and saying %q", got, err, tc.err, path, tc.msg)
			}
		})
	}
}

// write creates dir/name (and its directories) with mode.
func write(t *testing.T, dir, name string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("[]\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return p
}

// link creates the symlink at (and its directories) pointing to target.
func link(t *testing.T, target, at string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(at), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, at); err != nil {
		t.Fatal(err)
	}
	return at
}
