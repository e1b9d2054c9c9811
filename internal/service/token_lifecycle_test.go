package service_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/tokenstore"
)

// Every account of newEnv, by mailbox.
var envUsers = []string{userA, userNoPW, userOne, userPlain, userBound, userBadIP}

// withGlobal sets keys of config.json's "global" block (one level deep:
// "oauth2", "timeouts").
func withGlobal(block string, kv map[string]any) func(map[string]any, []map[string]any) {
	return func(cfg map[string]any, _ []map[string]any) {
		g := cfg["global"].(map[string]any)
		b, _ := g[block].(map[string]any)
		if b == nil {
			b = map[string]any{}
			g[block] = b
		}
		for k, v := range kv {
			b[k] = v
		}
	}
}

// tokenState is the proxy's token state of the account with that mailbox.
func tokenState(t *testing.T, e *env, email string) string {
	t.Helper()
	a := e.svc.Reg.Lookup(email)
	if a == nil {
		t.Fatalf("no account %s", email)
	}
	return e.svc.TokenStatus(a).State
}

// TestTokens_prewarmAllFetchesInBackground: with "token_prewarm": "all"
// and nothing persisted, every account's token is fetched after start
// without any client asking.
func TestTokens_prewarmAllFetchesInBackground(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{edit: withGlobal("oauth2", map[string]any{"token_prewarm": "all"})})
	waitUntil(t, "a token request for every account", func() bool {
		for _, u := range envUsers {
			if e.fp.TokenRequestsFor(u) == 0 {
				return false
			}
		}
		return true
	})
	waitUntil(t, "every account to hold a token", func() bool {
		for _, u := range envUsers {
			if a := e.svc.Reg.Lookup(u); e.svc.TokenStatus(a).Expiry.IsZero() {
				return false
			}
		}
		return true
	})
	if st := e.fp.Stats(); st.Connections != 0 {
		t.Errorf("%d SMTP connections to the provider; pre-warm fetches tokens only", st.Connections)
	}
	// The warm token serves the first message: no second request.
	relayOne(t, e, userA)
	if n := e.fp.TokenRequestsFor(userA); n != 1 {
		t.Errorf("%d token requests for %s, want the pre-warm's 1", n, userA)
	}
}

// TestTokens_prewarmRecentFetchesAccountUsedBeforeRestart: by default
// only accounts used before the restart are warmed. The state file says
// alice was busy but holds no access token for her; the restarted proxy
// fetches hers, and no other, before any client comes.
func TestTokens_prewarmRecentFetchesAccountUsedBeforeRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	relayOne(t, e, userA)
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(e.dir, tokenstore.DefaultFileName)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	state, err := tokenstore.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	ent, ok := state["alice"]
	if !ok || ent.LastUsed.IsZero() {
		t.Fatalf("state file has no use of alice: %+v", state)
	}
	ent.AccessToken, ent.Expiry, ent.Obtained = secret.String{}, time.Time{}, time.Time{}
	state["alice"] = ent
	if data, err = tokenstore.Encode(state); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}

	e2 := restart(t, e)
	waitUntil(t, "alice's token to be fetched again", func() bool {
		a := e2.svc.Reg.Lookup(userA)
		return e.fp.TokenRequestsFor(userA) == 2 && !e2.svc.TokenStatus(a).Expiry.IsZero()
	})
	for _, u := range envUsers[1:] {
		if n := e.fp.TokenRequestsFor(u); n != 0 {
			t.Errorf("%d token requests for %s, which was never used", n, u)
		}
	}
}

// TestTokens_startupDoesNotWaitForHangingTokenEndpoint: the token
// endpoint of every account hangs from the start. Pre-warm asks it, and
// while those requests still hang the listener greets, EHLO and AUTH work.
func TestTokens_startupDoesNotWaitForHangingTokenEndpoint(t *testing.T) {
	t.Parallel()
	hung, err := fakeprovider.Start(fakeprovider.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hung.Close() })
	hung.SetTokenFault("", fakeprovider.TokenFault{Hang: true})
	e := newEnv(t, envOptions{edit: func(cfg map[string]any, accts []map[string]any) {
		// Longer than the test: the requests hang until Close (or the
		// token transport's 30 s response-header timeout).
		withGlobal("timeouts", map[string]any{"oauth2_timeout": 120})(cfg, accts)
		withGlobal("oauth2", map[string]any{"token_prewarm": "all"})(cfg, accts)
		for _, a := range accts {
			a["oauth_token_url"] = hung.TokenURL()
		}
	}})
	waitUntil(t, "pre-warm requests at the hanging endpoint", func() bool {
		return hung.Stats().TokenRequests == int64(len(envUsers))
	})
	c := e.dial(t) // 220 and EHLO
	c.authPlain(userA, password, "235")
	c.cmd("NOOP", "250")
	for _, u := range envUsers {
		if st := tokenState(t, e, u); st != "refreshing" {
			t.Errorf("%s: token state %q, want the request still hanging", u, st)
		}
	}
	c.cmd("QUIT", "221")
	// The hanging requests end with the endpoint, then the proxy stops.
	hung.Close()
	if err := e.stop(); err != nil {
		t.Error(err)
	}
}

