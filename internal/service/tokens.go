package service

import (
	"context"
	"sync"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/tokenstore"
)

// tokenRuntime is the token side of the service (issue "Token lifecycle"):
// the state file every account's token.Source persists to, opened when the
// first account is built, and the background Refresher started by Run.
// The state directory is the one of the first snapshot; a reload does not
// move it.
type tokenRuntime struct {
	mu    sync.Mutex
	store *tokenstore.Store
}

// tokenStore opens the state file on first use.
func (s *Service) tokenStore(g config.Global) (*tokenstore.Store, error) {
	s.tokens.mu.Lock()
	defer s.tokens.mu.Unlock()
	if s.tokens.store != nil {
		return s.tokens.store, nil
	}
	start := time.Now()
	st, err := tokenstore.Open(tokenstore.Options{Dir: g.Tokens.StateDir, Logger: s.log})
	if err != nil {
		return nil, err
	}
	s.log.Info("token state loaded", "file", st.Path(), "accounts", st.Len(), "ms", time.Since(start).Milliseconds())
	s.tokens.store = st
	return st, nil
}

// tokenSource builds the token source of one account (buildAccount);
// onBlocked, when not nil, is its token.Config.OnBlocked.
func (s *Service) tokenSource(c *config.Account, g config.Global, onBlocked func()) (*token.Source, error) {
	store, err := s.tokenStore(g)
	if err != nil {
		return nil, err
	}
	cfg := tokenConfig(c, g)
	cfg.Store, cfg.HTTPClient, cfg.Logger, cfg.OnBlocked = store, s.opts.HTTPClient, s.log, onBlocked
	cfg.Shared = s.sharedTokens() // shared.go: nil outside cluster mode
	return token.NewSource(cfg)
}

// tokenConfig maps an account's configuration to its token.Config, without
// the runtime parts (store, HTTP client, logger).
func tokenConfig(c *config.Account, g config.Global) token.Config {
	cfg := token.Config{
		Account:       c.ID,
		AuthType:      c.AuthType,
		TokenURL:      c.TokenURL,
		ClientID:      c.ClientID,
		ClientSecret:  c.ClientSecret,
		RefreshToken:  c.RefreshToken,
		Scope:         c.Scope,
		RefreshBuffer: g.TokenRefreshBuffer,
		Timeout:       g.Timeouts.OAuth2,
		// The retry block paces token retries; its max_attempts counts
		// upstream SMTP attempts only (docs/config.md).
		Retry:       token.Backoff{Base: time.Second, Factor: c.Retry.BackoffFactor, Max: c.Retry.MaxDelay, Jitter: c.Retry.Jitter},
		ConsentedAt: c.ConsentedAt,
		Google:      c.Provider == config.ProviderGmail,
	}
	if cb := c.CircuitBreaker; cb.Enabled {
		cfg.Breaker = token.Breaker{Threshold: cb.FailureThreshold, Recovery: cb.RecoveryTimeout}
	}
	switch {
	case c.ServiceAccount != nil:
		cfg.Subject, cfg.Issuer, cfg.KeyID, cfg.Signer = c.Email, c.ServiceAccount.ClientEmail, c.ServiceAccount.KeyID, c.ServiceAccount
	case c.Certificate != nil:
		cfg.Signer, cfg.CertThumbprint = c.Certificate, c.Certificate.Thumbprint[:]
	}
	return cfg
}

// refresherOptions maps the "global.oauth2" renewal settings to the
// Refresher's options, without the logger.
func refresherOptions(t config.Tokens) token.RefresherOptions {
	return token.RefresherOptions{
		Workers:      t.RefreshWorkers,
		FetchWorkers: t.FetchWorkers,
		Prewarm:      t.Prewarm,
	}
}

// tokenSources lists the token sources of the accounts in force.
func (s *Service) tokenSources() []*token.Source {
	all := s.Reg.All()
	out := make([]*token.Source, 0, len(all))
	for _, a := range all {
		if tk := a.Tokens(); tk != nil {
			out = append(out, tk)
		}
	}
	return out
}

// startTokens starts the background renewal (with the start-up pre-warm)
// and the state file's batched writer. The returned function stops both,
// waits for requests in flight and writes the state file one last time.
// Without token sources (dry-run) it does nothing.
func (s *Service) startTokens() (stop func()) {
	s.tokens.mu.Lock()
	store := s.tokens.store
	s.tokens.mu.Unlock()
	if store == nil {
		return func() {}
	}
	ro := refresherOptions(s.Snapshot().Global.Tokens)
	ro.Logger = s.log
	r := token.NewRefresher(s.tokenSources, ro)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.Run(ctx) })
	wg.Go(func() { store.Run(ctx) })
	return func() {
		cancel()
		wg.Wait()
		if err := store.Close(); err != nil {
			s.log.Error("token state not written at shutdown", "err", err)
		}
	}
}
