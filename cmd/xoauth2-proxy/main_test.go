package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

const seed = "../../internal/config/testdata/seed"

func runCmd(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestCheckConfig_seedFiles(t *testing.T) {
	t.Parallel()
	for _, cfg := range []string{"config.json", "example_config.json"} {
		for _, acc := range []string{"example_accounts.json", "example_accounts_with_overrides.json"} {
			t.Run(cfg+"+"+acc, func(t *testing.T) {
				t.Parallel()
				code, out, errs := runCmd(t, "", "check-config", "--config", filepath.Join(seed, cfg), "--accounts", filepath.Join(seed, acc))
				if code != 0 || !strings.Contains(out, "configuration OK") {
					t.Fatalf("exit %d\n%s\n%s", code, out, errs)
				}
			})
		}
	}
}

func TestCheckConfig_accountsGivenAsConfig(t *testing.T) {
	t.Parallel()
	code, out, errs := runCmd(t, "", "check-config", "--config", filepath.Join(seed, "example_accounts.json"), "--accounts", "/nonexistent/accounts.json")
	if code != 0 || !strings.Contains(out, "accounts") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
}

func TestCheckConfig_brokenFileFails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "accounts.json")
	writeFile(t, bad, `[{"account_id":"a1","email":"a@example.com","provider":"gmail","client_id":"c","client_secret":"s","refresh_token":"r","oauth_token_url":"http://example.com/token"}]`)
	code, out, errs := runCmd(t, "", "check-config", "--config", filepath.Join(dir, "none.json"), "--accounts", bad)
	if code == 0 {
		t.Fatalf("broken file accepted:\n%s", out)
	}
	if !strings.Contains(errs, "accounts.json") || !strings.Contains(errs, "a1") || !strings.Contains(errs, "oauth_token_url") {
		t.Errorf("error does not name file, account and field: %s", errs)
	}
}

func TestHashPassword(t *testing.T) {
	t.Parallel()
	code, out, errs := runCmd(t, "correct horse\n", "hash-password")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	h := strings.TrimSpace(out)
	if err := bcrypt.CompareHashAndPassword([]byte(h), []byte("correct horse")); err != nil {
		t.Fatalf("hash %q does not verify: %v", h, err)
	}
}

func TestDemo(t *testing.T) {
	t.Parallel()
	code, out, errs := runCmd(t, "", "demo", "-messages", "200", "-accounts", "3", "-connections", "3")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"accepted by proxy (250):        200", "delivered at fake provider:     200", "swaks --server"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestUnknownCommand(t *testing.T) {
	t.Parallel()
	if code, _, _ := runCmd(t, "", "frobnicate"); code != 2 {
		t.Fatalf("exit %d", code)
	}
	if code, out, _ := runCmd(t, "", "version"); code != 0 || !strings.HasPrefix(out, "xoauth2-proxy ") {
		t.Fatalf("version: %d %q", code, out)
	}
}