// TestAdmin_refreshLiftsNeedsConsent: once the grant works again at the
// provider, an operator's refresh takes the account out of needs_consent
// and it sends again. Until then the proxy does not ask the provider.
func TestAdmin_refreshLiftsNeedsConsent(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	e.fp.Revoke(userA)
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	c.cmd("MAIL FROM:<"+userA+">", "454 4.7.0 "+userA+": OAuth2 credentials rejected by the provider; account needs new consent")
	if st := tokenState(t, e, userA); st != "needs_consent" {
		t.Fatalf("token state %q, want needs_consent", st)
	}

	// The grant is fixed at the provider (new consent, same token).
	e.fp.AddAccount(fakeprovider.Account{Email: userA, ClientID: "cid", ClientSecret: "csecret", RefreshToken: "rt-alice"})
	c.cmd("MAIL FROM:<"+userA+">", "454 4.7.0 "+userA+": OAuth2 credentials rejected by the provider; account needs new consent")
	if n := e.fp.TokenRequestsFor(userA); n != 1 {
		t.Fatalf("%d token requests before the operator's refresh, want 1", n)
	}

	code, m, raw := e.call(t, "POST", "/admin/accounts/"+userA+"/refresh", adminToken, nil)
	if code != 200 || m["success"] != true {
		t.Fatalf("refresh: %d %s", code, raw)
	}
	if st := tokenState(t, e, userA); st != "ok" {
		t.Errorf("token state %q after the refresh, want ok", st)
	}
	c.deliver(userA, "r@example.net", "Subject: t\r\n\r\nx\r\n")
	c.cmd("QUIT", "221")
	if n := len(e.fp.Messages()); n != 1 {
		t.Errorf("%d messages delivered, want 1", n)
	}
}

// TestTokens_tokenEndpointFaults: a hanging token endpoint and one that
// answers 500 each cost their own account a 454 at MAIL, within
// oauth2_timeout, without marking it needs_consent; other accounts keep
// sending, and the account recovers once the endpoint does. Not parallel:
// the descriptor and goroutine counts must be its own.
func TestTokens_tokenEndpointFaults(t *testing.T) {
	fds := openFDs(t)
	t.Run("faults", func(t *testing.T) {
		e := newEnv(t, envOptions{edit: func(cfg map[string]any, accts []map[string]any) {
			withGlobal("timeouts", map[string]any{"oauth2_timeout": 1})(cfg, accts)
			// Background retries at most a second apart, so that recovery
			// is seen soon after the endpoint heals.
			cfg["providers"] = map[string]any{"gmail": map[string]any{"retry": map[string]any{"max_delay_seconds": 1}}}
		}})
		const noToken = "454 4.7.0 %s: cannot obtain an OAuth2 access token, try again later"
		for _, tc := range []struct {
			name, user string
			fault      fakeprovider.TokenFault
		}{
			{"hang", userA, fakeprovider.TokenFault{Hang: true}},
			{"500", userPlain, fakeprovider.TokenFault{Status: 500}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e.fp.SetTokenFault(tc.user, tc.fault)
				c := e.dial(t)
				c.authPlain(tc.user, password, "235")
				start := time.Now()
				c.cmd("MAIL FROM:<"+tc.user+">", strings.Replace(noToken, "%s", tc.user, 1))
				// oauth2_timeout (1 s) answers it, not the next bound in
				// line, the token transport's 30 s response-header timeout.
				if d := time.Since(start); d > 15*time.Second {
					t.Errorf("MAIL answered after %v; oauth2_timeout is 1s", d)
				}
				if n := e.fp.TokenRequestsFor(tc.user); n < 1 {
					t.Errorf("%d token requests", n)
				}
				// The request has ended and counts as a failure (for the
				// hang: ended by the proxy's oauth2_timeout).
				a := e.svc.Reg.Lookup(tc.user)
				waitUntil(t, "the failed request to be counted", func() bool { return e.svc.TokenStatus(a).Failures > 0 })
				if st := tokenState(t, e, tc.user); st == "needs_consent" {
					t.Errorf("a %s marked the account needs_consent", tc.name)
				}
				// The session goes on, and another account is untouched.
				c.cmd("RSET", "250")
				c.cmd("QUIT", "221")
				relayOne(t, e, userOne)
				if !e.svc.Ready() {
					t.Error("service not ready")
				}

				e.fp.SetTokenFault(tc.user, fakeprovider.TokenFault{})
				waitUntil(t, "the account to recover", func() bool { return tokenState(t, e, tc.user) == "ok" })
				relayOne(t, e, tc.user)
			})
		}
		if err := e.stop(); err != nil {
			t.Error(err)
		}
	})
	waitUntil(t, "descriptors to be released", func() bool { return openFDs(t) <= fds })
	goleak.VerifyNone(t)
}

