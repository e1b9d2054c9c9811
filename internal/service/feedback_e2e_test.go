package service_test

import (
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeimap"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/service"
)

// TestFeedback_bounceRateCoolsTheAccountUntilResumed: the proxy reads
// alice's mailbox over IMAP (TLS, XOAUTH2 with alice's own token, checked
// by the fake provider), finds a hard bounce for the one recipient she
// sent to (rate 100 % > 5 %), writes it to the JSON lines file, and cools
// her account down: MAIL is refused with the reason, the admin status
// shows it, and the operator's resume lets her send again. Another
// account goes on sending all along.
func TestFeedback_bounceRateCoolsTheAccountUntilResumed(t *testing.T) {
	t.Parallel()
	var fp atomic.Pointer[fakeprovider.Provider]
	tlsCfg, _, caPEM, err := fakeprovider.SelfSignedTLS("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := fakeimap.Start(fakeimap.Options{TLS: tlsCfg, Check: func(u, tok string) bool {
		p := fp.Load()
		return p != nil && p.ValidAccess(u, tok)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	report, err := os.ReadFile(filepath.Join("..", "dsn", "testdata", "rfc3464.eml"))
	if err != nil {
		t.Fatal(err)
	}
	jsonl := filepath.Join(t.TempDir(), "bounces.jsonl")
	e := newEnv(t, envOptions{
		admin: service.AdminOptions{Listen: "127.0.0.1:0", Token: newAdminEnvToken()},
		edit: func(cfg map[string]any, _ []map[string]any) {
			smtp := cfg["global"].(map[string]any)["smtp"].(map[string]any)
			ca, err := os.ReadFile(smtp["upstream_ca_file"].(string))
			if err != nil {
				t.Fatal(err)
			}
			bundle := filepath.Join(t.TempDir(), "bundle.pem")
			if err := os.WriteFile(bundle, append(ca, caPEM...), 0o600); err != nil {
				t.Fatal(err)
			}
			smtp["upstream_ca_file"] = bundle
			cfg["feedback"] = map[string]any{
				"accounts": []string{"alice"}, "imap_servers": map[string]any{"gmail": srv.Addr()},
				"interval_seconds": 10, "jsonl_file": jsonl, "move_to": "Processed",
				"bounce_rate_threshold": 0.05, "bounce_rate_min_recipients": 1,
			}
		},
	})
	fp.Store(e.fp)

	c := e.dial(t)
	c.authPlain(userA, password, "235")
	if got := sendOne(c, userA, "nobody@example.net"); !strings.HasPrefix(got[len(got)-1], "250") {
		t.Fatalf("message: %q", got)
	}
	srv.Deliver(userA, report)

	deadline := time.Now().Add(2 * time.Minute)
	for srv.Count(userA, "Processed") == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if srv.Count(userA, "Processed") != 1 {
		t.Fatal("the report was not read and moved within 2 minutes")
	}
	b, err := os.ReadFile(jsonl)
	if err != nil || !strings.Contains(string(b), `"recipient":"nobody@example.net"`) || !strings.Contains(string(b), `"class":"hard"`) {
		t.Fatalf("bounces file %q, %v", b, err)
	}
	var got string
	for time.Now().Before(deadline) {
		if got = c.cmd("MAIL FROM:<"+userA+">", ""); strings.HasPrefix(got, "451") {
			break
		}
		c.cmd("RSET", "250")
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.HasPrefix(got, "451 4.7.0") || !strings.Contains(got, "bounce rate 100.0%") {
		t.Fatalf("MAIL after the bounce: %q", got)
	}
	code, _, raw := e.call(t, "GET", "/admin/accounts/"+userA, adminToken, nil)
	if code != http.StatusOK || !strings.Contains(raw, `"cooling_down_cause": "bounce rate 100.0%`) || !strings.Contains(raw, `"readable": true`) {
		t.Fatalf("status %d %s", code, raw)
	}
	code, _, raw = e.call(t, "GET", "/admin/accounts/"+userA+"/feedback", adminToken, nil)
	if code != http.StatusOK || !strings.Contains(raw, `"cooled_down": true`) || !strings.Contains(raw, `"hard_bounces_24h": 1`) {
		t.Fatalf("feedback status %d %s", code, raw)
	}
	if code, _, _ := e.call(t, "GET", "/admin/accounts/"+userPlain+"/feedback", adminToken, nil); code != http.StatusNotFound {
		t.Errorf("feedback status of an account not opted in: %d, want 404", code)
	}
	c2 := e.dial(t)
	c2.authPlain(userPlain, password, "235")
	if got := sendOne(c2, userPlain, "r@example.net"); !strings.HasPrefix(got[len(got)-1], "250") {
		t.Fatalf("another account: %q", got)
	}

	if code, _, raw := e.call(t, "POST", "/admin/accounts/"+userA+"/feedback/resume", adminToken, nil); code != http.StatusOK {
		t.Fatalf("resume: %d %s", code, raw)
	}
	if got := sendOne(c, userA, "someone@example.net"); !strings.HasPrefix(got[len(got)-1], "250") {
		t.Fatalf("after the resume: %q", got)
	}
}

// TestRelayLog_carriesTheMessageID: the "message" log line carries the
// Message-ID the client wrote, the key a bounce report gives back
// (original_message_id), so the two can be joined.
func TestRelayLog_carriesTheMessageID(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	e := newEnv(t, envOptions{logger: slog.New(slog.NewTextHandler(&logs, nil))})
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	c.send("MAIL FROM:<" + userA + ">\r\nRCPT TO:<r@example.net>\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	c.send("Subject: s\r\nMessage-ID:\r\n <job42.7@sender.example>\r\n\r\nbody\r\n.\r\n")
	c.expect("250")
	c.cmd("QUIT", "221")
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(logs.String(), "msg=message ") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "message_id=<job42.7@sender.example>") {
		t.Errorf("no message_id in the log:\n%s", logs.String())
	}
}
