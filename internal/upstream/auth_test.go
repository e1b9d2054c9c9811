package upstream_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/provider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/saslmech"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

const (
	user  = "sender@example.com"
	token = "ya29.a0AfH6SMBx-TOKEN-must-never-leak"
)

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func challenge(status string) string {
	return saslmech.EncodeChallenge(saslmech.Challenge{Status: status, Schemes: "bearer", Scope: "https://mail.google.com/"})
}

// tokenOfLine returns a token whose inline "AUTH XOAUTH2 <ir>\r\n" line is
// the longest one not over max bytes (fit) or the shortest one over it.
func tokenOfLine(max int, fit bool) string {
	for n := 1; ; n++ {
		tok := strings.Repeat("t", n)
		l := len("AUTH XOAUTH2 ") + len(b64(saslmech.XOAUTH2(user, tok))) + 2
		if l > max {
			if fit {
				return strings.Repeat("t", n-1)
			}
			return tok
		}
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	xo := b64(saslmech.XOAUTH2(user, token))
	fits, over, long := tokenOfLine(512, true), tokenOfLine(512, false), strings.Repeat("L", 1200)
	// After a refusal the session is still usable: RSET works.
	const thenRSET = `
		C: RSET
		S: 250 2.0.0 ok`
	tests := []struct {
		name   string
		mech   upstream.Mechanism
		token  string
		script func(port string) string
		// want: nil error, or an AuthError with code/enhanced/rejected
		code     int
		enhanced string
		rejected bool
		status   string // challenge status, "" for none
		plain    bool   // PlainRefusal: a bare 535, worth a refresh of a cached token
	}{
		{
			name: "XOAUTH2 inline", mech: upstream.MechXOAUTH2, token: token,
			script: func(string) string { return "C: AUTH XOAUTH2 " + xo + "\nS: 235 2.7.0 Accepted" },
		},
		{
			name: "empty mechanism means XOAUTH2", mech: "", token: token,
			script: func(string) string { return "C: AUTH XOAUTH2 " + xo + "\nS: 235 2.7.0 Accepted" },
		},
		{
			name: "mechanism sent upper case", mech: "xoauth2", token: token,
			script: func(string) string { return "C: AUTH XOAUTH2 " + xo + "\nS: 235 2.7.0 Accepted" },
		},
		{
			name: "line of 512 bytes or less goes inline", mech: upstream.MechXOAUTH2, token: fits,
			script: func(string) string {
				return "C: AUTH XOAUTH2 " + b64(saslmech.XOAUTH2(user, fits)) + "\nS: 235 2.7.0 Accepted"
			},
		},
		{
			name: "line over 512 bytes waits for 334", mech: upstream.MechXOAUTH2, token: over,
			script: func(string) string {
				return "C: AUTH XOAUTH2\nS: 334\nC: " + b64(saslmech.XOAUTH2(user, over)) + "\nS: 235 2.7.0 Accepted"
			},
		},
		{
			name: "1 KB domain-wide-delegation token", mech: upstream.MechXOAUTH2, token: long,
			script: func(string) string {
				return "C: AUTH XOAUTH2\nS: 334 go on\nC: " + b64(saslmech.XOAUTH2(user, long)) + "\nS: 235 2.7.0 Accepted"
			},
		},
		{
			name: "AUTH refused at the 334 step", mech: upstream.MechXOAUTH2, token: long,
			script: func(string) string { return "C: AUTH XOAUTH2\nS: 504 5.5.4 unrecognized" + thenRSET },
			code:   504, enhanced: "5.5.4",
		},
		{
			name: "Gmail 401 challenge", mech: upstream.MechXOAUTH2, token: token,
			script: func(string) string {
				return "C: AUTH XOAUTH2 " + xo + "\nS: 334 " + challenge("401") + `
					C:
					S: 535-5.7.8 Username and Password not accepted. For more information, go to
					S: 535 5.7.8  https://support.google.com/mail/?p=BadCredentials` + thenRSET
			},
			code: 535, enhanced: "5.7.8", rejected: true, status: "401",
		},
		{
			name: "Gmail 400 challenge", mech: upstream.MechXOAUTH2, token: token,
			script: func(string) string {
				return "C: AUTH XOAUTH2 " + xo + "\nS: 334 " + challenge("400") + "\nC:\nS: 535 5.7.8 no" + thenRSET
			},
			code: 535, enhanced: "5.7.8", rejected: true, status: "400",
		},
		{
			name: "Gmail 403 challenge", mech: upstream.MechXOAUTH2, token: token,
			script: func(string) string {
				return "C: AUTH XOAUTH2 " + xo + "\nS: 334 " + challenge("403") + "\nC:\nS: 535 5.7.8 no" + thenRSET
			},
			code: 535, enhanced: "5.7.8", status: "403",
		},
		{
			name: "challenge that is not JSON is cancelled", mech: upstream.MechXOAUTH2, token: token,
			script: func(string) string {
				return "C: AUTH XOAUTH2 " + xo + "\nS: 334 what?\nC: *\nS: 501 5.7.0 cancelled" + thenRSET
			},
			code: 501, enhanced: "5.7.0",
		},
		{
			name: "Microsoft 535 5.7.3", mech: upstream.MechXOAUTH2, token: token,
			script: func(string) string {
				return "C: AUTH XOAUTH2 " + xo + "\nS: 535 5.7.3 Authentication unsuccessful [SN4PR0601CA0001.namprd06.prod.outlook.com]" + thenRSET
			},
			code: 535, enhanced: "5.7.3", plain: true,
		},
		{
			name: "Microsoft SMTP AUTH disabled", mech: upstream.MechXOAUTH2, token: token,
			script: func(string) string {
				return "C: AUTH XOAUTH2 " + xo + "\nS: 535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant." + thenRSET
			},
			code: 535, enhanced: "5.7.139",
		},
		{
			name: "Microsoft HVE token expiring", mech: upstream.MechXOAUTH2, token: token,
			script: func(string) string {
				return "C: AUTH XOAUTH2 " + xo + "\nS: 501 5.5.127 Invalid XOAUTH2 auth data - Token will expire soon" + thenRSET
			},
			code: 501, enhanced: "5.5.127", rejected: true,
		},
		{
			name: "Microsoft HVE invalid auth data", mech: upstream.MechXOAUTH2, token: token,
			script: func(string) string {
				return "C: AUTH XOAUTH2 " + xo + "\nS: 501 5.5.124 Invalid XOAUTH2 auth data" + thenRSET
			},
			code: 501, enhanced: "5.5.124", rejected: true,
		},
		{
			name: "OAUTHBEARER carries host and port", mech: upstream.MechOAUTHBEARER, token: token,
			script: func(port string) string {
				p, _ := strconv.Atoi(port)
				return "C: AUTH OAUTHBEARER " + b64(saslmech.OAuthBearer(user, "127.0.0.1", p, token)) + "\nS: 235 2.7.0 Accepted"
			},
		},
		{
			name: "OAUTHBEARER failure challenge answered with ^A", mech: upstream.MechOAUTHBEARER, token: token,
			script: func(port string) string {
				p, _ := strconv.Atoi(port)
				return "C: AUTH OAUTHBEARER " + b64(saslmech.OAuthBearer(user, "127.0.0.1", p, token)) +
					"\nS: 334 " + challenge("401") + "\nC: AQ==\nS: 535 5.7.8 no" + thenRSET
			},
			code: 535, enhanced: "5.7.8", rejected: true, status: "401",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newServerWith(t, func(addr string) string {
				_, port, _ := net.SplitHostPort(addr)
				return openPipelining + "\n" + tc.script(port)
			})
			c := mustDial(t, s, nil)
			err := c.Auth(context.Background(), tc.mech, user, tc.token)
			if err != nil && (strings.Contains(err.Error(), tc.token) || strings.Contains(err.Error(), "auth=Bearer")) {
				t.Errorf("error text leaks the token: %v", err)
			}
			if tc.code == 0 {
				if err != nil {
					t.Fatalf("Auth: %v", err)
				}
				s.wait(t)
				return
			}
			var ae *upstream.AuthError
			if !errors.As(err, &ae) {
				t.Fatalf("Auth = %v (%T), want *AuthError", err, err)
			}
			if ae.Reply.Code != tc.code || ae.Reply.Enhanced != tc.enhanced {
				t.Errorf("reply = %v, want %d %s", ae.Reply, tc.code, tc.enhanced)
			}
			if v := authVerdict(ae); (v == provider.TokenRejected) != tc.rejected || (v == provider.PlainRefusal) != tc.plain {
				t.Errorf("provider.ClassifyAuth = %d, want token rejected %v, plain refusal %v", v, tc.rejected, tc.plain)
			}
			switch {
			case tc.status == "" && ae.Challenge != nil:
				t.Errorf("Challenge = %+v, want none", ae.Challenge)
			case tc.status != "" && (ae.Challenge == nil || ae.Challenge.Status != tc.status):
				t.Errorf("Challenge = %+v, want status %s", ae.Challenge, tc.status)
			}
			if c.Broken() {
				t.Fatal("refused AUTH broke the session")
			}
			if err := c.Reset(context.Background()); err != nil {
				t.Errorf("Reset after refused AUTH: %v", err)
			}
			s.wait(t)
		})
	}
}

