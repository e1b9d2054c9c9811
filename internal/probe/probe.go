package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/service"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
)

// Options say where the files are.
type Options struct {
	Load config.LoadOptions
	// Logger receives the service's log lines (token requests, upstream
	// sessions); nil discards them.
	Logger *slog.Logger
}

// Probe holds the accounts as the service builds them.
type Probe struct {
	svc *service.Service
}

// ErrNoAccount is returned for a name no account has.
var ErrNoAccount = errors.New("no such account")

// Open loads the configuration and builds every account like the proxy
// does at start-up. Nothing is contacted until Token or Send.
func Open(o Options) (*Probe, error) {
	svc, err := service.New(service.Options{
		Load:   o.Load,
		Logger: o.Logger,
		// Only the admin side, and no admin address: every account is
		// built, no listener is opened.
		Admin: service.AdminOptions{Only: true},
	})
	if err != nil {
		return nil, err
	}
	return &Probe{svc: svc}, nil
}

// Close QUITs the upstream session Send opened and closes the Redis
// client of cluster mode.
func (p *Probe) Close() {
	p.svc.Reg.Close()
	p.svc.Close() // cluster mode: the Redis client
}

// Snapshot is the configuration loaded.
func (p *Probe) Snapshot() *config.Snapshot { return p.svc.Snapshot() }

func (p *Probe) account(name string) (*account.Account, error) {
	a := p.svc.Reg.Find(name)
	if a == nil {
		return nil, fmt.Errorf("%s: %w in %s", name, ErrNoAccount, p.svc.Snapshot().AccountsPath)
	}
	if a.Tokens() == nil || a.Sessions() == nil {
		return nil, fmt.Errorf("%s: account has no token source", name)
	}
	return a, nil
}

// TokenReport is the outcome of Token.
type TokenReport struct {
	Account  *config.Account
	Status   token.Status
	Access   secret.String // the access token; show it only when asked to
	Duration time.Duration // of the request
}

// Token makes a token request for the account (email or account_id) now,
// whatever the state of any cached token, and reports the account's token
// state afterwards. The error is the request's; the report is filled
// either way.
func (p *Probe) Token(ctx context.Context, name string) (TokenReport, error) {
	a, err := p.account(name)
	if err != nil {
		return TokenReport{}, err
	}
	start := time.Now()
	// An empty stale token forces a request (token.Source.Refresh).
	tok, err := a.Tokens().Refresh(ctx, secret.String{})
	return TokenReport{Account: a.Cfg, Status: a.Tokens().Status(), Access: tok.Access, Duration: time.Since(start)}, err
}
