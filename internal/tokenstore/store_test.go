package tokenstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/tokenstore"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func open(t *testing.T, dir string) *tokenstore.Store {
	t.Helper()
	s, err := tokenstore.Open(tokenstore.Options{Dir: dir})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// openAt opens the store in dir as one process would, with its clock.
func openAt(t *testing.T, dir string, now func() time.Time) *tokenstore.Store {
	t.Helper()
	s, err := tokenstore.Open(tokenstore.Options{Dir: dir, Now: now})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func entry(rt, at string) tokenstore.Entry {
	return tokenstore.Entry{
		Credential:   "v1:abc",
		RefreshToken: secret.New(rt),
		AccessToken:  secret.New(at),
		Expiry:       t0.Add(time.Hour),
		Obtained:     t0,
		LastUsed:     t0.Add(time.Minute),
	}
}

func TestStore_putSyncSurvivesReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir)
	want := entry("M.rotated-1", "EwB.access-1")
	want.State, want.LastError = tokenstore.StateNeedsConsent, "400 invalid_grant: AADSTS700082"
	if err := s.PutSync("ms_1", want); err != nil {
		t.Fatalf("PutSync: %v", err)
	}
	got, ok := open(t, dir).Get("ms_1")
	if !ok {
		t.Fatal("entry lost across reopen")
	}
	if got.RefreshToken.Reveal() != "M.rotated-1" || got.AccessToken.Reveal() != "EwB.access-1" ||
		!got.Expiry.Equal(want.Expiry) || !got.Obtained.Equal(want.Obtained) || !got.LastUsed.Equal(want.LastUsed) ||
		got.State != want.State || got.LastError != want.LastError || got.Credential != want.Credential || got.Updated.IsZero() {
		t.Errorf("reopened entry %+v, want %+v", got, want)
	}
}

func TestStore_putIsBufferedUntilFlush(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir)
	for i := range 1000 {
		s.Put(fmt.Sprintf("acct_%d", i), entry("", fmt.Sprintf("at-%d", i)))
	}
	if _, err := os.Stat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Put wrote the file at once (stat: %v)", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := open(t, dir).Len(); n != 1000 {
		t.Errorf("reopened %d entries, want 1000", n)
	}
}

func TestStore_runFlushesInBackground(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := tokenstore.Open(tokenstore.Options{Dir: dir, FlushInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	s.Put("a", entry("", "at"))
	waitFor(t, func() bool { _, err := os.Stat(s.Path()); return err == nil })
	cancel()
	<-done
	if _, ok := open(t, dir).Get("a"); !ok {
		t.Error("background flush lost the entry")
	}
}

func TestStore_concurrentPutSyncAllDurable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir)
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			if err := s.PutSync(fmt.Sprintf("acct_%d", i), entry(fmt.Sprintf("rt-%d", i), "")); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	r := open(t, dir)
	for i := range 200 {
		if e, ok := r.Get(fmt.Sprintf("acct_%d", i)); !ok || e.RefreshToken.Reveal() != fmt.Sprintf("rt-%d", i) {
			t.Fatalf("acct_%d: %v %v", i, e.RefreshToken.Reveal(), ok)
		}
	}
}

func TestStore_modes(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state")
	s := open(t, dir)
	if err := s.PutSync("a", entry("rt", "at")); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, s.Path(): 0o600, s.Path() + ".lock": 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %04o, want %04o", path, got, want)
		}
	}
	// A file someone made readable is tightened on open.
	if err := os.Chmod(s.Path(), 0o644); err != nil {
		t.Fatal(err)
	}
	open(t, dir)
	if fi, _ := os.Stat(s.Path()); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after reopen %04o, want 0600", fi.Mode().Perm())
	}
}

// TestStore_twoProcessesMerge: two stores on one file (as two processes
// would be) keep each other's entries; for one account the later wins.
func TestStore_twoProcessesMerge(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clock := t0
	now := func() time.Time { return clock }
	a, b := openAt(t, dir, now), openAt(t, dir, now)
	if err := a.PutSync("only_a", entry("rt-a", "")); err != nil {
		t.Fatal(err)
	}
	if err := b.PutSync("only_b", entry("rt-b", "")); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(time.Second)
	if err := b.PutSync("shared", entry("rt-b-newer", "")); err != nil {
		t.Fatal(err)
	}
	e := entry("rt-a-older", "")
	e.Updated = t0
	if err := a.PutSync("shared", e); err != nil {
		t.Fatal(err)
	}
	r := open(t, dir)
	for id, want := range map[string]string{"only_a": "rt-a", "only_b": "rt-b", "shared": "rt-b-newer"} {
		if got, _ := r.Get(id); got.RefreshToken.Reveal() != want {
			t.Errorf("%s = %q, want %q", id, got.RefreshToken.Reveal(), want)
		}
	}
	if got, _ := a.Get("shared"); got.RefreshToken.Reveal() != "rt-b-newer" {
		t.Errorf("writer did not adopt the other process's newer entry: %q", got.RefreshToken.Reveal())
	}
}

