package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/importer"
)

const sample = "../../internal/importer/testdata/import.csv"

// sampleSecrets are the credentials in the sample file: never printed.
var sampleSecrets = []string{"sample-gmail-refresh", "sample-gmail-secret", "sample-outlook-refresh",
	"sample-hotmail-refresh", "sample-workspace-refresh", "sample-ws-secret", "sample-broken-refresh"}

func TestAccountsImport_sampleFile(t *testing.T) {
	t.Parallel()
	type acct struct{ provider, id, vmta, url, ip string }
	for _, tc := range []struct {
		name  string
		admin bool
		extra []string
		team  acct // the Workspace row, the one --provider changes
	}{
		{name: "files", team: acct{"gmail", "ws_team", "vmta-gmail-team", "", "203.0.113.10"}},
		{name: "files, --provider outlook", extra: []string{"--provider", "outlook"},
			team: acct{"outlook", "ws_team", "vmta-outlook-team", "", "203.0.113.10"}},
		{name: "admin API", admin: true, team: acct{"gmail", "ws_team", "vmta-gmail-team", "", "203.0.113.10"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newFakeEnv(t, envOptions{admin: tc.admin})
			target := e.files()
			if tc.admin {
				target = e.admin()
			}
			code, out, errs := runCmd(t, "", args([]string{"accounts", "import", sample}, target, tc.extra)...)
			if code != 1 {
				t.Fatalf("exit %d (want 1: one bad row)\n%s\n%s", code, out, errs)
			}
			for _, want := range []string{
				"import.csv:11: broken@example.com: 3 fields, want 4 to 6",
				"4 of 5 accounts imported, 1 failed",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if l := leaked(out+errs, sampleSecrets...); len(l) > 0 {
				t.Errorf("output shows secrets %v:\n%s\n%s", l, out, errs)
			}
			want := map[string]acct{
				alice:                 {"gmail", "alice", "", "", ""},
				"sales@gmail.com":     {"gmail", "gmail_sales_gmail_com", "vmta-gmail-sales", "", ""},
				"news@outlook.com":    {"outlook", "outlook_news", "vmta-outlook-news", importer.LiveTokenURL, ""},
				"promo@hotmail.co.uk": {"outlook", "outlook_promo_hotmail_co_uk", "vmta-outlook-promo", importer.LiveTokenURL, "203.0.113.11"},
				"team@example.com":    tc.team,
			}
			recs := e.records(t)
			if len(recs) != len(want) {
				t.Fatalf("accounts.json has %d accounts, want %d", len(recs), len(want))
			}
			for _, r := range recs {
				s := func(k string) string { v, _ := r[k].(string); return v }
				got := acct{s("provider"), s("account_id"), s("vmta_name"), s("oauth_token_url"), s("ip_address")}
				if w := want[s("email")]; got != w {
					t.Errorf("%s: got %+v, want %+v", s("email"), got, w)
				}
			}
			if r := recs[2]; r["client_secret"] != nil || r["refresh_token"] != "M.C5-sample-outlook-refresh" {
				t.Errorf("outlook public client: %v", r["client_secret"])
			}

			// Again: every row exists now.
			code, out, _ = runCmd(t, "", args([]string{"accounts", "import", sample}, target, tc.extra)...)
			if code != 1 || !strings.Contains(out, "0 of 5 accounts imported") || strings.Count(out, "already exists") != 4 {
				t.Errorf("second import: exit %d\n%s", code, out)
			}
			code, out, _ = runCmd(t, "", args([]string{"accounts", "import", "--overwrite", sample}, target, tc.extra)...)
			if code != 1 || !strings.Contains(out, "4 of 5 accounts imported") {
				t.Errorf("--overwrite: exit %d\n%s", code, out)
			}
		})
	}
}

func TestAccountsImport_createsMissingFileAndReadsStdin(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "fresh-accounts.json")
	cfg := filepath.Join(dir, "config.json")
	writeFile(t, cfg, "{}")
	in := "email,account_id,refresh_token,client_id\nnew@gmail.com,,1//rt-SECRET,cid,cs-SECRET\n"
	code, out, errs := runCmd(t, in, "accounts", "import", "-", "--config", cfg, "--accounts", path)
	if code != 0 || !strings.Contains(out, "1 of 1 accounts imported") || !strings.Contains(errs, "created "+path) {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%v %v", fi, err)
	}
	if code, out, errs := runCmd(t, "", "check-config", "--config", cfg, "--accounts", path); code != 0 {
		t.Fatalf("the written file does not load: %s %s", out, errs)
	}
}

