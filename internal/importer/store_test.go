package importer_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/importer"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// accountsFile writes an accounts file and returns its path.
func accountsFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "accounts.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// records reads back the file's records.
func records(t *testing.T, path string) []map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Accounts []map[string]any `json:"accounts"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		var list []map[string]any
		if err2 := json.Unmarshal(raw, &list); err2 != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return list
	}
	return doc.Accounts
}

func normalised(t *testing.T, email, secretValue string) config.AccountRecord {
	t.Helper()
	r := rec(email, secretValue)
	if err := importer.Normalise(&r, ""); err != nil {
		t.Fatal(err)
	}
	return r
}

const existing = `{"_comment": "kept", "accounts": [
  {"account_id": "old", "email": "old@example.com", "provider": "gmail", "client_id": "c", "client_secret": "s", "refresh_token": "r", "_note": "kept too"}
]}`

func TestFileStore_Add(t *testing.T) {
	t.Parallel()
	badURL := normalised(t, "badurl@example.com", "s")
	badURL.TokenURL = "http://example.com/token" // the loader wants https off loopback
	for _, tc := range []struct {
		name      string
		file      string
		recs      []config.AccountRecord
		overwrite bool
		errs      []string // per record: "" saved, else a substring of the error
		emails    []string // in the file afterwards, in order
	}{
		{name: "appends after what is there",
			file: existing, recs: []config.AccountRecord{normalised(t, "a@example.com", "s"), normalised(t, "b@outlook.com", "")},
			errs: []string{"", ""}, emails: []string{"old@example.com", "a@example.com", "b@outlook.com"}},
		{name: "an existing account is refused",
			file: existing, recs: []config.AccountRecord{normalised(t, "OLD@example.com", "s"), normalised(t, "a@example.com", "s")},
			errs: []string{"already exists", ""}, emails: []string{"old@example.com", "a@example.com"}},
		{name: "overwrite replaces in place",
			file: existing, recs: []config.AccountRecord{normalised(t, "old@example.com", "s2")}, overwrite: true,
			errs: []string{""}, emails: []string{"old@example.com"}},
		{name: "the loader's refusal is blamed on its record only",
			file: existing, recs: []config.AccountRecord{normalised(t, "a@example.com", "s"), badURL, normalised(t, "c@example.com", "s")},
			errs: []string{"", `oauth_token_url: must be https://`, ""}, emails: []string{"old@example.com", "a@example.com", "c@example.com"}},
		{name: "a broken file takes nothing",
			file: `[{"account_id": "x", "email": "x@example.com", "provider": "gmail", "client_id": "c", "refresh_token": "r"}]`,
			recs: []config.AccountRecord{normalised(t, "a@example.com", "s")},
			errs: []string{"not saved"}, emails: []string{"x@example.com"}},
		{name: "a file that does not parse takes nothing",
			file: `[{"account_id": `, recs: []config.AccountRecord{normalised(t, "a@example.com", "s")},
			errs: []string{"refusing to write"}},
		{name: "a bare array stays one", file: "[]\n", recs: []config.AccountRecord{normalised(t, "a@example.com", "s")},
			errs: []string{""}, emails: []string{"a@example.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := accountsFile(t, tc.file)
			before, _ := os.ReadFile(path)
			var progressed int
			errs := importer.FileStore{AccountsPath: path}.Add(context.Background(), tc.recs, tc.overwrite, func(n int) { progressed = n })
			for i, want := range tc.errs {
				switch {
				case want == "" && errs[i] != nil:
					t.Errorf("record %d: %v", i, errs[i])
				case want != "" && (errs[i] == nil || !strings.Contains(errs[i].Error(), want)):
					t.Errorf("record %d: err = %v, want %q", i, errs[i], want)
				}
			}
			if progressed != len(tc.recs) {
				t.Errorf("progress reached %d of %d", progressed, len(tc.recs))
			}
			if tc.emails == nil {
				if after, _ := os.ReadFile(path); string(after) != string(before) {
					t.Errorf("file changed:\n%s", after)
				}
				return
			}
			var got []string
			for _, r := range records(t, path) {
				got = append(got, r["email"].(string))
			}
			if strings.Join(got, ",") != strings.Join(tc.emails, ",") {
				t.Errorf("file has %v, want %v", got, tc.emails)
			}
		})
	}
}

func TestFileStore_keepsLayoutAndComments(t *testing.T) {
	t.Parallel()
	path := accountsFile(t, existing)
	errs := importer.FileStore{AccountsPath: path}.Add(context.Background(), []config.AccountRecord{normalised(t, "a@hotmail.com", "")}, false, nil)
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
	raw, _ := os.ReadFile(path)
	for _, want := range []string{`"_comment": "kept"`, `"_note": "kept too"`,
		`"account_id": "outlook_a_hotmail_com"`, `"vmta_name": "vmta-outlook-a"`, `"oauth_token_url": "` + importer.LiveTokenURL + `"`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("file lacks %s:\n%s", want, raw)
		}
	}
	if strings.Contains(string(raw), `"client_secret": ""`) {
		t.Error("an empty client_secret was written")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
}

