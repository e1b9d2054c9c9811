//go:build interop

package interop

// Scenario 2: real clients in front of the proxy: swaks, Python's smtplib
// and Postfix relaying with SASL. The proxy's listener has no TLS yet
// (issue 7), so they all speak plain SMTP on loopback.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// swaks runs swaks against addr with args and returns its transcript and
// exit code.
func swaks(t *testing.T, addr string, args ...string) (string, int) {
	t.Helper()
	if _, err := exec.LookPath("swaks"); err != nil {
		t.Skip("swaks is not installed (Debian package swaks)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "swaks", append([]string{"--server", addr, "--ehlo", "swaks.interop.test"}, args...)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("swaks: %v", err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

func TestClients_swaks(t *testing.T) {
	p := getPeers(t)
	p.dumpOnFailure(t)
	a := p.newAccount(t, uniq("swaks"), acctOpts{endpoint: p.upStartTLS})
	open := p.newAccount(t, uniq("nopw"), acctOpts{endpoint: p.upStartTLS, noPassword: true})
	x := p.startProxy(t, "swaks", p.proxyConfig(nil), []*account{a, open}, 0)

	for _, mech := range []string{"PLAIN", "LOGIN"} {
		t.Run(mech+"-pipelined-three-recipients-one-rejected", func(t *testing.T) {
			marker := uniq("s")
			box1, box2 := "swaks1"+marker, "swaks2"+marker
			out, code := swaks(t, x.addr(), "--auth", mech, "--auth-user", a.Email, "--auth-password", a.Password,
				"--pipeline", "--from", a.Email, "--to", box1+"@dest.test,rejectme@dest.test,"+box2+"@dest.test",
				"--header", "X-Interop-Marker: "+marker, "--body", "swaks through xoauth2-proxy\n.leading dot\n")
			if code != 0 {
				t.Fatalf("swaks exit code %d, want 0:\n%s", code, out)
			}
			for _, want := range []string{"<~  235 ", "250 2.0.0", "550 5.1.1 <rejectme@dest.test>"} {
				if !strings.Contains(out, want) && !strings.Contains(out, strings.Replace(want, "~", "-", 1)) {
					t.Errorf("swaks transcript lacks %q:\n%s", want, out)
				}
			}
			if !strings.Contains(out, "PIPELINING") {
				t.Errorf("the proxy did not advertise PIPELINING:\n%s", out)
			}
			p.findMessage(t, box1, marker, 20*time.Second)
			p.findMessage(t, box2, marker, 20*time.Second)
			if n := len(linesWith(x.log(), "msg=message ", "rcpts=3 ", "accepted_rcpts=2 ", "code=250 ")); n < 1 {
				t.Errorf("no proxy message line with rcpts=3 accepted_rcpts=2 code=250")
			}
		})
	}

	// The old tool's rule: an account without smtp_password takes any
	// password from trusted_networks (default: loopback).
	t.Run("no-smtp_password-any-password-from-loopback", func(t *testing.T) {
		marker := uniq("n")
		box := "nopw" + marker
		out, code := swaks(t, x.addr(), "--auth", "LOGIN", "--auth-user", open.Email, "--auth-password", "anything",
			"--from", open.Email, "--to", box+"@dest.test", "--header", "X-Interop-Marker: "+marker)
		if code != 0 {
			t.Fatalf("swaks exit code %d, want 0:\n%s", code, out)
		}
		p.findMessage(t, box, marker, 20*time.Second)
	})

	t.Run("wrong-password-is-535", func(t *testing.T) {
		out, code := swaks(t, x.addr(), "--auth", "PLAIN", "--auth-user", a.Email, "--auth-password", "wrong-"+a.Password,
			"--from", a.Email, "--to", "never@dest.test")
		if code != 28 || !strings.Contains(out, "535 5.7.8") {
			t.Errorf("swaks exit code %d (want 28, AUTH failure) and 535 5.7.8 in:\n%s", code, out)
		}
	})
	t.Run("unknown-user-is-535", func(t *testing.T) {
		out, code := swaks(t, x.addr(), "--auth", "LOGIN", "--auth-user", "nobody@interop.test", "--auth-password", a.Password,
			"--from", a.Email, "--to", "never@dest.test")
		if code != 28 || !strings.Contains(out, "535 5.7.8") {
			t.Errorf("swaks exit code %d (want 28, AUTH failure) and 535 5.7.8 in:\n%s", code, out)
		}
	})
}

const smtplibScript = `
import smtplib, sys
host, port, user, password, rcpt, path = sys.argv[1:]
msg = open(path, "rb").read()
with smtplib.SMTP(host, int(port), local_hostname="python.interop.test", timeout=60) as s:
    s.login(user, password)
    refused = s.sendmail(user, [rcpt], msg)
    print("auth:", s.does_esmtp and s.esmtp_features.get("auth"), "refused:", refused)
`

func TestClients_pythonSmtplib(t *testing.T) {
	p := getPeers(t)
	p.dumpOnFailure(t)
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed (Debian package python3)")
	}
	a := p.newAccount(t, uniq("py"), acctOpts{endpoint: p.upTLS, tls: "tls", mech: "oauthbearer"})
	x := p.startProxy(t, "python", p.proxyConfig(nil), []*account{a}, 0)
	marker := uniq("py")
	box := "python" + marker
	msg := testMessage(marker, a.Email, box+"@dest.test")
	f := p.path(marker + ".eml")
	if err := os.WriteFile(f, msg, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "python3", "-c", smtplibScript,
		"127.0.0.1", fmt.Sprint(x.port), a.Email, a.Password, box+"@dest.test", f).CombinedOutput()
	if err != nil {
		t.Fatalf("python smtplib: %v\n%s", err, out)
	}
	t.Logf("python smtplib: %s", strings.TrimSpace(string(out)))
	checkIdentical(t, p.findMessage(t, box, marker, 20*time.Second), msg, marker)
}

// The client Postfix relays through the proxy like PowerMTA would: SASL
// PLAIN, connection reuse, 20 parallel deliveries. Every message's fate in
// its log matches the upstream's log and Maildir, and a recipient the
// upstream rejects bounces at the client while the other one is delivered.
func TestClients_postfixRelaysThroughTheProxy(t *testing.T) {
	p := getPeers(t)
	p.dumpOnFailure(t, "client-postfix.log")
	a := p.mtaAccount(t)
	x := p.startProxy(t, "postfix-client", p.proxyConfig(nil), []*account{a}, p.clientProxyPort)

	t.Run("one-recipient-rejected-by-the-upstream", func(t *testing.T) {
		cl := markLog(p.path("client-postfix.log"))
		marker := uniq("pf")
		box := "pfgood" + marker
		out, code := swaks(t, p.clientSMTP, "--from", "sender@client.test", "--to", box+"@dest.test,rejectme@dest.test",
			"--header", "X-Interop-Marker: "+marker, "--body", "through Postfix and the proxy")
		if code != 0 {
			t.Fatalf("swaks into the client Postfix: exit %d\n%s", code, out)
		}
		p.findMessage(t, box, marker, 30*time.Second)
		var sent, bounced []string
		eventually(30*time.Second, func() bool {
			sent = linesWith(cl.since(), "to=<"+box+"@dest.test>", "status=sent (250 ")
			bounced = linesWith(cl.since(), "to=<rejectme@dest.test>", "status=bounced", "said: 550 5.1.1 <rejectme@dest.test>")
			return len(sent) == 1 && len(bounced) == 1
		})
		if len(sent) != 1 || len(bounced) != 1 {
			t.Fatalf("client Postfix log: %d sent to %s, %d bounced for rejectme; want 1 and 1:\n%s", len(sent), box, len(bounced), cl.since())
		}
		t.Logf("client Postfix:\n%s\n%s", sent[0], bounced[0])
	})

	t.Run("batch-of-200", func(t *testing.T) {
		r := p.relayBatch(t, x, a, 200, uniq("relay"))
		t.Logf("SCENARIO 2 (Postfix client): %s", r)
		r.check(t)
		if r.clientAuths*5 > r.injected {
			t.Errorf("%d client sessions for %d messages: the client Postfix did not reuse its connections", r.clientAuths, r.injected)
		}
	})
}
