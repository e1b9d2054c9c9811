package console_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/console"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/saslmech"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/service"
)

// adminToken is the test proxies' admin token.
const adminToken = "console-test-admin-token-0123456789abcdef"

// proxy is a whole proxy (SMTP and admin listener with the console) in
// front of a fake provider, both on loopback.
type proxy struct {
	fp       *fakeprovider.Provider
	svc      *service.Service
	smtp     string // the SMTP listener
	base     string // http://admin listener
	dir      string
	accounts []map[string]any
}

type proxyOptions struct {
	n          int                // accounts: sender00000@example.com … (account_id acct00000 …)
	hashed     int                // the first hashed accounts get a bcrypt smtp_password
	onboarding console.Onboarding // nil: none
	// publicOnboarding configures the proxy's own onboarding listener
	// (the "onboarding" block), whose invitations the console then shows.
	publicOnboarding bool
	// redis puts the proxy in cluster mode on this Redis (host:port).
	redis   string
	cluster console.Cluster // nil: none
}

// email and id of account i, and its SMTP password.
func email(i int) string { return fmt.Sprintf("sender%05d@example.com", i) }
func id(i int) string    { return fmt.Sprintf("acct%05d", i) }
func pass(i int) string  { return fmt.Sprintf("pw-%d", i) }

// Secrets of the test accounts, for the grep test.
func refreshToken(i int) string { return fmt.Sprintf("rt-secret-%05d-zq", i) }

const clientSecret = "client-secret-zq-7a1b"

func startProxy(t testing.TB, o proxyOptions) *proxy {
	t.Helper()
	tlsCfg, _, caPEM, err := fakeprovider.SelfSignedTLS("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	fp, err := fakeprovider.Start(fakeprovider.Options{DiscardBodies: true, TLSConfig: tlsCfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fp.Close() })
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	accts := make([]map[string]any, o.n)
	for i := range accts {
		fp.AddAccount(fakeprovider.Account{Email: email(i), ClientID: "cid", ClientSecret: clientSecret, RefreshToken: refreshToken(i)})
		pw := pass(i)
		if i < o.hashed {
			h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
			if err != nil {
				t.Fatal(err)
			}
			pw = string(h)
		}
		provider := "gmail"
		if i%4 == 3 {
			provider = "outlook"
		}
		accts[i] = map[string]any{
			"account_id": id(i), "email": email(i), "provider": provider, "smtp_password": pw,
			"client_id": "cid", "client_secret": clientSecret, "refresh_token": refreshToken(i),
			"oauth_token_url": fp.TokenURL(), "oauth_endpoint": fp.SMTPAddr(),
		}
	}
	cfg := map[string]any{"global": map[string]any{"smtp": map[string]any{"server_hostname": "proxy.test", "upstream_ca_file": ca}}}
	if o.redis != "" {
		cfg["global"].(map[string]any)["cluster"] = map[string]any{"redis_url": "redis://" + o.redis}
	}
	if o.publicOnboarding {
		cfg["onboarding"] = map[string]any{"listen": "127.0.0.1:0", "public_url": "http://127.0.0.1:8443"}
	}
	writeFile(t, filepath.Join(dir, "config.json"), cfg)
	writeFile(t, filepath.Join(dir, "accounts.json"), map[string]any{"accounts": accts})
	svc, err := service.New(service.Options{
		Load: config.LoadOptions{
			ConfigPath: filepath.Join(dir, "config.json"), AccountsPath: filepath.Join(dir, "accounts.json"),
			ConfigExplicit: true, SearchDirs: []string{},
		},
		Listen:        "127.0.0.1:0",
		AuthFailDelay: -1,
		Admin: service.AdminOptions{Listen: "127.0.0.1:0", Token: secret.New(adminToken),
			Onboarding: o.onboarding, Cluster: o.cluster},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }() // owned by the cleanup
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	p := &proxy{fp: fp, svc: svc, smtp: svc.Addr().String(), base: "http://" + svc.AdminAddr().String(), dir: dir, accounts: accts}
	ready := &http.Client{Timeout: 5 * time.Second}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("Run ended before the proxy was ready: %v", err)
		default:
		}
		if resp, err := ready.Get(p.base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("proxy not ready")
		}
	}
	return p
}

