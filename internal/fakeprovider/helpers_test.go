package fakeprovider_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/saslmech"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// start runs a provider for the test and closes it at the end.
func start(t testing.TB, opts fakeprovider.Options) *fakeprovider.Provider {
	t.Helper()
	p, err := fakeprovider.Start(opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

// tokenClient posts to the token endpoint with its own transport, so no
// keep-alive connection outlives the test.
type tokenClient struct {
	t   testing.TB
	url string
	hc  *http.Client
}

func newTokenClient(t testing.TB, p *fakeprovider.Provider) *tokenClient {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &tokenClient{t: t, url: p.TokenURL(), hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// post sends form and returns the status and the decoded JSON body.
func (tc *tokenClient) post(form url.Values) (int, map[string]any) {
	tc.t.Helper()
	resp, err := tc.hc.PostForm(tc.url, form)
	if err != nil {
		tc.t.Fatalf("POST %s: %v", tc.url, err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		tc.t.Fatalf("decode token response (status %d): %v", resp.StatusCode, err)
	}
	return resp.StatusCode, body
}

func refreshForm(clientID, secret, refreshToken string) url.Values {
	return url.Values{
		"grant_type":    {"refresh_token"},
		"client_id":     {clientID},
		"client_secret": {secret},
		"refresh_token": {refreshToken},
	}
}

// accessToken adds a Gmail-style account and returns a fresh access token.
func accessToken(t testing.TB, p *fakeprovider.Provider, email string) string {
	t.Helper()
	p.AddAccount(fakeprovider.Account{Email: email, ClientID: "cid", ClientSecret: "csecret"})
	status, body := newTokenClient(t, p).post(refreshForm("cid", "csecret", p.RefreshToken(email)))
	if status != http.StatusOK {
		t.Fatalf("token: %d %v", status, body)
	}
	return body["access_token"].(string)
}

// client is a raw-text SMTP client: one method per client line, replies
// read in full.
type client struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func dial(t testing.TB, p *fakeprovider.Provider) *client {
	t.Helper()
	conn, err := net.Dial("tcp", p.SMTPAddr())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c := newClient(t, conn)
	c.expect(220, "fake.provider ESMTP")
	return c
}

func newClient(t testing.TB, conn net.Conn) *client {
	t.Cleanup(func() { conn.Close() })
	// A hung server must fail the test, not stall it.
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	return &client{t: t, conn: conn, r: bufio.NewReader(conn)}
}

// write sends raw bytes.
func (c *client) write(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// readReply reads one possibly multi-line reply and returns the code and
// the lines without code and separator.
func (c *client) readReply() (int, []string, error) {
	var lines []string
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			return 0, lines, err
		}
		l = strings.TrimRight(l, "\r\n")
		if len(l) < 4 {
			return 0, lines, errors.New("short reply line " + strconv.Quote(l))
		}
		code, err := strconv.Atoi(l[:3])
		if err != nil {
			return 0, lines, err
		}
		lines = append(lines, l[4:])
		if l[3] == ' ' {
			return code, lines, nil
		}
	}
}

// reply reads a reply and returns "CODE text" with lines joined by "|".
func (c *client) reply() string {
	c.t.Helper()
	code, lines, err := c.readReply()
	if err != nil {
		c.t.Fatalf("read reply: %v", err)
	}
	return strconv.Itoa(code) + " " + strings.Join(lines, "|")
}

// expect checks that the next reply has code and starts with text.
func (c *client) expect(code int, text string) {
	c.t.Helper()
	got := c.reply()
	if want := strconv.Itoa(code) + " " + text; !strings.HasPrefix(got, want) {
		c.t.Fatalf("reply %q, want prefix %q", got, want)
	}
}

// do sends line and expects code and text.
func (c *client) do(line string, code int, text string) {
	c.t.Helper()
	c.write(line + "\r\n")
	c.expect(code, text)
}

// expectClosed checks that the server closed the connection without a
// further reply.
func (c *client) expectClosed() {
	c.t.Helper()
	code, lines, err := c.readReply()
	if err == nil {
		c.t.Fatalf("got reply %d %v, want the connection closed", code, lines)
	}
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		c.t.Fatalf("connection still open: %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// login runs EHLO and AUTH XOAUTH2 with an initial response.
func (c *client) login(user, token string) {
	c.t.Helper()
	c.ehlo()
	c.do("AUTH XOAUTH2 "+xoauth2(user, token), 235, "2.7.0 Accepted")
}

// ehlo sends EHLO and returns the extension lines.
func (c *client) ehlo() []string {
	c.t.Helper()
	c.write("EHLO client.example\r\n")
	code, lines, err := c.readReply()
	if err != nil || code != 250 {
		c.t.Fatalf("EHLO: %d %v %v", code, lines, err)
	}
	return lines[1:]
}

// startTLS runs STARTTLS and continues on the TLS connection.
func (c *client) startTLS(cfg *tls.Config) {
	c.t.Helper()
	c.do("STARTTLS", 220, "2.0.0 Ready to start TLS")
	tc := tls.Client(c.conn, cfg)
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
}

// send runs one transaction after login and returns the reply after the dot.
func (c *client) send(from string, rcpts []string, body string) string {
	c.t.Helper()
	c.do("MAIL FROM:<"+from+">", 250, "2.1.0")
	for _, r := range rcpts {
		c.do("RCPT TO:<"+r+">", 250, "2.1.5")
	}
	c.do("DATA", 354, "")
	c.write(body)
	return c.reply()
}

func xoauth2(user, token string) string {
	return base64.StdEncoding.EncodeToString(saslmech.XOAUTH2(user, token))
}
