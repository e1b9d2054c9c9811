package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// addCarol are the flags of an accounts add that needs its secrets given.
func addCarol(e *fakeEnv, more ...string) []string {
	return args([]string{"accounts", "add", "--email", "carol@example.com", "--client-id", "cid"}, more, e.files())
}

// TestAccountsAdd_secretValueRefused: a secret given as a flag's value
// would be readable by every local user in /proc/PID/cmdline and stay in
// the shell's history, so it is refused, without repeating it, with the
// safe ways named; nothing is written.
func TestAccountsAdd_secretValueRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		flag string
		args []string // with a value for flag; the other secrets from stdin or left out
	}{
		{"--client-secret", []string{"--client-secret", "typed-SECRET", "--refresh-token", "-"}},
		{"--refresh-token", []string{"--client-secret", "-", "--refresh-token", "typed-SECRET"}},
		{"--smtp-password", []string{"--provider", "outlook", "--refresh-token", "-", "--smtp-password", "typed-SECRET"}},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			t.Parallel()
			e := newFakeEnv(t, envOptions{})
			before, _ := os.ReadFile(e.accounts)
			code, out, errs := runCmd(t, "stdin-SECRET\n", addCarol(e, tc.args...)...)
			if code == 0 {
				t.Fatalf("accepted %s with a value:\n%s\n%s", tc.flag, out, errs)
			}
			for _, want := range []string{tc.flag + "-file", tc.flag + "-env", tc.flag + " -", "process list", "shell history"} {
				if !strings.Contains(errs, want) {
					t.Errorf("stderr lacks %q:\n%s", want, errs)
				}
			}
			if l := leaked(out+errs, "typed-SECRET", "stdin-SECRET"); len(l) > 0 {
				t.Errorf("output repeats secrets %v:\n%s\n%s", l, out, errs)
			}
			if after, _ := os.ReadFile(e.accounts); string(after) != string(before) {
				t.Error("accounts.json changed")
			}
		})
	}
}

// TestAccountsAdd_secretsFromFileAndStdin: each secret can come from a
// file (--NAME-file) or from stdin (--NAME -), and lands in accounts.json.
func TestAccountsAdd_secretsFromFileAndStdin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		stdin string
		flags func(dir string) []string
	}{
		{name: "all from files", flags: func(dir string) []string {
			return []string{"--client-secret-file", secretFile(t, dir, "cs", "cs-carol-SECRET\n"),
				"--refresh-token-file", secretFile(t, dir, "rt", "1//rt-carol-SECRET\n"),
				"--smtp-password-file", secretFile(t, dir, "pw", "pw-carol-SECRET")}
		}},
		{name: "refresh token from stdin", stdin: "1//rt-carol-SECRET\n", flags: func(dir string) []string {
			return []string{"--client-secret-file", secretFile(t, dir, "cs", "cs-carol-SECRET"), "--refresh-token", "-",
				"--smtp-password-file", secretFile(t, dir, "pw", "pw-carol-SECRET\r\n")}
		}},
		{name: "client secret from stdin", stdin: "cs-carol-SECRET\n", flags: func(dir string) []string {
			return []string{"--client-secret", "-", "--refresh-token-file", secretFile(t, dir, "rt", "1//rt-carol-SECRET"),
				"--smtp-password-file", secretFile(t, dir, "pw", "pw-carol-SECRET")}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newFakeEnv(t, envOptions{})
			code, out, errs := runCmd(t, tc.stdin, addCarol(e, tc.flags(e.dir)...)...)
			if code != 0 {
				t.Fatalf("exit %d\n%s\n%s", code, out, errs)
			}
			checkCarol(t, e)
			if l := leaked(out+errs, "carol-SECRET"); len(l) > 0 {
				t.Errorf("output shows secrets %v:\n%s\n%s", l, out, errs)
			}
		})
	}
}

// TestAccountsAdd_secretsFromEnv: each secret can come from an environment
// variable named by --NAME-env. Not parallel: it sets the environment.
func TestAccountsAdd_secretsFromEnv(t *testing.T) {
	t.Setenv("XOAUTH2_TEST_CS", "cs-carol-SECRET")
	t.Setenv("XOAUTH2_TEST_RT", "1//rt-carol-SECRET")
	t.Setenv("XOAUTH2_TEST_PW", "pw-carol-SECRET")
	e := newFakeEnv(t, envOptions{})
	code, out, errs := runCmd(t, "", addCarol(e, "--client-secret-env", "XOAUTH2_TEST_CS",
		"--refresh-token-env", "XOAUTH2_TEST_RT", "--smtp-password-env", "XOAUTH2_TEST_PW")...)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	checkCarol(t, e)
}

