//go:build interop

package interop

// Scenario 1: a real upstream with real token checks. Postfix smtpd asks
// Dovecot (passdb oauth2), Dovecot asks the fosite issuer (RFC 7662) about
// every token the proxy presents; Dovecot's submission service is a second
// upstream that refuses AUTH lines over 1,024 bytes.

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// shortPool retires upstream sessions quickly, so that a run opens many
// and each new one needs a valid token.
var shortPool = map[string]any{
	"connection_max_age_seconds":      2,
	"connection_idle_timeout_seconds": 1,
	"max_connections_per_account":     3,
}

func TestUpstream_messagesArriveByteIdentical(t *testing.T) {
	p := getPeers(t)
	p.dumpOnFailure(t)
	cases := []struct {
		name     string
		endpoint string
		tls      string
		mech     string
		long     bool
		dovecot  bool // the endpoint is Dovecot submission, not Postfix
	}{
		{"postfix-starttls-xoauth2", p.upStartTLS, "starttls", "xoauth2", false, false},
		{"postfix-tls-xoauth2", p.upTLS, "tls", "xoauth2", false, false},
		{"postfix-starttls-oauthbearer", p.upStartTLS, "starttls", "oauthbearer", false, false},
		{"postfix-tls-oauthbearer", p.upTLS, "tls", "oauthbearer", false, false},
		{"postfix-tls-xoauth2-long-token", p.upTLS, "tls", "xoauth2", true, false},
		{"submission-starttls-xoauth2-long-token", p.subStartTLS, "starttls", "xoauth2", true, true},
		{"submission-tls-xoauth2-long-token", p.subTLS, "tls", "xoauth2", true, true},
		{"submission-starttls-oauthbearer-long-token", p.subStartTLS, "starttls", "oauthbearer", true, true},
		{"submission-tls-oauthbearer-long-token", p.subTLS, "tls", "oauthbearer", true, true},
	}
	var accts []*account
	for i, c := range cases {
		o := acctOpts{endpoint: c.endpoint, tls: c.tls, mech: c.mech}
		if c.long {
			o.tokenBytes = 1500 // base64 SASL response ~2,100 bytes: AUTH without initial response
		}
		accts = append(accts, p.newAccount(t, uniq(fmt.Sprintf("bi%d", i)), o))
	}
	x := p.startProxy(t, "identical", p.proxyConfig(shortPool), accts, 0)
	upLog, dcLog, issLog := markLog(p.path("upstream-postfix.log")), markLog(p.path("dovecot.log")), markLog(p.path("issuer.log"))

	for i, c := range cases {
		a := accts[i]
		t.Run(c.name, func(t *testing.T) {
			box := fmt.Sprintf("identical%d", i)
			marker := uniq("m")
			rcpt := box + "@dest.test"
			msg := testMessage(marker, a.Email, rcpt)
			s := proxySession(t, x, a)
			if code, text := s.send(a.Email, []string{rcpt}, msg); code != 250 {
				t.Fatalf("sending through the proxy: %d %s", code, text)
			}
			s.quit()
			checkIdentical(t, p.findMessage(t, box, marker, 20*time.Second), msg, marker)

			mech := strings.ToUpper(c.mech)
			if c.dovecot {
				if l := linesWith(dcLog.since(), "Login: user=<"+a.Email+">", "method="+mech); len(l) == 0 {
					t.Errorf("dovecot.log has no submission login of %s with method=%s", a.Email, mech)
				}
			} else if l := linesWith(upLog.since(), "sasl_method="+mech, "sasl_username="+a.Email); len(l) == 0 {
				t.Errorf("upstream-postfix.log has no sasl_method=%s, sasl_username=%s", mech, a.Email)
			}
			if c.long && len(linesWith(issLog.since(), "introspect user="+a.Email, "token_bytes=1500 active")) == 0 {
				t.Errorf("issuer.log shows no introspection of a 1,500-byte token of %s", a.Email)
			}
		})
	}

	// A 4 MB message with a leading dot every 100 lines, over a pooled
	// session of the first account.
	t.Run("large-message-4MB", func(t *testing.T) {
		a := accts[0]
		marker := uniq("big")
		box := "large" + marker
		msg := testMessage(marker, a.Email, box+"@dest.test")
		var body strings.Builder
		for i := range 52000 {
			if i%100 == 0 {
				body.WriteString(".")
			}
			fmt.Fprintf(&body, "%07d ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\r\n", i)
		}
		msg = append(msg, body.String()...)
		s := proxySession(t, x, a)
		if code, text := s.send(a.Email, []string{box + "@dest.test"}, msg); code != 250 {
			t.Fatalf("sending %d bytes through the proxy: %d %s", len(msg), code, text)
		}
		s.quit()
		checkIdentical(t, p.findMessage(t, box, marker, 30*time.Second), msg, marker)
	})

	// Control: the submission upstream really refuses the long inline AUTH
	// line that the proxy avoided, so the passes above mean something.
	t.Run("control-submission-refuses-long-inline-auth", func(t *testing.T) {
		s := dialSMTPTLS(t, p.subTLS, p.caFile)
		s.must(250, "EHLO control.interop.test")
		ir := base64.StdEncoding.EncodeToString([]byte("user=x@interop.test\x01auth=Bearer " + strings.Repeat("A", 1500) + "\x01\x01"))
		code, text := s.cmd("AUTH XOAUTH2 %s", ir)
		if code != 500 {
			t.Fatalf("long inline AUTH: got %d %s, want 500 (line too long)", code, text)
		}
		t.Logf("Dovecot submission answered a %d-byte inline AUTH line with %d %s", len(ir)+14, code, text)
	})
}

