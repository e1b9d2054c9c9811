package config_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/safefile"
)

func copySeed(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "seed", name))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "accounts.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEditAccounts_keepsLayoutCommentsAndOrder(t *testing.T) {
	t.Parallel()
	p := copySeed(t, "example_accounts_with_overrides.json")
	err := config.EditAccounts(p, "", func(f *config.AccountsFile) error {
		i := f.Find("SENDER2@domain.com")
		if i < 0 {
			t.Fatal("Find failed")
		}
		return f.Set(i, map[string]any{"vmta_name": "vmta-renamed", "disabled": true})
	})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	s := string(b)
	for _, want := range []string{`"_comment": "Accounts configuration with optional per-account overrides"`, `"_version": "2.0"`,
		`"vmta_name": "vmta-renamed"`, `"disabled": true`, `"_comment": "This account overrides connection pool settings"`} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %s", want)
		}
	}
	// Key order kept: account_id still before email before ip_address.
	i := strings.Index(s, `"account_id": "2"`)
	if i < 0 || !(strings.Index(s[i:], `"email"`) < strings.Index(s[i:], `"ip_address"`)) {
		t.Errorf("key order changed:\n%s", s)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
	snap, _, err := config.Load(config.LoadOptions{AccountsPath: p, SearchDirs: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range snap.Accounts {
		if a.ID == "2" && (!a.Disabled || a.VMTAName != "vmta-renamed") {
			t.Errorf("edit not loaded: %+v", a)
		}
	}
}

func TestEditAccounts_invalidResultChangesNothing(t *testing.T) {
	t.Parallel()
	p := copySeed(t, "example_accounts.json")
	before, _ := os.ReadFile(p)
	err := config.EditAccounts(p, "", func(f *config.AccountsFile) error {
		return f.Set(0, map[string]any{"oauth_token_url": "http://evil.example.com/token"})
	})
	if err == nil || !strings.Contains(err.Error(), "oauth_token_url") {
		t.Fatalf("invalid edit accepted: %v", err)
	}
	after, _ := os.ReadFile(p)
	if string(before) != string(after) {
		t.Fatal("file changed by a rejected edit")
	}
	// A file that no longer parses is never written over.
	if err := os.WriteFile(p, []byte("{broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := config.EditAccounts(p, "", func(*config.AccountsFile) error { return nil }); err == nil {
		t.Fatal("wrote over an unparsable file")
	}
}

func TestEditAccounts_concurrentEditsAllLand(t *testing.T) {
	t.Parallel()
	p := copySeed(t, "example_accounts.json")
	var wg sync.WaitGroup
	const n = 20
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := config.EditAccounts(p, "", func(f *config.AccountsFile) error {
				keys := []string{"account_id", "email", "provider", "client_id", "client_secret", "refresh_token"}
				return f.Add(keys, map[string]any{
					"account_id": fmt.Sprintf("c%d", i), "email": fmt.Sprintf("c%d@example.com", i), "provider": "gmail",
					"client_id": "id", "client_secret": "s", "refresh_token": "r",
				})
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	f, err := config.ReadAccountsFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if f.Len() != 4+n {
		t.Fatalf("%d accounts, want %d: edits were lost", f.Len(), 4+n)
	}
}

// TestEditAccounts_errorsNameTheRealFile: the loader checks an edit in a
// temporary file, but its errors must name accounts.json.
func TestEditAccounts_errorsNameTheRealFile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		fields map[string]any
		want   string
	}{
		{name: "bad ip_address", fields: map[string]any{"ip_address": "999.1.1.1"}, want: `field "ip_address"`},
		{name: "token URL not https", fields: map[string]any{"oauth_token_url": "http://evil.example.com/token"}, want: `field "oauth_token_url"`},
		{name: "email removed", fields: map[string]any{"email": nil}, want: `"email"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := copySeed(t, "example_accounts.json")
			err := config.EditAccounts(p, "", func(f *config.AccountsFile) error { return f.Set(0, tc.fields) })
			if err == nil {
				t.Fatal("invalid edit accepted")
			}
			msg := err.Error()
			if !strings.Contains(msg, p+": ") || !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not name %s and %s", msg, p, tc.want)
			}
			if strings.Contains(msg, ".tmp-") {
				t.Errorf("error names the temporary file: %q", msg)
			}
			var fe *config.FieldError
			if !errors.As(err, &fe) || fe.File != p {
				t.Errorf("FieldError.File = %v, want %s", fe, p)
			}
		})
	}
}

// TestAccountsFile_Merge: re-adding an account changes the fields given
// and keeps the others (password, disabled, overrides, comments) in place.
func TestAccountsFile_Merge(t *testing.T) {
	t.Parallel()
	keys := []string{"account_id", "email", "provider", "client_id", "client_secret", "refresh_token", "ip_address", "vmta_name", "smtp_password"}
	for _, tc := range []struct {
		name   string
		fields map[string]any
		want   []string // substrings of the record afterwards
		gone   []string // substrings it must no longer hold
	}{
		{name: "named fields change, others stay",
			fields: map[string]any{"account_id": "2", "email": "sender2@domain.com", "provider": "gmail",
				"client_id": "new-id", "client_secret": "new-secret", "refresh_token": "new-token"},
			want: []string{`"client_id": "new-id"`, `"refresh_token": "new-token"`, `"ip_address": "37.27.3.137"`,
				`"smtp_password": "plain-pw-keep"`, `"disabled": true`, `"max_connections_per_account": 60`,
				`"messages_per_hour": 15000`, `"_comment": "This account overrides connection pool settings"`},
			gone: []string{`"your-gmail-refresh-token"`}},
		{name: "a new field is added",
			fields: map[string]any{"oauth_token_url": "https://oauth2.googleapis.com/token"},
			want:   []string{`"oauth_token_url": "https://oauth2.googleapis.com/token"`, `"disabled": true`, `"smtp_password"`}},
		{name: "nil keeps the old value",
			fields: map[string]any{"ip_address": nil, "smtp_password": nil},
			want:   []string{`"ip_address": "37.27.3.137"`, `"smtp_password": "plain-pw-keep"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := copySeed(t, "example_accounts_with_overrides.json")
			err := config.EditAccounts(p, "", func(f *config.AccountsFile) error {
				i := f.Find("sender2@domain.com")
				if err := f.Set(i, map[string]any{"smtp_password": "plain-pw-keep", "disabled": true}); err != nil {
					return err
				}
				return f.Merge(i, keys, tc.fields)
			})
			if err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(p)
			s := string(b)
			start := strings.Index(s, `"account_id": "2"`)
			end := strings.Index(s, `"account_id": "3"`)
			if start < 0 || end < start {
				t.Fatalf("record 2 not found:\n%s", s)
			}
			rec := s[start:end]
			checkText(t, rec, tc.want, tc.gone)
			// Key order kept: email before ip_address before the overrides.
			if !(strings.Index(rec, `"email"`) < strings.Index(rec, `"ip_address"`) &&
				strings.Index(rec, `"ip_address"`) < strings.Index(rec, `"connection_settings"`)) {
				t.Errorf("key order changed:\n%s", rec)
			}
		})
	}
}

// TestEditAccounts_throughSymlink: an accounts.json that is a symlink (the
// operator keeps the file elsewhere, /srv/conf, say) is edited where it
// lives and stays a symlink, when only we can write the file it points at;
// otherwise the edit is refused and nothing changes. Before, the rename
// replaced the link with a plain file and left the real one stale.
func TestEditAccounts_throughSymlink(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, link, target string)
		refused string // "" when the edit must go through
	}{
		{name: "to a file only we can write"},
		{name: "to a group-writable file", refused: "writable by others",
			setup: func(t *testing.T, _, target string) { chmod(t, target, 0o660) }},
		{name: "to a world-writable file", refused: "writable by others",
			setup: func(t *testing.T, _, target string) { chmod(t, target, 0o606) }},
		{name: "to a file of another user", refused: "owned by uid 65534",
			setup: func(t *testing.T, _, target string) { chown(t, target, false) }},
		{name: "made by another user", refused: "owned by uid 65534",
			setup: func(t *testing.T, link, _ string) { chown(t, link, true) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			target := copySeed(t, "example_accounts.json")
			link := filepath.Join(t.TempDir(), "accounts.json")
			symlink(t, target, link)
			if tc.setup != nil {
				tc.setup(t, link, target)
			}
			before, _ := os.ReadFile(target)
			err := config.EditAccounts(link, "", func(f *config.AccountsFile) error {
				return f.Set(0, map[string]any{"vmta_name": "vmta-through-link"})
			})
			if fi, lerr := os.Lstat(link); lerr != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Fatalf("the link was replaced by a plain file (%v)", lerr)
			}
			after, _ := os.ReadFile(target)
			if tc.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tc.refused) || !strings.Contains(err.Error(), link) {
					t.Errorf("error %v, want a refusal naming %s and saying %q", err, link, tc.refused)
				}
				if string(after) != string(before) {
					t.Error("the target changed")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(after), "vmta-through-link") {
				t.Error("the edit did not reach the link's target")
			}
			if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o600 {
				t.Errorf("target mode %04o, want 0600", fi.Mode().Perm())
			}
		})
	}
}

