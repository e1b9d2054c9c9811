//go:build unix

package safefile_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/safefile"
)

func TestLock_refusesWhatIsNotAPlainFile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, lock, victim string)
		err   error
	}{
		{name: "symlink to a missing file", err: safefile.ErrSymlinkLock,
			setup: func(t *testing.T, lock, victim string) { link(t, victim, lock) }},
		{name: "symlink to a file", err: safefile.ErrSymlinkLock, setup: func(t *testing.T, lock, victim string) {
			write(t, filepath.Dir(victim), filepath.Base(victim), 0o600)
			link(t, victim, lock)
		}},
		{name: "FIFO", err: safefile.ErrNotRegular, setup: func(t *testing.T, lock, _ string) {
			if err := syscall.Mkfifo(lock, 0o600); err != nil {
				t.Skip(err)
			}
		}},
		{name: "directory", setup: func(t *testing.T, lock, _ string) {
			if err := os.Mkdir(lock, 0o700); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lock := filepath.Join(t.TempDir(), "accounts.json.lock")
			victim := filepath.Join(t.TempDir(), "victim")
			tc.setup(t, lock, victim)
			before, _ := os.ReadFile(victim)
			unlock, err := safefile.Lock(lock, time.Second)
			if err == nil {
				unlock()
				t.Fatal("locked")
			}
			if tc.err != nil && !errors.Is(err, tc.err) {
				t.Errorf("error %v, want %v", err, tc.err)
			}
			if !strings.Contains(err.Error(), lock) {
				t.Errorf("error %q does not name %s", err, lock)
			}
			if after, _ := os.ReadFile(victim); string(after) != string(before) {
				t.Error("the link's target changed")
			}
			if before == nil {
				if _, err := os.Stat(victim); err == nil {
					t.Error("the link's target was created")
				}
			}
		})
	}
}

func TestLock_excludesAndTimesOut(t *testing.T) {
	t.Parallel()
	lock := filepath.Join(t.TempDir(), "state.json.lock")
	unlock, err := safefile.Lock(lock, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(lock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("lock file %v %v, want mode 0600", fi, err)
	}
	if _, err := safefile.Lock(lock, 20*time.Millisecond); err == nil || !strings.Contains(err.Error(), "held by another writer") {
		t.Errorf("second Lock while held: %v", err)
	}
	unlock()
	unlock2, err := safefile.Lock(lock, time.Second)
	if err != nil {
		t.Fatalf("Lock after unlock: %v", err)
	}
	unlock2()
}
