package main

import (
	"strings"
	"testing"
)

func TestSend(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		extra     []string
		code      int
		out       []string // substrings of stdout, in order
		errs      string   // substring of stderr
		delivered []string // recipients of the one delivered message; nil: none delivered
	}{
		{name: "delivered", extra: []string{"--to", "bob@example.net", "--subject", "Hello\r\nBcc: x@y", "--body", "line 1\nline 2\n"},
			out: []string{"account:  alice <alice@example.com> via 127.0.0.1:", "(starttls, XOAUTH2)", "session:  opened and authenticated in",
				"MAIL FROM:<alice@example.com>", "-> 250", "RCPT TO:<bob@example.net>", "-> 250", "DATA", "-> 354", "final reply: 250"},
			delivered: []string{"bob@example.net"}},
		{name: "two recipients, one refused", extra: []string{"--to", "bob@example.net,reject-550@example.net", "--from", "list@example.com"},
			out:       []string{"MAIL FROM:<list@example.com>", "RCPT TO:<bob@example.net>", "-> 250", "RCPT TO:<reject-550@example.net>", "-> 550 5.1.1", "final reply: 250"},
			delivered: []string{"bob@example.net"}},
		{name: "refused after the data", extra: []string{"--to", "faildata-554@example.net"}, code: 1,
			out: []string{"-> 354", "final reply: 554"}, errs: "did not accept the message"},
		{name: "refused before the data", extra: []string{"--to", "reject-550@example.net"}, code: 1,
			out: []string{"-> 550", "DATA"}, errs: "refused the transaction before the message"},
		{name: "unknown account", extra: []string{"--to", "bob@example.net", "--account", "nobody@example.com"}, code: 1, errs: "no such account"},
		{name: "no recipient", code: 1, errs: "--account and --to are required"},
		{name: "bad recipient", extra: []string{"--to", "bob"}, code: 1, errs: `"bob" is not an email address`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newFakeEnv(t, envOptions{})
			code, out, errs := runCmd(t, "", args([]string{"send", "--account", alice}, e.files(), tc.extra)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, tc.code, out, errs)
			}
			at := 0
			for _, w := range tc.out {
				i := strings.Index(out[at:], w)
				if i < 0 {
					t.Fatalf("stdout lacks %q after byte %d:\n%s", w, at, out)
				}
				at += i + len(w)
			}
			if !strings.Contains(errs, tc.errs) {
				t.Errorf("stderr lacks %q:\n%s", tc.errs, errs)
			}
			msgs := e.fp.Messages()
			if tc.delivered == nil {
				if len(msgs) != 0 {
					t.Fatalf("%d messages delivered, want none", len(msgs))
				}
				return
			}
			if len(msgs) != 1 {
				t.Fatalf("%d messages delivered, want 1", len(msgs))
			}
			m := msgs[0]
			if m.AuthUser != alice || strings.Join(m.Rcpts, ",") != strings.Join(tc.delivered, ",") {
				t.Errorf("delivered as %s to %v", m.AuthUser, m.Rcpts)
			}
			data := string(m.Data)
			for _, h := range []string{"From: ", "To: ", "Subject: ", "Date: ", "Message-ID: <", "MIME-Version: 1.0\r\n", "\r\n\r\n"} {
				if !strings.Contains(data, h) {
					t.Errorf("message lacks %q:\n%s", h, data)
				}
			}
			if strings.Contains(data, "\r\nBcc:") {
				t.Errorf("a header was injected through --subject:\n%s", data)
			}
			if l := leaked(out + errs + data); len(l) > 0 {
				t.Errorf("secrets %v", l)
			}
			if st := e.fp.Stats(); st.Logins != 1 || st.TokenRefreshes != 1 {
				t.Errorf("provider saw %d logins and %d token refreshes, want 1 and 1", st.Logins, st.TokenRefreshes)
			}
		})
	}
}
