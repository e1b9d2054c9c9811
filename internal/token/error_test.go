package token_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
)

func TestToken_errorResponses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		status    int
		body      string
		wantCode  string
		wantDesc  string // substring of Description
		wantFinal bool
		wantText  string // exact Error() text when set
	}{
		{
			name: "google invalid_grant", status: 400,
			body:     `{"error":"invalid_grant","error_description":"Token has been expired or revoked."}`,
			wantCode: "invalid_grant", wantDesc: "Token has been expired or revoked.", wantFinal: true,
			wantText: "refresh gmail_1: token endpoint: 400 invalid_grant: Token has been expired or revoked.",
		},
		{
			name: "microsoft invalid_grant keeps AADSTS", status: 400,
			body:     `{"error":"invalid_grant","error_description":"AADSTS700082: The refresh token has expired due to inactivity.\r\nTrace ID: 0f3c\r\nCorrelation ID: 9a1b\r\nTimestamp: 2025-06-01 12:00:00Z","error_codes":[700082]}`,
			wantCode: "invalid_grant", wantDesc: "AADSTS700082: The refresh token has expired due to inactivity. Trace ID: 0f3c", wantFinal: true,
		},
		{name: "unauthorized_client 400", status: 400, body: `{"error":"unauthorized_client","error_description":"Unauthorized"}`, wantCode: "unauthorized_client", wantDesc: "Unauthorized", wantFinal: true},
		{name: "invalid_client 401", status: 401, body: `{"error":"invalid_client","error_description":"The OAuth client was not found."}`, wantCode: "invalid_client", wantDesc: "not found", wantFinal: true},
		{name: "invalid_request not final", status: 400, body: `{"error":"invalid_request","error_description":"AADSTS900144: missing scope"}`, wantCode: "invalid_request", wantDesc: "AADSTS900144"},
		{name: "dex dead refresh token under invalid_request", status: 400, body: `{"error":"invalid_request","error_description":"Refresh token is invalid or has already been claimed by another client."}`, wantCode: "invalid_request", wantDesc: "already been claimed", wantFinal: true},
		{name: "invalid_request missing refresh_token param not final", status: 400, body: `{"error":"invalid_request","error_description":"Missing required parameter: refresh_token"}`, wantCode: "invalid_request", wantDesc: "Missing"},
		{name: "AADSTS revoked under another error code", status: 400, body: `{"error":"invalid_request","error_description":"AADSTS50173: The provided grant has expired due to it being revoked."}`, wantCode: "invalid_request", wantDesc: "AADSTS50173", wantFinal: true},
		{name: "AADSTS consent missing", status: 400, body: `{"error":"consent_required","error_description":"AADSTS65001: The user or administrator has not consented."}`, wantCode: "consent_required", wantDesc: "AADSTS65001", wantFinal: true},
		{name: "AADSTS MFA required", status: 400, body: `{"error":"interaction_required","error_description":"AADSTS50076: Due to a configuration change you must use multi-factor authentication."}`, wantCode: "interaction_required", wantDesc: "AADSTS50076", wantFinal: true},
		{name: "AADSTS secret expired", status: 401, body: `{"error":"invalid_client","error_description":"AADSTS7000222: The provided client secret keys are expired."}`, wantCode: "invalid_client", wantDesc: "AADSTS7000222", wantFinal: true},
		{name: "AADSTS transient beats invalid_grant", status: 400, body: `{"error":"invalid_grant","error_description":"AADSTS90033: A transient error has occurred. Please try again."}`, wantCode: "invalid_grant", wantDesc: "AADSTS90033"},
		{name: "500 not final", status: 500, body: `{"error":"server_error"}`, wantCode: "server_error", wantText: "refresh gmail_1: token endpoint: 500 server_error"},
		{name: "500 with invalid_grant not final", status: 500, body: `{"error":"invalid_grant"}`, wantCode: "invalid_grant"},
		{name: "429 not final", status: 429, body: `{"error":"rate_limit_exceeded","error_description":"slow down"}`, wantCode: "rate_limit_exceeded", wantDesc: "slow down"},
		{name: "429 plain text", status: 429, body: "Too Many Requests\n", wantDesc: "Too Many Requests", wantText: "refresh gmail_1: token endpoint: 429: Too Many Requests"},
		{name: "502 html truncated", status: 502, body: "<html><body>\n<h1>Bad Gateway</h1>\x00\x1b[31m" + strings.Repeat("x", 100_000) + "</body></html>", wantDesc: "<html><body> <h1>Bad Gateway</h1>"},
		{name: "200 without access_token", status: 200, body: `{"token_type":"Bearer","expires_in":3600}`},
		{name: "200 not json", status: 200, body: `access_token=abc&expires_in=3600`},
		{name: "200 with error field", status: 200, body: `{"error":"invalid_grant","error_description":"odd"}`, wantCode: "invalid_grant", wantDesc: "odd"},
		{name: "200 bad expires_in", status: 200, body: `{"access_token":"abc","expires_in":"soon"}`},
		{name: "200 zero expires_in", status: 200, body: `{"access_token":"abc","expires_in":0}`},
		{name: "200 access token with control char", status: 200, body: `{"access_token":"a\u0001b","expires_in":3600}`},
		{name: "200 too large", status: 200, body: `{"access_token":"abc","pad":"` + strings.Repeat("x", 70_000) + `"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEndpoint(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			})
			_, err := mustSource(t, baseConfig(e, newClock())).Token(t.Context())
			var te *token.Error
			if !errors.As(err, &te) {
				t.Fatalf("err = %v, want *token.Error", err)
			}
			if te.Account != "gmail_1" || te.Status != tc.status || te.Code != tc.wantCode || te.Final != tc.wantFinal {
				t.Errorf("err = %+v, want status %d code %q final %v", te, tc.status, tc.wantCode, tc.wantFinal)
			}
			if errors.Is(err, token.ErrFinal) != tc.wantFinal {
				t.Errorf("errors.Is(err, ErrFinal) = %v, want %v", !tc.wantFinal, tc.wantFinal)
			}
			if !strings.Contains(te.Description, tc.wantDesc) {
				t.Errorf("Description = %q, want it to contain %q", te.Description, tc.wantDesc)
			}
			if len(te.Description) > 1100 || strings.ContainsFunc(te.Description, func(r rune) bool { return r < ' ' }) {
				t.Errorf("Description not truncated or sanitized: %q", te.Description)
			}
			if tc.wantText != "" && err.Error() != tc.wantText {
				t.Errorf("Error() = %q, want %q", err.Error(), tc.wantText)
			}
			if !strings.HasPrefix(err.Error(), "refresh gmail_1: token endpoint") {
				t.Errorf("Error() = %q lacks context", err.Error())
			}
		})
	}
}

func TestToken_finalErrorStopsRequestsUntilReset(t *testing.T) {
	t.Parallel()
	c := newClock()
	e := newEndpoint(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 2 {
			okToken(w, r, n) // e.g. the user consented again
			return
		}
		reply(w, 400, `{"error":"invalid_grant","error_description":"Bad Request"}`)
	})
	s := mustSource(t, baseConfig(e, c))
	first, err := s.Token(t.Context())
	if !errors.Is(err, token.ErrFinal) {
		t.Fatalf("Token = %v, %v; want a Final error", first, err)
	}
	for _, wait := range []time.Duration{time.Second, time.Minute, 24 * time.Hour} {
		c.Advance(wait)
		for _, call := range []func() error{
			func() error { _, err := s.Token(t.Context()); return err },
			func() error { _, err := s.Refresh(t.Context(), secret.String{}); return err },
		} {
			if err2 := call(); err2 != err {
				t.Errorf("after %v got %v, want the held error %v", wait, err2, err)
			}
		}
	}
	if n := e.count(); n != 1 {
		t.Errorf("%d requests after a Final error, want 1", n)
	}
	if st := s.Status(); st.State != token.StateNeedsConsent || !strings.Contains(st.LastError, "invalid_grant") || !st.NextRefresh.IsZero() {
		t.Errorf("Status = %+v, want needs_consent with the provider's error and no next refresh", st)
	}
	s.Reset()
	if tok, err := s.Token(t.Context()); err != nil || tok.Access.Reveal() != "at-2" {
		t.Errorf("after Reset: %v, %v", tok.Access.Reveal(), err)
	}
	if st := s.Status(); st.State != token.StateOK || st.LastError != "" || st.Failures != 0 {
		t.Errorf("Status after recovery = %+v", st)
	}
}

func TestError_textAndUnwrap(t *testing.T) {
	t.Parallel()
	cause := errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
	tests := []struct {
		name string
		err  *token.Error
		want string
	}{
		{"transport", &token.Error{Account: "a", Err: cause}, "refresh a: token endpoint: dial tcp 127.0.0.1:1: connect: connection refused"},
		{"code only", &token.Error{Account: "a", Code: "invalid_grant", Final: true}, "refresh a: token endpoint: invalid_grant"},
		{"status and err", &token.Error{Account: "a", Status: 200, Err: errors.New("response has no access_token")}, "refresh a: token endpoint: 200: response has no access_token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
			if errors.Unwrap(tc.err) != tc.err.Err {
				t.Error("Unwrap does not return Err")
			}
			if errors.Is(tc.err, token.ErrFinal) != tc.err.Final {
				t.Error("errors.Is(ErrFinal) disagrees with Final")
			}
		})
	}
}

// TestSecrets_neverInErrorsOrLogs plants a client secret, refresh tokens and
// an access token and drives every path that makes an error or a log line,
// including an endpoint that echoes the request back.
func TestSecrets_neverInErrorsOrLogs(t *testing.T) {
	t.Parallel()
	const (
		clientSecret = "GOCSPX-PLANTED_client+secret/1="
		refresh      = "1//0gPLANTED-refresh+token/x="
		rotated      = "M.C5PLANTED-rotated!refresh*token"
		access       = "ya29.PLANTED-access-token"
	)
	planted := []string{clientSecret, refresh, rotated, access}
	echo := func(w http.ResponseWriter, r *http.Request, status int, asJSON bool) {
		body := r.PostForm.Encode() + " " + strings.Join([]string{r.PostForm.Get("refresh_token"), r.PostForm.Get("client_secret")}, " ")
		if asJSON {
			reply(w, status, fmt.Sprintf(`{"error":%q,"error_description":%q}`, r.PostForm.Get("client_secret"), body))
			return
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
	tests := []struct {
		name    string
		handle  func(w http.ResponseWriter, r *http.Request, n int)
		timeout time.Duration
		closed  bool // endpoint shut down before the request
	}{
		{name: "success with rotation", handle: func(w http.ResponseWriter, _ *http.Request, _ int) {
			reply(w, 200, fmt.Sprintf(`{"access_token":%q,"expires_in":3600,"refresh_token":%q}`, access, rotated))
		}},
		{name: "json error echoing the request", handle: func(w http.ResponseWriter, r *http.Request, _ int) { echo(w, r, 400, true) }},
		{name: "text error echoing the request", handle: func(w http.ResponseWriter, r *http.Request, _ int) { echo(w, r, 500, false) }},
		{name: "success body that is not json", handle: func(w http.ResponseWriter, _ *http.Request, _ int) {
			reply(w, 200, "access_token="+access+"&refresh_token="+rotated)
		}},
		{name: "success with bad expires_in", handle: func(w http.ResponseWriter, _ *http.Request, _ int) {
			reply(w, 200, fmt.Sprintf(`{"access_token":%q,"expires_in":%q}`, access, access))
		}},
		{name: "timeout", timeout: 50 * time.Millisecond, handle: func(_ http.ResponseWriter, r *http.Request, _ int) { <-r.Context().Done() }},
		{name: "connection refused", closed: true, handle: okToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			e := newEndpoint(t, tc.handle)
			if tc.closed {
				e.Close()
			}
			cfg := baseConfig(e, newClock())
			cfg.ClientSecret = secret.New(clientSecret)
			cfg.RefreshToken = secret.New(refresh)
			cfg.Timeout = tc.timeout
			cfg.Logger = logger
			var rotatedGot secret.String
			cfg.OnRotate = func(s secret.String) { rotatedGot = s }
			s := mustSource(t, cfg)

			var out strings.Builder
			tok, err := s.Token(t.Context())
			fmt.Fprintf(&out, "%v %+v %#v %s\n", tok, tok, tok, rotatedGot)
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			_, err2 := s.Refresh(ctx, secret.New(access))
			for _, err := range []error{err, err2} {
				if err != nil {
					fmt.Fprintf(&out, "%v|%+v|%#v|%s\n", err, err, err, err.Error())
					var te *token.Error
					if errors.As(err, &te) {
						fmt.Fprintf(&out, "%+v %#v\n", *te, *te)
					}
				}
			}
			logger.Info("done", "token", tok, "err", err)
			out.WriteString(logs.String())
			for _, p := range planted {
				for _, form := range []string{p, url.QueryEscape(p)} {
					if strings.Contains(out.String(), form) {
						t.Errorf("planted secret %q leaked:\n%s", form, out.String())
					}
				}
			}
		})
	}
}

// TestSource_dexDeadRefreshTokenNeedsConsent: dex answers a revoked or
// already rotated refresh token with 400 invalid_request, not
// invalid_grant (issue 13, 3b). The account must stop asking and show
// needs_consent with the issuer's own words, not stay retrying.
func TestSource_dexDeadRefreshTokenNeedsConsent(t *testing.T) {
	t.Parallel()
	c := newClock()
	e := newEndpoint(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		reply(w, 400, `{"error":"invalid_request","error_description":"Refresh token is invalid or has already been claimed by another client."}`)
	})
	s := mustSource(t, baseConfig(e, c))
	if _, err := s.Token(t.Context()); !errors.Is(err, token.ErrFinal) {
		t.Fatalf("Token err = %v, want a Final error", err)
	}
	c.Advance(10 * time.Minute)
	_, _ = s.Token(t.Context())
	if n := e.count(); n != 1 {
		t.Errorf("%d requests, want 1: a dead grant is not asked again", n)
	}
	st := s.Status()
	if st.State != token.StateNeedsConsent || !strings.Contains(st.LastError, "already been claimed") {
		t.Errorf("Status = %+v, want needs_consent with dex's answer", st)
	}
}

// TestSource_googleTestingAppHint: a Google grant refused with
// invalid_grant about 7 days after its consent says, in the account's
// status, that the OAuth app is probably in "Testing" (issue 13).
func TestSource_googleTestingAppHint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		google   bool
		age      time.Duration // since consent; 0: unknown
		body     string
		wantHint bool
	}{
		{name: "google, 7 days", google: true, age: 7*24*time.Hour + time.Hour, body: `{"error":"invalid_grant","error_description":"Token has been expired or revoked."}`, wantHint: true},
		{name: "google, 3 days", google: true, age: 3 * 24 * time.Hour, body: `{"error":"invalid_grant","error_description":"Token has been expired or revoked."}`},
		{name: "google, consent unknown", google: true, body: `{"error":"invalid_grant","error_description":"Token has been expired or revoked."}`},
		{name: "not google", age: 7 * 24 * time.Hour, body: `{"error":"invalid_grant","error_description":"AADSTS70000"}`},
		{name: "google, invalid_client", google: true, age: 7 * 24 * time.Hour, body: `{"error":"invalid_client","error_description":"Unauthorized"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newClock()
			e := newEndpoint(t, func(w http.ResponseWriter, _ *http.Request, _ int) { reply(w, 400, tc.body) })
			cfg := baseConfig(e, c)
			cfg.Google = tc.google
			if tc.age > 0 {
				cfg.ConsentedAt = c.Now().Add(-tc.age)
			}
			s := mustSource(t, cfg)
			if _, err := s.Token(t.Context()); !errors.Is(err, token.ErrFinal) {
				t.Fatalf("err = %v, want Final", err)
			}
			st := s.Status()
			if got := strings.Contains(st.LastError, `"Testing"`); got != tc.wantHint || st.State != token.StateNeedsConsent {
				t.Errorf("status %+v: hint %v, want %v", st, got, tc.wantHint)
			}
		})
	}
}