func TestStore_unreadableFileRefused(t *testing.T) {
	t.Parallel()
	const planted = "M.PLANTED-refresh-token"
	tests := []struct {
		name    string
		content string
		wantErr string
	}{
		{"truncated", `{"version":1,"accounts":{"a":{"refresh_token":"` + planted, "truncated"},
		{"garbage", "\x00\x01" + planted, "invalid JSON"},
		{"wrong type", `{"version":1,"accounts":{"a":{"refresh_token":["` + planted + `"]}}}`, "must not be"},
		{"token with a newline", `{"version":1,"accounts":{"a":{"refresh_token":"x\n` + planted + `"}}}`, "control characters"},
		{"newer version", `{"version":2,"accounts":{}}`, "unsupported format version"},
		{"trailing data", `{"version":1,"accounts":{}} {"` + planted + `":1}`, "after the JSON"},
		{"empty", ``, "empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, tokenstore.DefaultFileName)
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := tokenstore.Open(tokenstore.Options{Dir: dir})
			var pe *tokenstore.ParseError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Open = %v, want a ParseError naming the file and %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), planted) {
				t.Errorf("error quotes the file's secret: %v", err)
			}
			if b, _ := os.ReadFile(path); string(b) != tc.content {
				t.Error("the unreadable file was changed")
			}
		})
	}
}

func TestStore_newerVersionNeverOverwritten(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir)
	newer := `{"version":2,"accounts":{}}`
	if err := os.WriteFile(s.Path(), []byte(newer), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSync("a", entry("rt", "")); !errors.Is(err, tokenstore.ErrVersion) {
		t.Errorf("PutSync over a newer file = %v, want ErrVersion", err)
	}
	if b, _ := os.ReadFile(s.Path()); string(b) != newer {
		t.Error("a newer version's file was overwritten")
	}
}

func TestStore_staleTempFilesRemoved(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	stale := filepath.Join(dir, "."+tokenstore.DefaultFileName+".tmp-123")
	if err := os.WriteFile(stale, []byte(`{"version":1,"acc`), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "accounts.json")
	if err := os.WriteFile(other, []byte(`[]`), 0o600); err != nil {
		t.Fatal(err)
	}
	open(t, dir)
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Error("stale temporary file left behind")
	}
	if _, err := os.Stat(other); err != nil {
		t.Error("an unrelated file was removed")
	}
}

