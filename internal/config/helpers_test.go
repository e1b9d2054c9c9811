package config_test

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
)

// testHash is bcrypt("change-me"), cost 10, as in examples/accounts.json.
const testHash = "$2a$10$qTYhZqPydJshlfNjnKiejuc8zfn2hp9W/ybcKht/3JZa1BqTHSI7O"

// writeDir writes files into a fresh directory and returns it.
func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// loadDir loads dir/config.json (when present) and dir/accounts.json,
// searching nowhere else.
func loadDir(t *testing.T, dir string) (*config.Snapshot, []config.Warning, error) {
	t.Helper()
	return config.Load(config.LoadOptions{
		ConfigPath:   filepath.Join(dir, "config.json"),
		AccountsPath: filepath.Join(dir, "accounts.json"),
		SearchDirs:   []string{},
	})
}

// record is one account of an accounts file under construction.
type record map[string]any

// gmailRecord and outlookRecord are minimal valid accounts.
func gmailRecord(id, email string) record {
	return record{
		"account_id": id, "email": email, "provider": "gmail",
		"client_id": "cid.apps.googleusercontent.com", "client_secret": "csecret",
		"refresh_token": "1//refresh",
	}
}

func outlookRecord(id, email string) record {
	return record{
		"account_id": id, "email": email, "provider": "outlook",
		"client_id": "00000000-0000-0000-0000-000000000000", "refresh_token": "M.R3_refresh",
	}
}

// with returns a copy of r with key set to v, or removed when v is nil.
func (r record) with(key string, v any) record {
	c := maps.Clone(r)
	if v == nil {
		delete(c, key)
	} else {
		c[key] = v
	}
	return c
}

// accountsJSON renders records as a top-level array.
func accountsJSON(t *testing.T, recs ...record) string {
	t.Helper()
	b, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// findWarning returns the first warning on field whose message contains
// substr.
func findWarning(ws []config.Warning, field, substr string) (config.Warning, bool) {
	for _, w := range ws {
		if w.Field == field && strings.Contains(w.Message, substr) {
			return w, true
		}
	}
	return config.Warning{}, false
}

// unknownKeys lists the "unknown key" warnings.
func unknownKeys(ws []config.Warning) []string {
	var out []string
	for _, w := range ws {
		if strings.Contains(w.Message, "unknown key") {
			out = append(out, w.String())
		}
	}
	return out
}

func account(t *testing.T, s *config.Snapshot, id string) *config.Account {
	t.Helper()
	for _, a := range s.Accounts {
		if a.ID == id {
			return a
		}
	}
	t.Fatalf("no account %q", id)
	return nil
}

// checkText reports each of want that text lacks and each of gone that it
// holds.
func checkText(t *testing.T, text string, want, gone []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("lacks %s:\n%s", w, text)
		}
	}
	for _, g := range gone {
		if strings.Contains(text, g) {
			t.Errorf("still holds %s:\n%s", g, text)
		}
	}
}
