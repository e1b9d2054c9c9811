package safefile_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/safefile"
)

func TestWriteAtomic(t *testing.T) {
	t.Parallel()
	refused := errors.New("refused by check")
	for _, tc := range []struct {
		name  string
		check func(tmp string) error
		want  string // the file's content afterwards
		err   error
	}{
		{name: "no check", want: "new"},
		{name: "check passes", check: func(tmp string) error {
			if b, err := os.ReadFile(tmp); err != nil || string(b) != "new" {
				return errors.New("check did not see the new content")
			}
			return nil
		}, want: "new"},
		{name: "check refuses", check: func(string) error { return refused }, want: "old", err: refused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			p := write(t, dir, "state.json", 0o644)
			if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := safefile.WriteAtomic(p, []byte("new"), tc.check); !errors.Is(err, tc.err) {
				t.Fatalf("WriteAtomic: %v, want %v", err, tc.err)
			}
			if b, _ := os.ReadFile(p); string(b) != tc.want {
				t.Errorf("content %q, want %q", b, tc.want)
			}
			if fi, _ := os.Stat(p); tc.err == nil && fi.Mode().Perm() != 0o600 {
				t.Errorf("mode %04o, want 0600", fi.Mode().Perm())
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Errorf("temporary files left: %v", ents)
			}
		})
	}
}

func TestRemoveTemps(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := write(t, dir, "token-state.json", 0o600)
	stale := write(t, dir, ".token-state.json.tmp-123", 0o600)
	other := write(t, dir, ".accounts.json.tmp-456", 0o600)
	safefile.RemoveTemps(p)
	for path, want := range map[string]bool{p: true, stale: false, other: true} {
		if _, err := os.Stat(path); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", filepath.Base(path), err == nil, want)
		}
	}
}