func writeFile(t testing.TB, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// client is a browser without script: a cookie jar, no redirects
// followed unless asked.
type client struct {
	t    testing.TB
	base string
	hc   *http.Client
}

func (p *proxy) client(t testing.TB) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, base: p.base, hc: &http.Client{Jar: jar, Timeout: time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends a request and returns the status, headers and body.
func (c *client) do(method, path string, form url.Values, hdr http.Header) (int, http.Header, string) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func (c *client) get(path string) (int, string) {
	c.t.Helper()
	code, _, body := c.do("GET", path, nil, nil)
	return code, body
}

// signIn signs in with the admin token and fails the test otherwise.
func (c *client) signIn() {
	c.t.Helper()
	code, h, body := c.do("POST", "/signin", url.Values{"token": {adminToken}}, nil)
	if code != http.StatusSeeOther || h.Get("Location") != "/" {
		c.t.Fatalf("sign-in: %d %s %s", code, h.Get("Location"), body)
	}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the CSRF token of a page.
func (c *client) csrf(path string) string {
	c.t.Helper()
	code, body := c.get(path)
	m := csrfRE.FindStringSubmatch(body)
	if code != 200 || m == nil {
		c.t.Fatalf("GET %s: %d, no CSRF token", path, code)
	}
	return m[1]
}

// smtpClient is one logged-in client connection to the proxy.
type smtpClient struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

func (p *proxy) login(t testing.TB, i int) *smtpClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", p.smtp, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(2 * time.Minute))
	c := &smtpClient{t: t, nc: nc, br: bufio.NewReader(nc)}
	c.expect("220")
	c.cmd("EHLO client.test", "250")
	c.cmd("AUTH PLAIN "+saslmech.EncodePlain(email(i), pass(i)), "235")
	return c
}

func (c *smtpClient) read() string {
	c.t.Helper()
	for {
		l, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		if len(l) < 4 || l[3] != '-' {
			return strings.TrimRight(l, "\r\n")
		}
	}
}

func (c *smtpClient) expect(prefix string) string {
	c.t.Helper()
	l := c.read()
	if !strings.HasPrefix(l, prefix) {
		c.t.Fatalf("got %q, want %q", l, prefix)
	}
	return l
}

func (c *smtpClient) cmd(line, want string) string {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, line+"\r\n"); err != nil {
		c.t.Fatal(err)
	}
	return c.expect(want)
}

// send sends one message and returns the first reply that is not a
// success (MAIL, RCPT, DATA or the final one), or the final 250.
func (c *smtpClient) send(from, rcpt string) string {
	c.t.Helper()
	for k, step := range []struct{ line, ok string }{
		{"MAIL FROM:<" + from + ">", "250"}, {"RCPT TO:<" + rcpt + ">", "250"}, {"DATA", "354"},
		{"Subject: test\r\n\r\nhello\r\n.", "250"},
	} {
		if _, err := io.WriteString(c.nc, step.line+"\r\n"); err != nil {
			c.t.Fatal(err)
		}
		if l := c.read(); !strings.HasPrefix(l, step.ok) {
			if k < 3 && !strings.HasPrefix(l, "421") { // a transaction left half-way
				c.cmd("RSET", "250")
			}
			return l
		}
	}
	return "250"
}

// metric reads one sample of /metrics, e.g. `messages_total{result="sent"}`.
func (p *proxy) metric(t testing.TB, name string) int64 {
	t.Helper()
	resp, err := http.Get(p.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			var n float64
			fmt.Sscan(v, &n)
			return int64(n)
		}
	}
	return 0
}
