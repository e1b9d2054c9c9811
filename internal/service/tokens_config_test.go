package service

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
)

// An internal test: tokenConfig and refresherOptions are where config.json
// and accounts.json meet package token, and nothing outside the service
// can see what they hand over.

// TestTokenConfig_settingsReachTokenSources loads a config.json and an
// accounts.json that set every token setting away from its default, and
// checks that each one arrives in the account's token.Config and in the
// Refresher's options: the provider's retry and circuit_breaker blocks,
// an account's overrides of both, its scope, the global refresh buffer
// and oauth2_timeout, and the worker counts and pre-warm mode.
func TestTokenConfig_settingsReachTokenSources(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfgPath := write("config.json", map[string]any{
		"global": map[string]any{
			"timeouts": map[string]any{"oauth2_timeout": 7},
			"oauth2": map[string]any{
				"token_refresh_buffer_seconds": 900,
				"num_token_refresh_workers":    3,
				"num_token_fetching_workers":   4,
				"token_prewarm":                "all",
			},
		},
		"providers": map[string]any{"gmail": map[string]any{
			"retry":           map[string]any{"backoff_factor": 3, "max_delay_seconds": 45, "jitter_enabled": false},
			"circuit_breaker": map[string]any{"enabled": true, "failure_threshold": 7, "recovery_timeout_seconds": 90},
		}},
	})
	acct := func(id string) map[string]any {
		return map[string]any{
			"account_id": id, "email": id + "@example.com", "provider": "gmail",
			"client_id": "cid", "client_secret": "csecret", "refresh_token": "rt-" + id,
			"oauth_token_url": "https://oauth2.example.test/token",
		}
	}
	inherits := acct("inherits")
	inherits["scope"] = "https://mail.google.com/ openid"
	overrides := acct("overrides")
	overrides["retry"] = map[string]any{"backoff_factor": 1.5, "max_delay_seconds": 12, "jitter_enabled": true}
	overrides["circuit_breaker"] = map[string]any{"enabled": false}
	accPath := write("accounts.json", map[string]any{"accounts": []any{inherits, overrides}})

	snap, _, err := config.Load(config.LoadOptions{ConfigPath: cfgPath, AccountsPath: accPath, ConfigExplicit: true, SearchDirs: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Accounts) != 2 {
		t.Fatalf("%d accounts loaded", len(snap.Accounts))
	}
	g := snap.Global

	got := tokenConfig(snap.Accounts[0], g)
	if got.Account != "inherits" || got.ClientID != "cid" || got.ClientSecret.Reveal() != "csecret" ||
		got.RefreshToken.Reveal() != "rt-inherits" || got.TokenURL != "https://oauth2.example.test/token" {
		t.Errorf("credential not passed on: %+v", got)
	}
	if got.Scope != "https://mail.google.com/ openid" {
		t.Errorf("Scope = %q, want the account's scope", got.Scope)
	}
	if got.RefreshBuffer != 900*time.Second {
		t.Errorf("RefreshBuffer = %v, want token_refresh_buffer_seconds 900s", got.RefreshBuffer)
	}
	if got.Timeout != 7*time.Second {
		t.Errorf("Timeout = %v, want oauth2_timeout 7s", got.Timeout)
	}
	if want := (token.Backoff{Base: time.Second, Factor: 3, Max: 45 * time.Second, Jitter: false}); got.Retry != want {
		t.Errorf("Retry = %+v, want the provider's retry block %+v", got.Retry, want)
	}
	if want := (token.Breaker{Threshold: 7, Recovery: 90 * time.Second}); got.Breaker != want {
		t.Errorf("Breaker = %+v, want the provider's circuit_breaker block %+v", got.Breaker, want)
	}

	got = tokenConfig(snap.Accounts[1], g)
	if got.Scope != "" {
		t.Errorf("Scope = %q for an account without one", got.Scope)
	}
	if want := (token.Backoff{Base: time.Second, Factor: 1.5, Max: 12 * time.Second, Jitter: true}); got.Retry != want {
		t.Errorf("Retry = %+v, want the account's retry block %+v", got.Retry, want)
	}
	if got.Breaker != (token.Breaker{}) {
		t.Errorf("Breaker = %+v, want off (the account's circuit_breaker.enabled false)", got.Breaker)
	}

	ro := refresherOptions(g.Tokens)
	if ro.Workers != 3 || ro.FetchWorkers != 4 || ro.Prewarm != token.PrewarmAll {
		t.Errorf("refresher options %+v, want 3 refresh workers, 4 fetching workers, pre-warm all", ro)
	}
}
