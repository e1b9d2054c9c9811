//go:build interop

package interop

// Scenario 2: real clients in front of the proxy: swaks, Python's smtplib
// and Postfix relaying with SASL. The proxy's listener has a certificate
// from the suite's private CA (SAN IP:127.0.0.1): clients speak plain SMTP,
// STARTTLS, or TLS from the first byte on its --tls-port, and verify the
// certificate against the CA. From 127.0.0.1 (trusted_networks) AUTH works
// without TLS; from elsewhere only after STARTTLS.

import (
	"context"
	"encoding/base64"
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

// swaksTLS are swaks's options for each way of reaching the proxy, with
// the certificate verified against the private CA.
func (p *peers) swaksTLS(mode string) []string {
	switch mode {
	case "starttls":
		return []string{"--tls", "--tls-verify", "--tls-ca-path", p.caFile}
	case "implicit-tls":
		return []string{"--tlsc", "--tls-verify", "--tls-ca-path", p.caFile}
	}
	return nil
}

// listenerAddr is where a client reaches x in mode: the implicit TLS port
// for "implicit-tls", else the SMTP port.
func (x *proxy) listenerAddr(mode string) string {
	if mode == "implicit-tls" {
		return x.addrTLS()
	}
	return x.addr()
}

// connUsedTLS reports whether the proxy's session conn_id ran under TLS
// (a "tls" line with the version, after STARTTLS or on the TLS port).
func connUsedTLS(proxyLog, connID string) bool {
	return len(withField(linesWith(proxyLog, "msg=tls ", "version="), "conn_id", connID)) > 0
}

// fieldOf returns the value of key in a slog text line ("" if absent).
func fieldOf(line, key string) string {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

func TestClients_swaks(t *testing.T) {
	p := getPeers(t)
	p.dumpOnFailure(t)
	a := p.newAccount(t, uniq("swaks"), acctOpts{endpoint: p.upStartTLS})
	open := p.newAccount(t, uniq("nopw"), acctOpts{endpoint: p.upStartTLS, noPassword: true})
	x := p.startProxy(t, "swaks", p.proxyConfig(nil), []*account{a, open}, 0)

	for _, mode := range []string{"plain", "starttls", "implicit-tls"} {
		for _, mech := range []string{"PLAIN", "LOGIN"} {
			t.Run(mode+"-"+mech+"-pipelined-three-recipients-one-rejected", func(t *testing.T) {
				xl := markLog(x.logPath)
				marker := uniq("s")
				box1, box2 := "swaks1"+marker, "swaks2"+marker
				args := append(p.swaksTLS(mode), "--auth", mech, "--auth-user", a.Email, "--auth-password", a.Password,
					"--pipeline", "--from", a.Email, "--to", box1+"@dest.test,rejectme@dest.test,"+box2+"@dest.test",
					"--header", "X-Interop-Marker: "+marker, "--body", "swaks through xoauth2-proxy\n.leading dot\n")
				out, code := swaks(t, x.listenerAddr(mode), args...)
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
				switch mode {
				case "starttls":
					if !strings.Contains(out, " -> STARTTLS") || !strings.Contains(out, "<-  220 ") {
						t.Errorf("no STARTTLS exchange in the transcript:\n%s", out)
					}
					fallthrough
				case "implicit-tls":
					if !strings.Contains(out, "=== TLS started with cipher") {
						t.Errorf("swaks did not start TLS:\n%s", out)
					}
				}
				p.findMessage(t, box1, marker, 20*time.Second)
				p.findMessage(t, box2, marker, 20*time.Second)
				var msgLine string
				eventually(5*time.Second, func() bool {
					l := linesWith(xl.settled(), "msg=message ", "rcpts=3 ", "accepted_rcpts=2 ", "code=250 ")
					if len(l) > 0 {
						msgLine = l[0]
					}
					return msgLine != ""
				})
				if msgLine == "" {
					t.Fatalf("no proxy message line with rcpts=3 accepted_rcpts=2 code=250")
				}
				if got, want := connUsedTLS(xl.settled(), fieldOf(msgLine, "conn_id")), mode != "plain"; got != want {
					t.Errorf("proxy session %s under TLS: %v, want %v:\n%s", fieldOf(msgLine, "conn_id"), got, want, xl.settled())
				}
			})
		}
	}

	// Control: --tls-verify really verifies, so the passes above mean the
	// proxy presented the CA's certificate.
	t.Run("control-tls-verify-refuses-an-unknown-ca", func(t *testing.T) {
		out, code := swaks(t, x.addr(), "--tls", "--tls-verify", "--tls-ca-path", "/etc/ssl/certs/ca-certificates.crt",
			"--auth", "PLAIN", "--auth-user", a.Email, "--auth-password", a.Password, "--from", a.Email, "--to", "never@dest.test")
		if code != 29 || !strings.Contains(out, "certificate verify failed") || strings.Contains(out, "235 ") {
			t.Errorf("swaks --tls-verify with the system CAs: exit code %d, want 29 (TLS failure), certificate verify failed:\n%s", code, out)
		}
	})

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

	for _, mode := range []string{"plain", "starttls"} {
		t.Run(mode+"-wrong-password-is-535", func(t *testing.T) {
			out, code := swaks(t, x.addr(), append(p.swaksTLS(mode), "--auth", "PLAIN", "--auth-user", a.Email,
				"--auth-password", "wrong-"+a.Password, "--from", a.Email, "--to", "never@dest.test")...)
			if code != 28 || !strings.Contains(out, "535 5.7.8") {
				t.Errorf("swaks exit code %d (want 28, AUTH failure) and 535 5.7.8 in:\n%s", code, out)
			}
		})
	}
	t.Run("unknown-user-is-535", func(t *testing.T) {
		out, code := swaks(t, x.addr(), "--auth", "LOGIN", "--auth-user", "nobody@interop.test", "--auth-password", a.Password,
			"--from", a.Email, "--to", "never@dest.test")
		if code != 28 || !strings.Contains(out, "535 5.7.8") {
			t.Errorf("swaks exit code %d (want 28, AUTH failure) and 535 5.7.8 in:\n%s", code, out)
		}
	})
}

// A proxy that trusts only 127.0.0.1/32, reached from 127.0.0.2: AUTH
// before STARTTLS is 530 5.7.0 (and not advertised); after STARTTLS, or on
// the implicit TLS port, it works; a password-less account, usable only
// from trusted networks, is refused even under TLS.
func TestClients_authOutsideTrustedNetworksNeedsTLS(t *testing.T) {
	p := getPeers(t)
	p.dumpOnFailure(t)
	a := p.newAccount(t, uniq("untr"), acctOpts{endpoint: p.upStartTLS})
	open := p.newAccount(t, uniq("untrnopw"), acctOpts{endpoint: p.upStartTLS, noPassword: true})
	cfg := p.proxyConfig(nil)
	setSMTP(cfg, "trusted_networks", []string{"127.0.0.1/32"})
	x := p.startProxy(t, "untrusted", cfg, []*account{a, open}, 0)
	const outside = "127.0.0.2"

	t.Run("auth-before-starttls-is-530-after-it-235", func(t *testing.T) {
		s := dialSMTPFrom(t, outside, x.addr())
		ehlo := s.must(250, "EHLO untrusted.interop.test")
		if !strings.Contains(ehlo, "STARTTLS") || strings.Contains(ehlo, "AUTH") {
			t.Errorf("EHLO before TLS from %s: want STARTTLS and no AUTH:\n%s", outside, ehlo)
		}
		for _, mech := range []string{"PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+a.Email+"\x00"+a.Password)), "LOGIN"} {
			if code, text := s.cmd("AUTH %s", mech); code != 530 || !strings.HasPrefix(text, "5.7.0") {
				t.Errorf("AUTH %s before STARTTLS from %s: %d %s, want 530 5.7.0", strings.Fields(mech)[0], outside, code, text)
			}
		}
		if code, text := s.cmd("MAIL FROM:<%s>", a.Email); code != 530 {
			t.Errorf("MAIL without AUTH: %d %s, want 530", code, text)
		}
		s.startTLS(p.caFile)
		ehlo = s.must(250, "EHLO untrusted.interop.test")
		if !strings.Contains(ehlo, "AUTH PLAIN LOGIN") || strings.Contains(ehlo, "STARTTLS") {
			t.Errorf("EHLO after STARTTLS: want AUTH PLAIN LOGIN and no STARTTLS:\n%s", ehlo)
		}
		if code, text := s.authPlain(a.Email, a.Password); code != 235 {
			t.Fatalf("AUTH PLAIN after STARTTLS from %s: %d %s, want 235", outside, code, text)
		}
		marker := uniq("u")
		box := "untrusted" + marker
		msg := testMessage(marker, a.Email, box+"@dest.test")
		if code, text := s.send(a.Email, []string{box + "@dest.test"}, msg); code != 250 {
			t.Fatalf("message after STARTTLS: %d %s", code, text)
		}
		s.quit()
		checkIdentical(t, p.findMessage(t, box, marker, 20*time.Second), msg, marker)
	})

	t.Run("swaks-without-tls-cannot-auth", func(t *testing.T) {
		out, code := swaks(t, x.addr(), "--local-interface", outside, "--auth", "PLAIN", "--auth-user", a.Email,
			"--auth-password", a.Password, "--from", a.Email, "--to", "never@dest.test")
		if code != 28 || !strings.Contains(out, "Host did not advertise authentication") || strings.Contains(out, "AUTH PLAIN LOGIN") {
			t.Errorf("swaks from %s without TLS: exit code %d; want 28, AUTH not advertised:\n%s", outside, code, out)
		}
	})

	for _, c := range []struct{ mode, mech string }{{"starttls", "LOGIN"}, {"implicit-tls", "PLAIN"}} {
		t.Run("swaks-"+c.mode+"-"+c.mech, func(t *testing.T) {
			marker := uniq("u")
			box := "untrusted" + marker
			args := append(p.swaksTLS(c.mode), "--local-interface", outside, "--auth", c.mech, "--auth-user", a.Email,
				"--auth-password", a.Password, "--from", a.Email, "--to", box+"@dest.test", "--header", "X-Interop-Marker: "+marker)
			out, code := swaks(t, x.listenerAddr(c.mode), args...)
			if code != 0 || !strings.Contains(out, "=== TLS started with cipher") {
				t.Fatalf("swaks %s from %s: exit code %d, want 0 under TLS:\n%s", c.mode, outside, code, out)
			}
			p.findMessage(t, box, marker, 20*time.Second)
		})
	}

	t.Run("passwordless-account-refused-outside-trusted-networks", func(t *testing.T) {
		s := dialSMTPFrom(t, outside, x.addr())
		s.must(250, "EHLO untrusted.interop.test")
		s.startTLS(p.caFile)
		s.must(250, "EHLO untrusted.interop.test")
		if code, text := s.authPlain(open.Email, "anything"); code != 535 || !strings.HasPrefix(text, "5.7.8") {
			t.Errorf("AUTH as an account without smtp_password from %s: %d %s, want 535 5.7.8", outside, code, text)
		}
		s.quit()
	})

	// Control: the same proxy takes AUTH without TLS from 127.0.0.1.
	t.Run("control-trusted-address-auth-without-tls", func(t *testing.T) {
		s := dialSMTPFrom(t, "127.0.0.1", x.addr())
		s.must(250, "EHLO trusted.interop.test")
		if code, text := s.authPlain(a.Email, a.Password); code != 235 {
			t.Errorf("AUTH PLAIN without TLS from 127.0.0.1: %d %s, want 235", code, text)
		}
		s.quit()
	})

	l := x.log()
	if n := len(linesWith(l, "msg=connect ", "remote=127.0.0.2:", "trusted=false")); n == 0 {
		t.Errorf("the proxy log has no connect line from 127.0.0.2 with trusted=false")
	}
}

// smtplibScript sends one message with Python's smtplib: "plain" (no TLS,
// from loopback), "starttls" (SMTP.starttls) or "smtps" (SMTP_SSL on the
// implicit TLS port), verifying the proxy's certificate against cafile
// with Python's default checks (chain and the name 127.0.0.1).
const smtplibScript = `
import smtplib, ssl, sys
mode, host, port, cafile, user, password, rcpt, path = sys.argv[1:]
msg = open(path, "rb").read()
ctx = ssl.create_default_context(cafile=cafile)
if mode == "smtps":
    s = smtplib.SMTP_SSL(host, int(port), local_hostname="python.interop.test", timeout=60, context=ctx)
else:
    s = smtplib.SMTP(host, int(port), local_hostname="python.interop.test", timeout=60)
with s:
    if mode == "starttls":
        s.starttls(context=ctx)
    s.login(user, password)
    refused = s.sendmail(user, [rcpt], msg)
    tls = s.sock.version() if isinstance(s.sock, ssl.SSLSocket) else "none"
    print("mode:", mode, "tls:", tls, "auth:", s.does_esmtp and s.esmtp_features.get("auth"), "refused:", refused)
`

func TestClients_pythonSmtplib(t *testing.T) {
	p := getPeers(t)
	p.dumpOnFailure(t)
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed (Debian package python3)")
	}
	a := p.newAccount(t, uniq("py"), acctOpts{endpoint: p.upTLS, tls: "tls", mech: "oauthbearer"})
	x := p.startProxy(t, "python", p.proxyConfig(nil), []*account{a}, 0)
	for _, mode := range []string{"plain", "starttls", "smtps"} {
		t.Run(mode, func(t *testing.T) {
			port := x.port
			if mode == "smtps" {
				port = x.tlsPort
			}
			marker := uniq("py")
			box := "python" + marker
			msg := testMessage(marker, a.Email, box+"@dest.test")
			f := p.path(marker + ".eml")
			if err := os.WriteFile(f, msg, 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, "python3", "-c", smtplibScript, mode,
				"127.0.0.1", fmt.Sprint(port), p.caFile, a.Email, a.Password, box+"@dest.test", f).CombinedOutput()
			if err != nil {
				t.Fatalf("python smtplib (%s): %v\n%s", mode, err, out)
			}
			t.Logf("python smtplib: %s", strings.TrimSpace(string(out)))
			if tlsUsed := !strings.Contains(string(out), "tls: none"); tlsUsed != (mode != "plain") {
				t.Errorf("python smtplib %s: TLS used %v", mode, tlsUsed)
			}
			checkIdentical(t, p.findMessage(t, box, marker, 20*time.Second), msg, marker)
		})
	}
}

// clientPath is one way through the client Postfix: the port it takes mail
// on, and whether it relays that mail to the proxy with STARTTLS.
type clientPath struct {
	name string
	addr string
	tls  bool
}

func (p *peers) clientPaths(t *testing.T) []clientPath {
	t.Helper()
	if p.clientSMTP == "" || p.clientSMTPPlain == "" {
		t.Skip("INTEROP_CLIENT_SMTP(_PLAIN) not set: use test/interop/run.sh")
	}
	return []clientPath{{"starttls", p.clientSMTP, true}, {"plain", p.clientSMTPPlain, false}}
}

// The client Postfix relays through the proxy like PowerMTA would: SASL
// PLAIN, connection reuse, 20 parallel deliveries; with mandatory STARTTLS
// (verified against the private CA, TLS sessions reused through tlsproxy)
// and, for comparison, in plain text. Every message's fate in its log
// matches the upstream's log and Maildir, and a recipient the upstream
// rejects bounces at the client while the other one is delivered.
func TestClients_postfixRelaysThroughTheProxy(t *testing.T) {
	p := getPeers(t)
	p.dumpOnFailure(t, "client-postfix.log")
	a := p.mtaAccount(t)
	x := p.startProxy(t, "postfix-client", p.proxyConfig(nil), []*account{a}, p.clientProxyPort)

	for _, via := range p.clientPaths(t) {
		t.Run(via.name, func(t *testing.T) {
			t.Run("one-recipient-rejected-by-the-upstream", func(t *testing.T) {
				cl, xl := markLog(p.path("client-postfix.log")), markLog(x.logPath)
				marker := uniq("pf")
				box := "pfgood" + marker
				out, code := swaks(t, via.addr, "--from", "sender@client.test", "--to", box+"@dest.test,rejectme@dest.test",
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
				msgs := messageLines(xl.settled(), 0)
				if len(msgs) != 1 {
					t.Fatalf("proxy: %d message lines, want 1:\n%s", len(msgs), xl.settled())
				}
				if got := connUsedTLS(x.log(), fieldOf(msgs[0], "conn_id")); got != via.tls {
					t.Errorf("proxy session %s under TLS: %v, want %v", fieldOf(msgs[0], "conn_id"), got, via.tls)
				}
			})

			t.Run("batch-of-200", func(t *testing.T) {
				r := p.relayBatch(t, x, a, via, 200, uniq("relay"))
				t.Logf("SCENARIO 2 (Postfix client, %s): %s", via.name, r)
				r.check(t, via)
				if r.clientAuths*5 > r.injected {
					t.Errorf("%d client sessions for %d messages: the client Postfix did not reuse its connections", r.clientAuths, r.injected)
				}
			})
		})
	}
}