// TestEditAccounts_throughSymlinkKeepsRelativeKeyPaths: a key file path
// relative to accounts.json starts from the directory of the link, where
// the proxy loads it from, when the edit through the link is validated.
func TestEditAccounts_throughSymlinkKeepsRelativeKeyPaths(t *testing.T) {
	t.Parallel()
	linkDir := writeDir(t, map[string]string{"sa.json": serviceAccountJSON(t, rsaKey())})
	target := filepath.Join(writeDir(t, map[string]string{"accounts.json": accountsJSON(t, dwdRecord("d", "d@example.com"))}), "accounts.json")
	link := filepath.Join(linkDir, "accounts.json")
	symlink(t, target, link)
	err := config.EditAccounts(link, "", func(f *config.AccountsFile) error {
		return f.Set(0, map[string]any{"vmta_name": "vmta-d"})
	})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); !strings.Contains(string(b), "vmta-d") {
		t.Error("the edit did not reach the link's target")
	}
}

// TestEditAccounts_lockFileNotFollowed: the lock file next to accounts.json
// (and budgets.json, written by safefile.Replace) is opened without following a symlink and must be a
// regular file. Before, a planted accounts.json.lock -> /etc/nologin made a
// proxy running as root create /etc/nologin.
func TestEditAccounts_lockFileNotFollowed(t *testing.T) {
	t.Parallel()
	writers := map[string]func(path string) error{
		"EditAccounts": func(p string) error {
			return config.EditAccounts(p, "", func(*config.AccountsFile) error { return nil })
		},
		"safefile.Replace": func(p string) error { return safefile.Replace(p, []byte("[]\n")) },
	}
	for wname, write := range writers {
		for _, tc := range []struct {
			name string
			lock func(t *testing.T, lock, victim string)
			want string
		}{
			{name: "symlink to a missing file", want: "symlink",
				lock: func(t *testing.T, lock, victim string) { symlink(t, victim, lock) }},
			{name: "symlink to a file", want: "symlink", lock: func(t *testing.T, lock, victim string) {
				writeFile(t, victim, "keep")
				symlink(t, victim, lock)
			}},
			{name: "a FIFO", want: "not a regular file", lock: func(t *testing.T, lock, _ string) {
				if err := syscall.Mkfifo(lock, 0o600); err != nil {
					t.Skip(err)
				}
			}},
		} {
			t.Run(wname+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				p := copySeed(t, "example_accounts.json")
				before, _ := os.ReadFile(p)
				victim := filepath.Join(t.TempDir(), "victim")
				tc.lock(t, p+".lock", victim)
				victimBefore, _ := os.ReadFile(victim)
				err := write(p)
				if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p+".lock") {
					t.Errorf("error %v, want a refusal naming %s.lock and saying %q", err, p, tc.want)
				}
				if after, _ := os.ReadFile(p); string(after) != string(before) {
					t.Error("the file changed")
				}
				if after, err := os.ReadFile(victim); string(after) != string(victimBefore) || (victimBefore == nil && err == nil) {
					t.Errorf("the link's target was created or changed: %q", after)
				}
			})
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// chown gives path (the link itself with link) to uid 65534 (nobody);
// only root can, so the test is skipped for anyone else.
func chown(t *testing.T, path string, link bool) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file to another user")
	}
	chownf := os.Chown
	if link {
		chownf = os.Lchown
	}
	if err := chownf(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
}