// Access tokens live 4 s at the issuer and sessions 2 s in the pool: over
// 14 s the proxy has to refresh several times and open new sessions with
// fresh tokens, and every message still gets 250 and arrives once.
func TestUpstream_tokensExpireDuringTheRun(t *testing.T) {
	p := getPeers(t)
	p.dumpOnFailure(t)
	a := p.newAccount(t, uniq("exp"), acctOpts{endpoint: p.upStartTLS})
	b := p.newAccount(t, uniq("expb"), acctOpts{endpoint: p.upTLS, tls: "tls", mech: "oauthbearer"})
	x := p.startProxy(t, "expiry", p.proxyConfig(shortPool), []*account{a, b}, 0)

	const run = 14 * time.Second
	for _, acct := range []*account{a, b} {
		t.Run(acct.tls+"-"+acct.mech, func(t *testing.T) {
			t.Parallel()
			box := "expiry" + acct.ID[len(acct.ID)-8:]
			rcpt := box + "@dest.test"
			sent := 0
			for start := time.Now(); time.Since(start) < run; sent++ {
				s := proxySession(t, x, acct)
				if code, text := s.send(acct.Email, []string{rcpt}, testMessage(uniq("e"), acct.Email, rcpt)); code != 250 {
					t.Errorf("message %d (%.1fs into the run): %d %s", sent, time.Since(start).Seconds(), code, text)
				}
				s.quit()
				time.Sleep(250 * time.Millisecond) // pacing, not waiting for anything
			}
			if !eventually(20*time.Second, func() bool { return p.countMessages(box) == sent }) {
				t.Errorf("%d messages sent, %d in the Maildir", sent, p.countMessages(box))
			}
			st := p.issuerStats(t, acct.Email)
			opened := sessionsOpened(x.log(), acct.ID)
			t.Logf("%s (%s, %s): %d messages, %d token refreshes, %d upstream sessions opened, %d token introspections by Dovecot",
				acct.ID, acct.tls, acct.mech, sent, st["grant_refresh_token_ok"], opened, st["introspect_active"])
			if st["grant_refresh_token_ok"] < 3 {
				t.Errorf("only %d refreshes in %v with 4 s tokens", st["grant_refresh_token_ok"], run)
			}
			if opened < 4 {
				t.Errorf("only %d upstream sessions in %v with a 2 s session age", opened, run)
			}
		})
	}
}