// TestStore_secretsOnlyInTheFile plants tokens, drives writes, a corrupt
// file and errors, and checks the logs and errors; the file itself, which
// must hold them, is 0600.
func TestStore_secretsOnlyInTheFile(t *testing.T) {
	t.Parallel()
	const rt, at = "M.PLANTED-rotated-refresh", "EwB.PLANTED-access"
	var logs bytes.Buffer
	dir := t.TempDir()
	s, err := tokenstore.Open(tokenstore.Options{Dir: dir, Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	e := entry(rt, at)
	if err := s.PutSync("a", e); err != nil {
		t.Fatal(err)
	}
	// Corrupt the file under the store, then write again: it logs and
	// replaces the file.
	if err := os.WriteFile(s.Path(), []byte(`{"version":1,"accounts":{"a":{"refresh_token":"`+rt), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSync("b", e); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	fmt.Fprintf(&out, "%v %+v %#v\n", e, e, e)
	_, err = tokenstore.Parse([]byte(`{"version":1,"accounts":{"a":{"access_token":1` + at))
	fmt.Fprintf(&out, "%v\n", err)
	out.WriteString(logs.String())
	if !strings.Contains(logs.String(), "corrupt") {
		t.Errorf("corrupt file not logged: %s", logs.String())
	}
	for _, p := range []string{rt, at} {
		if strings.Contains(out.String(), p) {
			t.Errorf("secret %q leaked:\n%s", p, out.String())
		}
	}
	data, err := os.ReadFile(s.Path())
	if err != nil || !bytes.Contains(data, []byte(rt)) {
		t.Fatalf("file lacks the token: %v", err)
	}
	if fi, _ := os.Stat(s.Path()); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", fi.Mode().Perm())
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(time.Millisecond)
	}
}

// Fresh sees what another process wrote since this Store's last write,
// without writing anything itself, and never drops a local change that is
// not on disk yet.
func TestStore_freshSeesAnotherProcess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clock := t0
	now := func() time.Time { return clock }
	a := openAt(t, dir, now)
	if err := a.PutSync("acct", entry("rt-1", "")); err != nil {
		t.Fatal(err)
	}
	a.Put("pending", entry("rt-a-unwritten", ""))
	b := openAt(t, dir, now)
	clock = clock.Add(time.Second)
	if err := b.PutSync("acct", entry("rt-2", "")); err != nil {
		t.Fatal(err)
	}
	if err := b.PutSync("pending", entry("rt-b", "")); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Get("acct"); got.RefreshToken.Reveal() != "rt-1" {
		t.Fatalf("Get read the file: %q (it must stay a memory read)", got.RefreshToken.Reveal())
	}
	for range 2 { // the second call finds the file unchanged
		if got, _ := a.Fresh("acct"); got.RefreshToken.Reveal() != "rt-2" {
			t.Errorf("Fresh = %q, want the other process's rt-2", got.RefreshToken.Reveal())
		}
		if got, _ := a.Fresh("pending"); got.RefreshToken.Reveal() != "rt-a-unwritten" {
			t.Errorf("Fresh replaced a change not yet written: %q", got.RefreshToken.Reveal())
		}
	}
}

// TestStore_symlinkedStateFile: a token-state.json that is a symlink is
// written where it points and stays a symlink, when only we can write the
// file it points at; otherwise Open refuses. Before, the first write
// replaced the link with a plain file.
func TestStore_symlinkedStateFile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		mode    os.FileMode
		refused string // "" when the link is followed
	}{
		{name: "to a file only we can write", mode: 0o600},
		{name: "to a group-writable file", mode: 0o620, refused: "writable by others"},
		{name: "to a world-writable file", mode: 0o602, refused: "writable by others"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			realDir := t.TempDir()
			if err := open(t, realDir).PutSync("before", entry("rt-0", "at-0")); err != nil {
				t.Fatal(err)
			}
			target := filepath.Join(realDir, tokenstore.DefaultFileName)
			if err := os.Chmod(target, tc.mode); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			link := filepath.Join(dir, tokenstore.DefaultFileName)
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			s, err := tokenstore.Open(tokenstore.Options{Dir: dir})
			if tc.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tc.refused) || !strings.Contains(err.Error(), link) {
					t.Errorf("Open: %v, want a refusal naming %s and saying %q", err, link, tc.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := s.PutSync("after", entry("rt-1", "at-1")); err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Fatalf("the link was replaced by a plain file (%v)", err)
			}
			if _, ok := open(t, realDir).Get("after"); !ok {
				t.Error("the write did not reach the link's target")
			}
		})
	}
}

// TestStore_lockFileNotFollowed: token-state.json.lock is opened without
// following a symlink and must be a regular file. Before, a planted
// symlink made the proxy create (or lock) the file it pointed at.
func TestStore_lockFileNotFollowed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		lock func(lock, victim string) error
		want string
	}{
		{name: "symlink to a missing file", want: "symlink",
			lock: func(lock, victim string) error { return os.Symlink(victim, lock) }},
		{name: "a FIFO", want: "not a regular file",
			lock: func(lock, _ string) error { return syscall.Mkfifo(lock, 0o600) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			lock := filepath.Join(dir, tokenstore.DefaultFileName+".lock")
			victim := filepath.Join(t.TempDir(), "victim")
			if err := tc.lock(lock, victim); err != nil {
				t.Fatal(err)
			}
			_, err := tokenstore.Open(tokenstore.Options{Dir: dir, LockTimeout: time.Second})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), lock) {
				t.Errorf("Open: %v, want a refusal naming %s and saying %q", err, lock, tc.want)
			}
			if _, err := os.Stat(victim); !errors.Is(err, os.ErrNotExist) {
				t.Error("the lock file's link target was created")
			}
		})
	}
}
