package main

import (
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
)

func TestToken(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		account   string
		show      bool
		revoke    bool
		rotate    bool
		code      int
		out       []string // substrings of stdout
		errs      string   // substring of stderr
		showToken bool     // the access token is printed
	}{
		{name: "by email", account: alice,
			out: []string{"account:      alice <alice@example.com> (gmail)", "request:      ok", "state:        ok", "expires:", "(in ", "not shown (--show prints it)"}},
		{name: "by account_id, --show", account: "alice", show: true,
			out: []string{"state:        ok", "access token: "}, showToken: true},
		{name: "rotating provider", account: alice, rotate: true, out: []string{"state:        ok"}},
		{name: "revoked credential", account: alice, revoke: true, code: 1,
			out: []string{"request:      failed", "state:        needs_consent", "last error:"}, errs: "invalid_grant"},
		{name: "revoked, --show prints nothing", account: alice, revoke: true, show: true, code: 1,
			out: []string{"state:        needs_consent"}},
		{name: "unknown account", account: "nobody@example.com", code: 1, errs: "no such account"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newFakeEnv(t, envOptions{provider: fakeprovider.Options{RotateRefreshTokens: tc.rotate}})
			if tc.revoke {
				e.fp.Revoke(alice)
			}
			a := args([]string{"token", tc.account}, e.files())
			if tc.show {
				a = append(a, "--show")
			}
			code, out, errs := runCmd(t, "", a...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, tc.code, out, errs)
			}
			for _, w := range tc.out {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			if !strings.Contains(errs, tc.errs) {
				t.Errorf("stderr lacks %q:\n%s", tc.errs, errs)
			}
			issued := e.fp.IssuedAccessTokens()
			if tc.code == 0 && len(issued) != 1 {
				t.Fatalf("%d tokens issued, want 1", len(issued))
			}
			shown := false
			for _, tok := range issued {
				if strings.Contains(errs, tok) {
					t.Errorf("stderr shows the access token")
				}
				if strings.Contains(out, "access token: "+tok+"\n") {
					shown = true
				} else if strings.Contains(out, tok) {
					t.Errorf("stdout shows the access token elsewhere:\n%s", out)
				}
			}
			if shown != tc.showToken {
				t.Errorf("access token shown: %v, want %v\n%s", shown, tc.showToken, out)
			}
			if l := leaked(out + errs); len(l) > 0 {
				t.Errorf("output shows secrets %v", l)
			}
		})
	}
}