// A token the issuer has invalidated while the proxy still holds it: the
// upstream refuses it, the proxy refreshes and retries AUTH on the same
// connection, and the message goes through.
func TestUpstream_rejectedTokenIsRefreshedAndRetried(t *testing.T) {
	p := getPeers(t)
	p.dumpOnFailure(t)
	for _, c := range []struct{ endpoint, tls, mech string }{
		{p.upStartTLS, "starttls", "xoauth2"},
		// Dovecot's OAUTHBEARER failure challenge is RFC 7628 §3.2.2's
		// {"status":"invalid_token",...}, not Gmail's "401": this case
		// found that the proxy once retried only on the latter.
		{p.upTLS, "tls", "oauthbearer"},
	} {
		t.Run(c.tls+"-"+c.mech, func(t *testing.T) {
			// A one-hour token: the proxy's cache would use it for the whole test.
			a := p.newAccount(t, uniq("retry"), acctOpts{endpoint: c.endpoint, tls: c.tls, mech: c.mech, ttlSeconds: 3600})
			x := p.startProxy(t, "retry-"+c.mech, p.proxyConfig(map[string]any{"max_connections_per_account": 3}), []*account{a}, 0)
			rejectedTokenIsRefreshedAndRetried(t, p, x, a)
		})
	}
}

func rejectedTokenIsRefreshedAndRetried(t *testing.T, p *peers, x *proxy, a *account) {
	box := "retry" + a.ID[len(a.ID)-8:]
	rcpt := box + "@dest.test"
	s := proxySession(t, x, a)
	if code, text := s.send(a.Email, []string{rcpt}, testMessage(uniq("r"), a.Email, rcpt)); code != 250 {
		t.Fatalf("first message: %d %s", code, text)
	}
	before := p.issuerStats(t, a.Email)["grant_refresh_token_ok"]
	up := markLog(p.path("upstream-postfix.log"))
	p.issuerAdmin(t, "/admin/expire-access", map[string]string{"email": a.Email})

	// Hold the pooled session in an open transaction, so that the next
	// message needs a new session, authenticated with the cached token.
	s.must(250, "MAIL FROM:<%s>", a.Email)
	s.must(250, "RCPT TO:<%s>", rcpt)
	s.must(354, "DATA")

	s2 := proxySession(t, x, a)
	marker := uniq("r")
	msg := testMessage(marker, a.Email, rcpt)
	if code, text := s2.send(a.Email, []string{rcpt}, msg); code != 250 {
		t.Fatalf("message on a new session after the token was invalidated: %d %s", code, text)
	}
	s2.quit()
	checkIdentical(t, p.findMessage(t, box, marker, 20*time.Second), msg, marker)

	w := s.tp.DotWriter()
	w.Write(testMessage(uniq("r"), a.Email, rcpt))
	w.Close()
	if code, text := s.read(); code != 250 {
		t.Errorf("held message: %d %s", code, text)
	}
	s.quit()

	after := p.issuerStats(t, a.Email)["grant_refresh_token_ok"]
	if after != before+1 {
		t.Errorf("refreshes: %d before the invalidation, %d after; want exactly one more", before, after)
	}
	// The upstream refused the cached token (Dovecot: "Introspection
	// failed: Provided token is not valid"), then took the fresh one from
	// the same smtpd process, that is, on the same connection.
	mech := strings.ToUpper(a.mech)
	if !eventually(5*time.Second, func() bool { return retriedOnOneConnection(up.since(), mech, a.Email) }) {
		t.Errorf("upstream-postfix.log does not show a refused then an accepted AUTH (%s) of %s on one connection:\n%s", mech, a.Email, up.since())
	}
	if eventually(10*time.Second, func() bool { return p.countMessages(box) == 3 }) {
		t.Logf("3 of 3 messages delivered; %d token refreshes, %d upstream sessions", after, sessionsOpened(x.log(), a.ID))
	} else {
		t.Errorf("%d messages in the Maildir, want 3", p.countMessages(box))
	}
}