// TestTokens_providerErrorLoggedWithoutSecrets: when a refresh fails, the
// provider's own error text is in the log, with the account's refresh
// token masked even where the provider echoes it, and never in the reply.
// No secret, and no access token, is in the log.
func TestTokens_providerErrorLoggedWithoutSecrets(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	e := newEnv(t, envOptions{logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	relayOne(t, e, userPlain) // an access token exists that must not leak

	const aadsts = "AADSTS700082: The refresh token has expired due to inactivity."
	e.fp.SetTokenFault(userA, fakeprovider.TokenFault{Status: 400, Code: "invalid_grant", Description: aadsts + " Token: rt-alice"})
	const transient = "backend overloaded, shard 17"
	e.fp.SetTokenFault(userOne, fakeprovider.TokenFault{Status: 500, Description: transient})

	c := e.dial(t)
	c.authPlain(userA, password, "235")
	got := c.cmd("MAIL FROM:<"+userA+">", "454 4.7.0 "+userA+": OAuth2 credentials rejected by the provider; account needs new consent")
	c.cmd("QUIT", "221")
	c = e.dial(t)
	c.authPlain(userOne, password, "235")
	got2 := c.cmd("MAIL FROM:<"+userOne+">", "454 4.7.0 "+userOne+": cannot obtain an OAuth2 access token")
	c.cmd("QUIT", "221")
	for _, r := range []string{got, got2} {
		if strings.Contains(r, "AADSTS") || strings.Contains(r, "shard") {
			t.Errorf("reply %q carries the provider's error", r)
		}
	}

	waitUntil(t, "both failures in the log", func() bool {
		s := logs.String()
		return strings.Contains(s, "AADSTS700082") && strings.Contains(s, transient)
	})
	s := logs.String()
	if !strings.Contains(s, aadsts) || !strings.Contains(s, "invalid_grant") {
		t.Errorf("the provider's invalid_grant text is not in the log:\n%s", s)
	}
	if found := secretsIn(s); len(found) > 0 {
		t.Errorf("log holds secrets %q:\n%s", found, s)
	}
	for _, tok := range e.fp.IssuedAccessTokens() {
		if strings.Contains(s, tok) {
			t.Errorf("log holds an access token")
		}
	}
}

// TestRelay_hveTokenRejectionRefreshedOnce: Microsoft HVE refuses the
// token at AUTH with 501 5.5.127 or 5.5.124 (PROVIDERS.md). The proxy
// refreshes once and tries AUTH once more on the same session; a second
// refusal is final for that message, with no further refresh or AUTH.
func TestRelay_hveTokenRejectionRefreshedOnce(t *testing.T) {
	t.Parallel()
	for _, hve := range []reply.Reply{
		reply.New(501, "5.5.127", "Invalid XOAUTH2 auth data - Token will expire soon"),
		reply.New(501, "5.5.124", "Invalid XOAUTH2 auth data"),
	} {
		t.Run(hve.Enhanced+"/retried", func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{provider: fakeprovider.Options{SessionFault: faultOn(map[int64]fakeprovider.Fault{
				1: {Stage: fakeprovider.StageAuth, Action: fakeprovider.ActReply, Reply: hve},
			})}})
			relayOne(t, e, userA)
			st := e.fp.Stats()
			if st.SessionFaults != 1 || st.TokenRefreshes != 2 || st.Logins != 1 || st.Connections != 1 || st.Messages != 1 {
				t.Errorf("provider stats %+v, want one refused AUTH, 2 tokens issued, one login on one connection, 1 message", st)
			}
		})
		t.Run(hve.Enhanced+"/gives up", func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{provider: fakeprovider.Options{SessionFault: faultOn(map[int64]fakeprovider.Fault{
				1: {Stage: fakeprovider.StageAuth, Action: fakeprovider.ActReply, Reply: hve, Repeat: true},
			})}})
			c := e.dial(t)
			c.authPlain(userA, password, "235")
			got := sendOne(c, userA, "r@example.net")
			if !strings.HasPrefix(got[0], "454 4.7.0 "+userA+": upstream authentication failed: 501 "+hve.Enhanced) {
				t.Fatalf("replies %q, want the upstream authentication failure", got)
			}
			st := e.fp.Stats()
			if st.SessionFaults != 2 || st.TokenRefreshes != 2 || st.Logins != 0 || st.Connections != 1 || st.Messages != 0 {
				t.Errorf("provider stats %+v, want 2 refused AUTHs, 2 tokens issued, one connection, nothing sent", st)
			}
		})
	}
}