// checkCarol checks carol's secrets in accounts.json.
func checkCarol(t *testing.T, e *fakeEnv) {
	t.Helper()
	for _, r := range e.records(t) {
		if r["email"] != "carol@example.com" {
			continue
		}
		if r["client_secret"] != "cs-carol-SECRET" || r["refresh_token"] != "1//rt-carol-SECRET" || r["smtp_password"] != "pw-carol-SECRET" {
			t.Errorf("carol's record: %v", r)
		}
		return
	}
	t.Error("carol not added")
}

func secretFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	writeFile(t, p, content)
	return p
}

// TestSecretInput_read covers every way a secret flag can be given and
// refused. Errors and warnings must never carry the secret.
func TestSecretInput_read(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := map[string]string{"XO_SECRET": " env-SECRET\n", "XO_EMPTY": ""}
	for _, tc := range []struct {
		name  string
		flags []secretFlag // read in order, sharing one stdin
		stdin string
		want  string // the last flag's secret
		err   string // in the error, "" for none
		warn  string // in stderr
	}{
		{name: "none given", flags: []secretFlag{{}}},
		{name: "file, first line", flags: []secretFlag{{file: secretFile(t, dir, "two-lines", "file-SECRET\r\nsecond line\n")}}, want: "file-SECRET"},
		{name: "file readable by others", flags: []secretFlag{{file: readableFile(t, dir)}}, want: "shared-SECRET", warn: "readable by every user (mode 0644); chmod 600"},
		{name: "empty file", flags: []secretFlag{{file: secretFile(t, dir, "empty", "\n")}}, err: "gave an empty value"},
		{name: "missing file", flags: []secretFlag{{file: filepath.Join(dir, "none")}}, err: "no such file"},
		{name: "env", flags: []secretFlag{{env: "XO_SECRET"}}, want: "env-SECRET"},
		{name: "env unset", flags: []secretFlag{{env: "XO_UNSET"}}, err: "--client-secret-env XO_UNSET gave an empty value"},
		{name: "env empty", flags: []secretFlag{{env: "XO_EMPTY"}}, err: "gave an empty value"},
		{name: "stdin", flags: []secretFlag{{arg: "-"}}, stdin: "stdin-SECRET\nmore\n", want: "stdin-SECRET"},
		{name: "stdin without newline", flags: []secretFlag{{arg: "-"}}, stdin: "stdin-SECRET", want: "stdin-SECRET"},
		{name: "empty stdin", flags: []secretFlag{{arg: "-"}}, err: "stdin gave an empty value"},
		{name: "stdin twice", flags: []secretFlag{{arg: "-"}, {arg: "-"}}, stdin: "stdin-SECRET\n", err: "only one value can be read from stdin"},
		{name: "value", flags: []secretFlag{{arg: "typed-SECRET"}}, err: "takes no value on the command line"},
		{name: "two sources", flags: []secretFlag{{arg: "-", env: "XO_SECRET"}}, err: "give only one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stderr strings.Builder
			in := &secretInput{stdin: strings.NewReader(tc.stdin), stderr: &stderr, getenv: func(k string) string { return env[k] }}
			var got string
			var err error
			for _, f := range tc.flags {
				f.name = "client-secret"
				var s secret.String
				s, err = in.read(&f)
				got = s.Reveal()
				if err != nil {
					break
				}
			}
			if tc.err == "" && (err != nil || got != tc.want) {
				t.Fatalf("read = %q, %v; want %q", got, err, tc.want)
			}
			if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "--client-secret")) {
				t.Fatalf("read error %v, want one naming --client-secret and saying %q", err, tc.err)
			}
			if !strings.Contains(stderr.String(), tc.warn) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.warn)
			}
			if err != nil && strings.Contains(err.Error()+stderr.String(), "SECRET") {
				t.Errorf("error or stderr shows the secret: %v %s", err, stderr.String())
			}
		})
	}
}

func readableFile(t *testing.T, dir string) string {
	t.Helper()
	p := secretFile(t, dir, "shared", "shared-SECRET\n")
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHashPassword_refusesArguments: the argument is likely the password;
// it is refused and not repeated.
func TestHashPassword_refusesArguments(t *testing.T) {
	t.Parallel()
	code, out, errs := runCmd(t, "", "hash-password", "typed-SECRET")
	if code == 0 || !strings.Contains(errs, "never on the command line") || strings.Contains(out+errs, "typed-SECRET") {
		t.Errorf("exit %d\n%s\n%s", code, out, errs)
	}
	if code, _, errs := runCmd(t, "\n", "hash-password"); code == 0 || !strings.Contains(errs, "empty password") {
		t.Errorf("empty password: exit %d %s", code, errs)
	}
}