// retriedOnOneConnection reports whether the upstream Postfix log has a
// failed AUTH of user followed by a successful one in the same smtpd.
func retriedOnOneConnection(log, mech, user string) bool {
	failed := linesWith(log, "SASL "+mech+" authentication failed", "sasl_username="+user)
	if len(failed) != 1 {
		return false
	}
	_, rest, _ := strings.Cut(failed[0], "postfix/smtpd[")
	pid, _, _ := strings.Cut(rest, "]")
	_, after, _ := strings.Cut(log, failed[0])
	return len(linesWith(after, "postfix/smtpd["+pid+"]", "sasl_method="+mech, "sasl_username="+user)) > 0
}

// A revoked account gets 454 4.7.0 at MAIL once its sessions are gone,
// while another account of the same proxy keeps delivering.
func TestUpstream_revokedAccountFailsCleanlyOthersContinue(t *testing.T) {
	p := getPeers(t)
	p.dumpOnFailure(t)
	victim := p.newAccount(t, uniq("victim"), acctOpts{endpoint: p.upStartTLS})
	other := p.newAccount(t, uniq("other"), acctOpts{endpoint: p.upStartTLS})
	x := p.startProxy(t, "revoke", p.proxyConfig(shortPool), []*account{victim, other}, 0)
	vbox, obox := "victim"+victim.ID[len(victim.ID)-8:], "other"+other.ID[len(other.ID)-8:]

	for _, a := range []*account{victim, other} {
		box := map[*account]string{victim: vbox, other: obox}[a]
		s := proxySession(t, x, a)
		if code, text := s.send(a.Email, []string{box + "@dest.test"}, testMessage(uniq("v"), a.Email, box+"@dest.test")); code != 250 {
			t.Fatalf("%s before the revocation: %d %s", a.ID, code, text)
		}
		s.quit()
	}
	p.issuerAdmin(t, "/admin/revoke", map[string]string{"email": victim.Email})

	// Sessions authenticated before the revocation may still deliver
	// until they retire (2 s); after that, every attempt must get 454.
	var got454 string
	start := time.Now()
	for got454 == "" && time.Since(start) < 20*time.Second {
		s := proxySession(t, x, victim)
		code, text := s.cmd("MAIL FROM:<%s>", victim.Email)
		switch {
		case code == 454 && strings.HasPrefix(text, "4.7.0"):
			got454 = text
			s.must(503, "RCPT TO:<%s@dest.test>", vbox) // no transaction after a refused MAIL
		case code == 250:
			s.must(250, "RCPT TO:<%s@dest.test>", vbox)
			if code, text := s.data(testMessage(uniq("v"), victim.Email, vbox+"@dest.test")); code != 250 {
				t.Errorf("victim on a session opened before the revocation: %d %s", code, text)
			}
		default:
			t.Fatalf("victim after the revocation: MAIL got %d %s; want 454 4.7.0 (or 250 on an old session)", code, text)
		}
		s.quit()
		time.Sleep(200 * time.Millisecond)
	}
	if got454 == "" {
		t.Fatalf("the revoked account never got 454 4.7.0 at MAIL within 20 s")
	}
	t.Logf("revoked account after %.1fs: 454 %s", time.Since(start).Seconds(), got454)

	// The other account is unaffected, and the victim stays refused.
	s := proxySession(t, x, other)
	for i := range 5 {
		marker := uniq("o")
		if code, text := s.send(other.Email, []string{obox + "@dest.test"}, testMessage(marker, other.Email, obox+"@dest.test")); code != 250 {
			t.Errorf("other account, message %d after the revocation: %d %s", i, code, text)
		}
	}
	s.quit()
	s = proxySession(t, x, victim)
	if code, text := s.cmd("MAIL FROM:<%s>", victim.Email); code != 454 {
		t.Errorf("victim again: MAIL got %d %s, want 454", code, text)
	}
	s.quit()
	if !eventually(10*time.Second, func() bool { return p.countMessages(obox) == 6 }) {
		t.Errorf("other account: %d messages in the Maildir, want 6", p.countMessages(obox))
	}
	why := withField(linesWith(x.log(), "invalid_grant"), "account", victim.ID)
	why = append(why, withField(linesWith(x.log(), "token refresh failed"), "account", victim.ID)...)
	if len(why) == 0 {
		t.Errorf("the proxy log does not say why the victim failed (no invalid_grant or token refresh failure)")
	}
}

