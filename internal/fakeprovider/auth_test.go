package fakeprovider_test

import (
	"encoding/base64"
	"net/smtp"
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/saslmech"
)

func TestAuth_validTokenAccepted(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{})
	tok := accessToken(t, p, "User@Example.com")

	tests := []struct {
		name string
		line string
	}{
		{"xoauth2", "AUTH XOAUTH2 " + xoauth2("user@example.COM", tok)},
		{"lower-case mechanism", "AUTH xoauth2 " + xoauth2("user@example.com", tok)},
		{"oauthbearer", "AUTH OAUTHBEARER " + base64.StdEncoding.EncodeToString(saslmech.OAuthBearer("user@example.com", "127.0.0.1", 25, tok))},
		{"oauthbearer without authzid", "AUTH OAUTHBEARER " + base64.StdEncoding.EncodeToString([]byte("n,,\x01auth=Bearer "+tok+"\x01\x01"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := dial(t, p)
			c.ehlo()
			c.do(tt.line, 235, "2.7.0 Accepted")
			c.do("MAIL FROM:<user@example.com>", 250, "2.1.0 OK")
		})
	}
}

func TestAuth_badTokenGetsGmailChallenge(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{})
	tok := accessToken(t, p, "a@example.com")
	accessToken(t, p, "b@example.com")
	expired := start(t, fakeprovider.Options{AccessTokenTTL: time.Nanosecond})
	expiredTok := accessToken(t, expired, "a@example.com")

	tests := []struct {
		name       string
		p          *fakeprovider.Provider
		line       string
		wantStatus string
	}{
		{"unknown token", p, "AUTH XOAUTH2 " + xoauth2("a@example.com", "ya29.nope"), "401"},
		{"other user's token", p, "AUTH XOAUTH2 " + xoauth2("b@example.com", tok), "401"},
		{"expired by TTL", expired, "AUTH XOAUTH2 " + xoauth2("a@example.com", expiredTok), "401"},
		{"malformed response", p, "AUTH XOAUTH2 " + base64.StdEncoding.EncodeToString([]byte("user=a@example.com")), "400"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := dial(t, tt.p)
			c.ehlo()
			c.write(tt.line + "\r\n")
			got := c.reply()
			text, ok := strings.CutPrefix(got, "334 ")
			if !ok {
				t.Fatalf("reply %q, want 334", got)
			}
			ch, err := saslmech.DecodeChallenge(text)
			if err != nil {
				t.Fatalf("challenge %q: %v", text, err)
			}
			want := saslmech.Challenge{Status: tt.wantStatus, Schemes: "bearer", Scope: "https://mail.google.com/"}
			if ch != want {
				t.Errorf("challenge %+v, want %+v", ch, want)
			}
			c.write("\r\n")
			code, lines, err := c.readReply()
			if err != nil || code != 535 || len(lines) != 2 || !strings.HasPrefix(lines[0], "5.7.8 Username and Password not accepted.") {
				t.Errorf("final reply %d %q %v", code, lines, err)
			}
			c.do("MAIL FROM:<a@example.com>", 530, "5.7.0 Authentication Required")
		})
	}
}

func TestAuth_expireAccessTokens(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{})
	tok := accessToken(t, p, "a@example.com")
	c := dial(t, p)
	c.login("a@example.com", tok)

	p.ExpireAccessTokens()
	c2 := dial(t, p)
	c2.ehlo()
	c2.do("AUTH XOAUTH2 "+xoauth2("a@example.com", tok), 334, "")
	c2.do("", 535, "5.7.8")
	// The session that logged in before goes on.
	c.do("MAIL FROM:<a@example.com>", 250, "2.1.0")
	if st := p.Stats(); st.Logins != 1 || st.LoginFailures != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestAuth_withoutInitialResponse(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{})
	tok := accessToken(t, p, "a@example.com")
	// A domain-wide delegation token is about 1 KB: too long for an
	// initial response on Gmail, fine after "334 ".
	long := tok + "." + strings.Repeat("x", 1500)
	c := dial(t, p)
	c.ehlo()
	c.do("AUTH XOAUTH2 "+xoauth2("a@example.com", long), 555, "5.5.2 Syntax error, command line too long")
	c.do("AUTH XOAUTH2", 334, "")
	c.do(xoauth2("a@example.com", long), 334, "") // unknown token: challenge
	c.do("", 535, "5.7.8")
	c.do("AUTH XOAUTH2", 334, "")
	c.do(xoauth2("a@example.com", tok), 235, "2.7.0 Accepted")
	c.do("AUTH XOAUTH2", 503, "5.5.1")
}

func TestAuth_cancelAndGarbage(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{})
	c := dial(t, p)
	c.do("AUTH XOAUTH2 x", 503, "5.5.1 EHLO/HELO first.")
	c.ehlo()
	c.do("AUTH PLAIN AGZvbwBiYXI=", 504, "5.7.4")
	c.do("AUTH XOAUTH2", 334, "")
	c.do("*", 501, "5.7.0")
	c.do("AUTH XOAUTH2 !!!notbase64", 501, "5.5.2 Cannot Decode response")
	c.do("MAIL FROM:<a@example.com>", 530, "5.7.0 Authentication Required")
}