func TestAuth_retryAfterRejectedToken(t *testing.T) {
	t.Parallel()
	const fresh = "ya29.fresh"
	s := newServer(t, openPipelining+`
		C: AUTH XOAUTH2 `+b64(saslmech.XOAUTH2(user, token))+`
		S: 334 `+challenge("401")+`
		C:
		S: 535 5.7.8 Username and Password not accepted
		C: AUTH XOAUTH2 `+b64(saslmech.XOAUTH2(user, fresh))+`
		S: 235 2.7.0 Accepted`)
	c := mustDial(t, s, nil)
	var ae *upstream.AuthError
	if err := c.Auth(context.Background(), upstream.MechXOAUTH2, user, token); !errors.As(err, &ae) || authVerdict(ae) != provider.TokenRejected {
		t.Fatalf("first Auth = %v, want a rejected token", err)
	}
	if err := c.Auth(context.Background(), upstream.MechXOAUTH2, user, fresh); err != nil {
		t.Fatalf("second Auth: %v", err)
	}
	s.wait(t)
}

func TestAuth_failures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mech   upstream.Mechanism
		user   string
		script string
		is     error
		broken bool
	}{
		{name: "unknown mechanism", mech: "PLAIN", user: user, is: upstream.ErrUsage},
		{name: "control character in user", mech: upstream.MechXOAUTH2, user: "a\x01auth=Bearer x", is: upstream.ErrUsage},
		{name: "connection lost", mech: upstream.MechXOAUTH2, user: user, script: "C: AUTH *\nclose", broken: true},
		{name: "second 334 leaves the exchange open", mech: upstream.MechXOAUTH2, user: user,
			script: "C: AUTH *\nS: 334 " + challenge("401") + "\nC:\nS: 334 more?", broken: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, openPipelining+"\n"+tc.script)
			c := mustDial(t, s, nil)
			err := c.Auth(context.Background(), tc.mech, tc.user, token)
			if err == nil {
				t.Fatal("Auth succeeded")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Auth = %v, want %v", err, tc.is)
			}
			if strings.Contains(err.Error(), token) {
				t.Errorf("error text leaks the token: %v", err)
			}
			if c.Broken() != tc.broken {
				t.Errorf("Broken = %v, want %v", c.Broken(), tc.broken)
			}
		})
	}
}

// authVerdict is what the account layer reads from a refused AUTH.
func authVerdict(ae *upstream.AuthError) provider.Auth {
	return provider.ClassifyAuth(ae.Reply, ae.Challenge != nil, ae.Challenge != nil && ae.Challenge.TokenRejected())
}