// After a refresh the issuer has rotated the refresh token and refuses
// the old one (and, seeing it reused, revokes the family). A proxy
// restarted from the same files must therefore have kept the new one: in
// token-state.json in its --state-dir, never in accounts.json. Once after
// a graceful stop (SIGTERM), once after SIGKILL: the rotated token must be
// on disk before the proxy uses the access token that came with it.
func TestUpstream_rotatedRefreshTokenSurvivesRestart(t *testing.T) {
	p := getPeers(t)
	p.dumpOnFailure(t)
	for _, how := range []string{"sigterm", "sigkill"} {
		t.Run(how, func(t *testing.T) {
			a := p.newAccount(t, uniq("rot"), acctOpts{endpoint: p.upStartTLS})
			x := p.startProxy(t, "rotation-"+how, p.proxyConfig(nil), []*account{a}, 0)
			seed, err := os.ReadFile(x.acctPath)
			if err != nil {
				t.Fatal(err)
			}
			box := "rot" + a.ID[len(a.ID)-8:]
			rcpt := box + "@dest.test"
			s := proxySession(t, x, a)
			if code, text := s.send(a.Email, []string{rcpt}, testMessage(uniq("r"), a.Email, rcpt)); code != 250 {
				t.Fatalf("before the restart: %d %s", code, text)
			}
			s.quit()
			before := p.issuerStats(t, a.Email)
			if before["grant_refresh_token_ok"] < 1 {
				t.Fatalf("the proxy made no refresh before the restart")
			}
			if how == "sigkill" {
				x.kill()
			} else {
				x.stop()
			}
			statePath := filepath.Join(x.stateDir, "token-state.json")
			state, err := os.ReadFile(statePath)
			switch {
			case err != nil:
				t.Errorf("after %s: %v", how, err)
			case !strings.Contains(string(state), a.ID):
				t.Errorf("%s has no entry for %s:\n%s", statePath, a.ID, state)
			case strings.Contains(string(state), a.refreshToken):
				t.Errorf("%s holds the seed refresh token, which the issuer has rotated away", statePath)
			}
			if now, _ := os.ReadFile(x.acctPath); string(now) != string(seed) {
				t.Errorf("the proxy rewrote accounts.json; the rotated token belongs in %s", statePath)
			}
			// Kill the access token too, so that the restarted proxy must
			// refresh (it persisted its access token as well).
			p.issuerAdmin(t, "/admin/expire-access", map[string]string{"email": a.Email})
			x.start()
			s = proxySession(t, x, a)
			if code, text := s.send(a.Email, []string{rcpt}, testMessage(uniq("r"), a.Email, rcpt)); code != 250 {
				t.Fatalf("after the restart: %d %s (the rotated refresh token was not kept)", code, text)
			}
			s.quit()
			after := p.issuerStats(t, a.Email)
			if after["grant_refresh_token_ok"] <= before["grant_refresh_token_ok"] || after["grant_refresh_token_refused"] != 0 {
				t.Errorf("refreshes: %d before the restart, %d after, %d refused; want more after and none refused",
					before["grant_refresh_token_ok"], after["grant_refresh_token_ok"], after["grant_refresh_token_refused"])
			}
			if !eventually(10*time.Second, func() bool { return p.countMessages(box) == 2 }) {
				t.Errorf("%d messages in the Maildir, want 2", p.countMessages(box))
			}
			// Control, last (reuse revokes the family): the refresh token in
			// accounts.json is dead, so the restarted proxy cannot have used it.
			x.stop()
			resp, err := http.PostForm(p.issuerURL+"/token", url.Values{
				"grant_type": {"refresh_token"}, "refresh_token": {a.refreshToken},
				"client_id": {a.clientID}, "client_secret": {a.clientSecret},
			})
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 400 || !strings.Contains(string(body), "invalid_grant") {
				t.Errorf("the seed refresh token at the issuer: %s %s; want 400 invalid_grant (rotated away)", resp.Status, body)
			}
		})
	}
}