func TestAuth_maxAuthLineBytes(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{MaxAuthLineBytes: 3000})
	tok := accessToken(t, p, "a@example.com")
	long := tok + strings.Repeat("x", 1500) // 2 KB line: allowed here
	c := dial(t, p)
	c.ehlo()
	c.do("AUTH XOAUTH2 "+xoauth2("a@example.com", long), 334, "")
	c.do("", 535, "5.7.8")
	// Over every limit: the whole line is consumed and the session goes on.
	c.do("AUTH XOAUTH2 "+strings.Repeat("A", 40000), 555, "5.5.2")
	c.do("NOOP "+strings.Repeat("A", 40000), 500, "5.5.2")
	c.do("NOOP", 250, "2.0.0")
}

func TestAuth_requireTLSLikeMicrosoft(t *testing.T) {
	t.Parallel()
	server, roots, _, err := fakeprovider.SelfSignedTLS()
	if err != nil {
		t.Fatal(err)
	}
	p := start(t, fakeprovider.Options{TLSConfig: server, RequireTLSForAuth: true})
	tok := accessToken(t, p, "a@example.com")
	c := dial(t, p)
	if ext := strings.Join(c.ehlo(), "\n"); strings.Contains(ext, "AUTH") || !strings.Contains(ext, "STARTTLS") {
		t.Errorf("EHLO before TLS: %q", ext)
	}
	c.do("AUTH XOAUTH2 "+xoauth2("a@example.com", tok), 530, "5.7.0 Must issue a STARTTLS command first.")
	c.startTLS(clientTLS(roots))
	if ext := strings.Join(c.ehlo(), "\n"); !strings.Contains(ext, "AUTH XOAUTH2 OAUTHBEARER") || strings.Contains(ext, "STARTTLS") {
		t.Errorf("EHLO after TLS: %q", ext)
	}
	c.do("AUTH XOAUTH2 "+xoauth2("a@example.com", tok), 235, "2.7.0")
}

func TestAuth_maxSessionsPerUser(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{MaxSessionsPerUser: 2})
	tok := accessToken(t, p, "m@example.com")
	tokB := accessToken(t, p, "other@example.com")
	c1, c2 := dial(t, p), dial(t, p)
	c1.login("m@example.com", tok)
	c2.login("m@example.com", tok)
	c3 := dial(t, p)
	c3.ehlo()
	c3.do("AUTH XOAUTH2 "+xoauth2("m@example.com", tok), 432, "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded")
	// Another mailbox is not affected.
	dial(t, p).login("other@example.com", tokB)

	// Once a session ends, its slot frees up; the server notices the
	// close asynchronously, so retry until it has.
	c1.do("QUIT", 221, "2.0.0")
	for i := 0; ; i++ {
		c3.write("AUTH XOAUTH2 " + xoauth2("m@example.com", tok) + "\r\n")
		got := c3.reply()
		if strings.HasPrefix(got, "235 ") {
			break
		}
		if !strings.HasPrefix(got, "432 ") || i > 1000 {
			t.Fatalf("AUTH after QUIT: %q", got)
		}
		time.Sleep(time.Millisecond)
	}
	if st := p.Stats(); st.MaxConcurrentSessionsPerUser != 2 || st.Logins != 4 {
		t.Errorf("stats %+v", st)
	}
}

// xoauth2Auth is the client side of XOAUTH2 for net/smtp: it answers
// Gmail's failure challenge with an empty response, as Google documents.
type xoauth2Auth struct{ user, token string }

func (a xoauth2Auth) Start(*smtp.ServerInfo) (string, []byte, error) {
	return "XOAUTH2", saslmech.XOAUTH2(a.user, a.token), nil
}

func (a xoauth2Auth) Next(_ []byte, more bool) ([]byte, error) {
	if more {
		return []byte{}, nil
	}
	return nil, nil
}

func TestAuth_netSMTPClient(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{})
	tok := accessToken(t, p, "a@example.com")
	msg := "Subject: hi\r\n\r\n.dot\r\nbody\r\n"
	if err := smtp.SendMail(p.SMTPAddr(), xoauth2Auth{"a@example.com", tok}, "a@example.com", []string{"r@example.net"}, []byte(msg)); err != nil {
		t.Fatalf("SendMail: %v", err)
	}
	got := p.Messages()
	if len(got) != 1 || string(got[0].Data) != msg || got[0].AuthUser != "a@example.com" || got[0].AuthMech != "XOAUTH2" {
		t.Errorf("messages %+v", got)
	}
	err := smtp.SendMail(p.SMTPAddr(), xoauth2Auth{"a@example.com", "bad"}, "a@example.com", []string{"r@example.net"}, []byte(msg))
	if err == nil || !strings.Contains(err.Error(), "535") {
		t.Errorf("SendMail with a bad token: %v", err)
	}
}