// TestImport_reportsEveryLine: parse errors, Normalise errors, duplicates
// inside the file, store refusals and successes each land on their line,
// and no error carries a secret.
func TestImport_reportsEveryLine(t *testing.T) {
	t.Parallel()
	path := accountsFile(t, existing)
	in := strings.Join([]string{
		"a@example.com,,rt-a-SECRETVALUE,cid,cs-a-SECRETVALUE",
		"b@example.com,,rt-b-SECRETVALUE,cid",                            // gmail without a secret
		"A@example.com,,rt-c-SECRETVALUE,cid,cs-c-SECRETVALUE",           // same email as line 1
		"old@example.com,,rt-d-SECRETVALUE,cid,cs-d-SECRETVALUE",         // in the file already
		"d@example.com,,rt-e-SECRETVALUE",                                // too short
		"e@outlook.com,,rt-f-SECRETVALUE,cid,,203.0.113.9",               // personal Microsoft
		"f@example.com,,rt-g-SECRETVALUE,cid,cs-g-SECRETVALUE,999.1.1.1", // bad address
	}, "\n")
	lines, err := importer.Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	res := importer.Import(context.Background(), lines, importer.FileStore{AccountsPath: path}, importer.Options{})
	want := []string{"", "client_secret: required for gmail", "same email as line 1", "already exists", "3 fields", "", "ip_address"}
	if len(res) != len(want) {
		t.Fatalf("%d results", len(res))
	}
	for i, r := range res {
		if r.Line != i+1 {
			t.Errorf("result %d is for line %d", i, r.Line)
		}
		switch {
		case want[i] == "" && r.Err != nil:
			t.Errorf("line %d: %v", r.Line, r.Err)
		case want[i] != "" && (r.Err == nil || !strings.Contains(r.Err.Error(), want[i])):
			t.Errorf("line %d: err = %v, want %q", r.Line, r.Err, want[i])
		}
		if r.Err != nil && strings.Contains(r.Err.Error(), "SECRETVALUE") {
			t.Errorf("line %d: error carries a secret: %v", r.Line, r.Err)
		}
	}
	if n := len(records(t, path)); n != 3 {
		t.Errorf("file has %d accounts, want 3", n)
	}
}

// TestImport_redactsSecretsFromStoreErrors: whatever a store or a check
// says, the record's own secrets are masked.
func TestImport_redactsSecretsFromStoreErrors(t *testing.T) {
	t.Parallel()
	lines := []importer.Line{{N: 1, Record: config.AccountRecord{Email: "a@example.com", ClientID: "c",
		ClientSecret: secret.New("cs-SECRET1"), RefreshToken: secret.New("rt-SECRET2")}}}
	leaky := func(_ context.Context, r *config.AccountRecord) error {
		return errors.New("endpoint said: bad token " + r.RefreshToken.Reveal() + " for " + r.ClientSecret.Reveal())
	}
	res := importer.Import(context.Background(), lines, nil, importer.Options{Check: leaky})
	if msg := res[0].Err.Error(); strings.Contains(msg, "SECRET") || !strings.Contains(msg, "[redacted]") {
		t.Fatalf("error %q", msg)
	}
}

// TestFileStore_overwriteKeepsWhatItDoesNotName: --overwrite changes the
// fields a line gives and keeps the rest of the record: the SMTP
// password, disabled, per-account overrides, and an account_id or
// vmta_name the line leaves to be generated.
func TestFileStore_overwriteKeepsWhatItDoesNotName(t *testing.T) {
	t.Parallel()
	const file = `{"accounts": [
  {"account_id": "legacy-1", "email": "old@example.com", "provider": "gmail", "client_id": "c", "client_secret": "s",
   "refresh_token": "r-old", "ip_address": "203.0.113.5", "vmta_name": "vmta-custom", "smtp_password": "plain-pw-keep",
   "disabled": true, "_note": "kept", "connection_settings": {"max_connections_per_account": 7},
   "rate_limiting": {"messages_per_hour": 123}}
]}`
	for _, tc := range []struct {
		name string
		rec  func() config.AccountRecord
		want map[string]any // fields of the record afterwards
	}{
		{name: "new secrets, the rest kept",
			rec: func() config.AccountRecord {
				r := rec("old@example.com", "s-new")
				r.RefreshToken = secret.New("r-new")
				return r
			},
			want: map[string]any{"account_id": "legacy-1", "vmta_name": "vmta-custom", "client_secret": "s-new",
				"refresh_token": "r-new", "ip_address": "203.0.113.5", "smtp_password": "plain-pw-keep", "disabled": true,
				"_note": "kept", "connection_settings": map[string]any{"max_connections_per_account": float64(7)},
				"rate_limiting": map[string]any{"messages_per_hour": float64(123)}}},
		{name: "named fields change",
			rec: func() config.AccountRecord {
				r := rec("old@example.com", "s")
				r.IPAddress, r.VMTAName, r.AccountID = "203.0.113.9", "vmta-new", "legacy-1"
				return r
			},
			want: map[string]any{"account_id": "legacy-1", "vmta_name": "vmta-new", "ip_address": "203.0.113.9",
				"smtp_password": "plain-pw-keep", "disabled": true,
				"connection_settings": map[string]any{"max_connections_per_account": float64(7)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := accountsFile(t, file)
			r := tc.rec()
			if err := importer.Normalise(&r, ""); err != nil {
				t.Fatal(err)
			}
			errs := importer.FileStore{AccountsPath: path}.Add(context.Background(), []config.AccountRecord{r}, true, nil)
			if errs[0] != nil {
				t.Fatal(errs[0])
			}
			got := records(t, path)
			if len(got) != 1 {
				t.Fatalf("%d records, want 1", len(got))
			}
			for k, want := range tc.want {
				if g, _ := json.Marshal(got[0][k]); string(g) != mustJSON(t, want) {
					t.Errorf("%s = %s, want %s", k, g, mustJSON(t, want))
				}
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
