package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/admin"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/console"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/quota"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
)

// AdminOptions configure the admin API.
type AdminOptions struct {
	// Listen is the admin address; "" means no admin API. The command
	// line default is 127.0.0.1:9090 (loopback: COMPAT.md defect 3).
	Listen string
	// Token is the bearer token; empty refuses every /admin route.
	Token secret.String
	// Only runs the admin API without the SMTP listener (--admin-only).
	Only bool
	// MetricsPerAccount adds per-account series (cardinality: opt-in).
	MetricsPerAccount bool
	Version           string
	// Onboarding and Cluster feed the console's pages of the same names
	// (package console); nil: the onboarding page says how to configure
	// it, the cluster page is hidden.
	Onboarding console.Onboarding
	Cluster    console.Cluster
}

// minAdminTokenChars is the shortest admin token the service accepts: the
// token lets its holder change every account, so it must not be
// guessable. openssl rand -hex 32 makes one of 64.
const minAdminTokenChars = 32

// check refuses a token short enough to guess. No token is allowed: the
// admin routes are then refused.
func (o AdminOptions) check() error {
	if o.Token.Empty() {
		return nil
	}
	if n := utf8.RuneCountInString(o.Token.Reveal()); n < minAdminTokenChars {
		return fmt.Errorf("admin token is %d characters; it must be at least %d: make one with "+
			"\"openssl rand -hex 32 > admin-token\" (mode 0600) and pass --admin-token-file admin-token", n, minAdminTokenChars)
	}
	return nil
}

// listenAdmin opens the admin listener when one is configured.
func (s *Service) listenAdmin() error {
	o := s.opts.Admin
	if o.Listen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("admin listen %s: %w", o.Listen, err)
	}
	s.adminLn = ln
	return nil
}

// startAdmin serves the admin API when configured; the returned function
// stops it and waits.
func (s *Service) startAdmin() (func(), error) {
	o := s.opts.Admin
	if o.Only {
		s.ready.Store(true)
	}
	if s.adminLn == nil {
		return func() {}, nil
	}
	if o.Token.Empty() {
		s.log.Warn("admin API has no token: /admin routes are refused; set --admin-token-file or XOAUTH2_PROXY_ADMIN_TOKEN")
	}
	ln := s.adminLn
	api := admin.New(s, admin.Options{Token: o.Token, Version: o.Version, Logger: s.log, Gatherer: s.metrics, Registerer: s.metrics,
		Feedback: s.feedbackStatus})
	s.feedbackRoutes(api) // feedback.go
	if s.onboard != nil {
		api.HandleInvitations(s.onboard) // onboarding.go
	}
	// The console's pages at "/", the API's routes unchanged beside them.
	invites := o.Onboarding
	if invites == nil && s.onboard != nil {
		invites = consoleInvitations{s.onboard} // console.go
	}
	clusterPage := o.Cluster
	if clusterPage == nil && s.cluster.client != nil {
		clusterPage = consoleCluster{s.cluster.client} // console.go
	}
	handler := console.New(console.Options{API: api, Backend: s, Onboarding: invites, Cluster: clusterPage, Logger: s.log})
	hs := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      120 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	// Stopped last, after the SMTP side: /readyz says "not ready" meanwhile.
	stop := s.serveHTTP("admin API", ln, hs, "", "") // httpserve.go
	s.log.Info("admin API listening", "addr", ln.Addr().String())
	return stop, nil
}

// adminShutdownTimeout bounds the admin API's graceful shutdown.
const adminShutdownTimeout = 5 * time.Second

// AdminAddr is the admin API's address, or nil without one.
func (s *Service) AdminAddr() net.Addr {
	if s.adminLn == nil {
		return nil
	}
	return s.adminLn.Addr()
}

// The admin.Backend implementation.

// Registry implements admin.Backend.
func (s *Service) Registry() *account.Registry { return s.Reg }

// Ready implements admin.Backend.
func (s *Service) Ready() bool { return s.ready.Load() }

// VerifyCredentials implements admin.Backend: one real token request,
// through a source backed by the token state file, so that a refresh token
// the provider rotates during verification is kept (COMPAT.md defect 6).
func (s *Service) VerifyCredentials(ctx context.Context, c *config.Account) error {
	src, err := s.tokenSource(c, s.Snapshot().Global, nil)
	if err != nil {
		return err
	}
	_, err = src.Token(ctx)
	return err
}

// TokenStatus implements admin.Backend.
func (s *Service) TokenStatus(a *account.Account) admin.TokenStatus {
	tk := a.Tokens()
	if tk == nil {
		return admin.TokenStatus{State: "none"}
	}
	return tokenStatus(tk)
}

// RefreshToken implements admin.Backend.
func (s *Service) RefreshToken(ctx context.Context, a *account.Account) error {
	tk := a.Tokens()
	if tk == nil {
		return errors.New("no token source (dry-run)")
	}
	// An operator's refresh also lifts a needs_consent hold (the
	// credential may have been fixed at the provider).
	tk.Reset()
	tok, _ := tk.Cached()
	_, err := tk.Refresh(ctx, tok.Access)
	return err
}

// Budget implements admin.Backend.
func (s *Service) Budget(a *account.Account) (quota.Status, bool) { return a.Budget().Status() }

// tokenStatus maps a token source's state for the API.
func tokenStatus(src *token.Source) admin.TokenStatus {
	st := src.Status()
	return admin.TokenStatus{
		State: string(st.State), Expiry: st.Expiry, LastError: st.LastError,
		LastRefresh: st.LastRefresh, NextRefresh: st.NextRefresh, Failures: st.Failures,
		Final: st.State == token.StateNeedsConsent,
	}
}