// TestAccounts_listAddRemove runs the same steps on the files and through
// a running proxy's admin API.
func TestAccounts_listAddRemove(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"files", "admin API"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e := newFakeEnv(t, envOptions{admin: mode == "admin API"})
			target := e.files()
			if mode == "admin API" {
				target = e.admin()
			}
			e.fp.AddAccount(fakeprovider.Account{Email: "bob@example.com", ClientID: "cid", ClientSecret: clientSec, RefreshToken: "1//rt-bob-SECRET"})
			csFile := secretFile(t, e.dir, "client-secret", clientSec+"\n")
			addBob := []string{"accounts", "add", "--email", "bob@example.com", "--client-id", "cid",
				"--client-secret-file", csFile, "--refresh-token", "-", "--ip-address", "203.0.113.7", "--verify"}
			var all strings.Builder
			for _, step := range []struct {
				name  string
				stdin string
				args  []string
				code  int
				out   []string // substrings of stdout
			}{
				{name: "list", args: []string{"accounts", "list"}, out: []string{"EMAIL", alice, "alice", "gmail"}},
				{name: "add bob, refresh token from stdin, verified", stdin: "1//rt-bob-SECRET\n", args: addBob,
					out: []string{"added bob@example.com"}},
				{name: "add bob again", stdin: "1//rt-bob-SECRET\n", args: addBob, code: 1},
				{name: "add bob with --overwrite", stdin: "1//rt-bob-SECRET\n", args: append(addBob[:len(addBob):len(addBob)], "--overwrite"),
					out: []string{"added bob@example.com"}},
				{name: "add with a refresh token the provider refuses", stdin: "1//rt-wrong-SECRET\n",
					args: []string{"accounts", "add", "--email", "carol@example.com", "--client-id", "cid",
						"--client-secret-file", csFile, "--refresh-token", "-", "--verify"}, code: 1},
				{name: "list --json", args: []string{"accounts", "list", "--json"},
					out: []string{`"email": "bob@example.com"`, `"account_id": "gmail_bob_example_com"`, `"vmta_name": "vmta-gmail-bob"`, `"ip_address": "203.0.113.7"`}},
				{name: "remove bob and an unknown", args: []string{"accounts", "remove", "bob@example.com", "nobody@example.com"}, code: 1,
					out: []string{"removed bob@example.com", "nobody@example.com: "}},
				{name: "remove by account_id", args: []string{"accounts", "remove", "alice"}, out: []string{"removed alice"}},
				{name: "list is empty", args: []string{"accounts", "list", "--json"}, out: []string{"[]"}},
			} {
				code, out, errs := runCmd(t, step.stdin, append(step.args, target...)...)
				all.WriteString(out + errs)
				if code != step.code {
					t.Fatalf("%s: exit %d, want %d\n%s\n%s", step.name, code, step.code, out, errs)
				}
				for _, w := range step.out {
					if !strings.Contains(out, w) {
						t.Errorf("%s: output lacks %q:\n%s", step.name, w, out)
					}
				}
			}
			if l := leaked(all.String(), "rt-bob", "rt-wrong"); len(l) > 0 {
				t.Errorf("output shows secrets %v:\n%s", l, all.String())
			}
			if got := e.emails(t); len(got) != 0 {
				t.Errorf("accounts.json still has %v", got)
			}
		})
	}
}

// TestAccountsImport_adminBatchesAndVerify: more than one batch of 100
// through the admin API, and --verify done by the proxy: the refused
// account is reported on its line, the others are added (206).
func TestAccountsImport_adminBatchesAndVerify(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t, envOptions{admin: true})
	var csv strings.Builder
	for i := range 150 {
		fmt.Fprintf(&csv, "user%03d@example.com,,1//rt-%03d-SECRET,cid,%s\n", i, i, clientSec)
	}
	path := filepath.Join(e.dir, "many.csv")
	writeFile(t, path, csv.String())
	code, out, errs := runCmd(t, "", args([]string{"accounts", "import", path}, e.admin())...)
	if code != 0 || !strings.Contains(out, "150 of 150 accounts imported") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	// Not a terminal: plain progress lines, per batch.
	if !strings.Contains(errs, "saving: 100/150 (66%)") || !strings.Contains(errs, "saving: 150/150 (100%)") {
		t.Errorf("progress:\n%s", errs)
	}
	if n := len(e.emails(t)); n != 151 {
		t.Errorf("accounts.json has %d accounts, want 151", n)
	}

	var lines []string
	for i := range 7 {
		email := fmt.Sprintf("v%d@example.com", i)
		rt := fmt.Sprintf("1//rt-v%d-SECRET", i)
		if i != 3 {
			e.fp.AddAccount(fakeprovider.Account{Email: email, ClientID: "cid", ClientSecret: clientSec, RefreshToken: rt})
		}
		lines = append(lines, fmt.Sprintf("%s,,%s,cid,%s", email, rt, clientSec))
	}
	writeFile(t, path, strings.Join(lines, "\n"))
	code, out, errs = runCmd(t, "", args([]string{"accounts", "import", "--verify", path}, e.admin())...)
	if code != 1 || !strings.Contains(out, "many.csv:4: v3@example.com: verification failed") || !strings.Contains(out, "6 of 7 accounts imported") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	if l := leaked(out + errs); len(l) > 0 {
		t.Errorf("output shows secrets %v", l)
	}
}

func TestAccounts_adminErrors(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t, envOptions{admin: true})
	wrong := filepath.Join(e.dir, "wrong-token")
	writeFile(t, wrong, "not-the-token")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"wrong token", []string{"accounts", "list", "--admin-url", e.adminURL, "--admin-token-file", wrong}, "401 missing or wrong bearer token"},
		{"no token", []string{"accounts", "list", "--admin-url", e.adminURL}, "no admin token"},
		{"not a URL", []string{"accounts", "list", "--admin-url", "127.0.0.1:9090", "--admin-token-file", wrong}, "want http://HOST:PORT"},
		{"import to a proxy that is not there", []string{"accounts", "import", sample, "--admin-url", "http://127.0.0.1:1", "--admin-token-file", wrong},
			"connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, out, errs := runCmd(t, "", tc.args...)
			if code == 0 || !strings.Contains(out+errs, tc.want) {
				t.Fatalf("exit %d, want an error with %q\n%s\n%s", code, tc.want, out, errs)
			}
		})
	}
}

func TestAccounts_usage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"accounts"}, 1},
		{[]string{"accounts", "help"}, 0},
		{[]string{"accounts", "frob"}, 1},
		{[]string{"accounts", "import", "-h"}, 0},
		{[]string{"accounts", "remove"}, 1},
	} {
		code, out, errs := runCmd(t, "", tc.args...)
		if code != tc.code || !strings.Contains(out+errs, "accounts") {
			t.Errorf("%v: exit %d, want %d\n%s\n%s", tc.args, code, tc.code, out, errs)
		}
	}
}
