//go:build unix

package safefile_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/safefile"
)

func TestUpdate(t *testing.T) {
	t.Parallel()
	refused := errors.New("refused")
	for _, tc := range []struct {
		name  string
		link  bool // update through a symlink to the file
		build func(target string) ([]byte, error)
		want  string
		err   error
	}{
		{name: "reads and replaces", want: "[] and more", build: func(target string) ([]byte, error) {
			b, err := os.ReadFile(target)
			return append(b[:len(b)-1], " and more"...), err
		}},
		{name: "through a symlink", link: true, want: "new", build: func(string) ([]byte, error) { return []byte("new"), nil }},
		{name: "build refuses", want: "[]\n", err: refused, build: func(string) ([]byte, error) { return nil, refused }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			file := write(t, dir, "srv/accounts.json", 0o600)
			path := file
			if tc.link {
				path = link(t, file, filepath.Join(dir, "etc/accounts.json"))
			}
			if err := safefile.Update(path, tc.build, nil); !errors.Is(err, tc.err) {
				t.Fatalf("Update: %v, want %v", err, tc.err)
			}
			if b, _ := os.ReadFile(file); string(b) != tc.want {
				t.Errorf("content %q, want %q", b, tc.want)
			}
			if fi, err := os.Lstat(path); err != nil || (fi.Mode()&os.ModeSymlink != 0) != tc.link {
				t.Errorf("%s is now %v (%v)", path, fi.Mode(), err)
			}
		})
	}
}

// TestUpdate_serializesWriters: every read-modify-write sees the one
// before it, so no increment is lost.
func TestUpdate_serializesWriters(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "counter")
	if err := safefile.Replace(path, []byte("0")); err != nil {
		t.Fatal(err)
	}
	const writers = 20
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			err := safefile.Update(path, func(target string) ([]byte, error) {
				b, err := os.ReadFile(target)
				if err != nil {
					return nil, err
				}
				n, err := strconv.Atoi(string(b))
				return []byte(strconv.Itoa(n + 1)), err
			}, nil)
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if b, _ := os.ReadFile(path); string(b) != strconv.Itoa(writers) {
		t.Errorf("counter %s, want %d", b, writers)
	}
}
