package account

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/pool"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

// ErrBadCredentials is the one answer to every failed AUTH.
var ErrBadCredentials = reply.New(535, "5.7.8", "Authentication credentials invalid")

// Account is one configured account with its runtime state.
type Account struct {
	Cfg    *config.Account
	Tokens *token.Source
	Pool   *pool.Pool[*upstream.Client]

	inflight atomic.Int64
	verified atomic.Pointer[[sha256.Size]byte] // HMAC of the last password that verified
}

// Name identifies the account in logs.
func (a *Account) Name() string { return a.Cfg.ID }

// Acquire counts one more message in flight; it fails when the account is
// at its MaxConcurrentMessages.
func (a *Account) Acquire() bool {
	if n := a.inflight.Add(1); a.Cfg.MaxConcurrentMessages > 0 && n > int64(a.Cfg.MaxConcurrentMessages) {
		a.inflight.Add(-1)
		return false
	}
	return true
}

// Done ends one message started with Acquire.
func (a *Account) Done() { a.inflight.Add(-1) }

// Inflight returns the messages in flight.
func (a *Account) Inflight() int64 { return a.inflight.Load() }

// Options configure a Registry.
type Options struct {
	Trusted   []netip.Prefix // networks where password-less accounts may AUTH
	FailDelay time.Duration  // every failed AUTH waits this long; default 1s, negative for none
	Logger    *slog.Logger
}

// Registry finds accounts by AUTH username.
type Registry struct {
	opts     Options
	log      *slog.Logger
	key      [32]byte
	dummy    []byte // bcrypt hash burnt for unknown users, for equal timing
	byName   map[string]*Account
	accounts []*Account
}

// Build makes the runtime state of one account.
type Build func(*config.Account) (*Account, error)

// NewRegistry builds every account of snap.
func NewRegistry(snap *config.Snapshot, build Build, opts Options) (*Registry, error) {
	if opts.FailDelay == 0 {
		opts.FailDelay = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Registry{opts: opts, log: opts.Logger, byName: make(map[string]*Account, 2*len(snap.Accounts))}
	if _, err := rand.Read(r.key[:]); err != nil {
		return nil, fmt.Errorf("account registry: %w", err)
	}
	var err error
	if r.dummy, err = bcrypt.GenerateFromPassword([]byte("no such account"), bcrypt.DefaultCost); err != nil {
		return nil, fmt.Errorf("account registry: %w", err)
	}
	for _, c := range snap.Accounts {
		a, err := build(c)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("account %s: %w", c.ID, err)
		}
		r.accounts = append(r.accounts, a)
		r.byName[strings.ToLower(c.Email)] = a
		if _, taken := r.byName[strings.ToLower(c.ID)]; !taken {
			r.byName[strings.ToLower(c.ID)] = a
		}
	}
	return r, nil
}

// Lookup finds an account by email (any case) or account_id.
func (r *Registry) Lookup(name string) *Account {
	if a, ok := r.byName[name]; ok {
		return a
	}
	return r.byName[strings.ToLower(name)]
}

// All returns every account in configuration order.
func (r *Registry) All() []*Account { return r.accounts }

// Authenticate checks an AUTH username and password from remote.
func (r *Registry) Authenticate(ctx context.Context, user, pass string, remote netip.Addr) (*Account, error) {
	a := r.Lookup(user)
	ok, why := r.check(a, pass, remote)
	if ok {
		return a, nil
	}
	r.log.Info("auth failed", "user", user, "remote", remote.String(), "reason", why)
	if r.opts.FailDelay > 0 {
		t := time.NewTimer(r.opts.FailDelay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	return nil, ErrBadCredentials
}

func (r *Registry) check(a *Account, pass string, remote netip.Addr) (bool, string) {
	if a == nil {
		_ = bcrypt.CompareHashAndPassword(r.dummy, []byte(pass))
		return false, "unknown user"
	}
	c := a.Cfg
	if c.SMTPPassword.Empty() {
		for _, p := range r.opts.Trusted {
			if p.Contains(remote.Unmap()) {
				return true, ""
			}
		}
		_ = bcrypt.CompareHashAndPassword(r.dummy, []byte(pass))
		return false, "account has no smtp_password and client is not in trusted_networks"
	}
	if !c.PasswordHashed {
		want := c.SMTPPassword.Reveal()
		if subtle.ConstantTimeCompare([]byte(pass), []byte(want)) == 1 {
			return true, ""
		}
		return false, "wrong password"
	}
	mac := r.mac(a, pass)
	if v := a.verified.Load(); v != nil && hmac.Equal(v[:], mac[:]) {
		return true, ""
	}
	if err := bcrypt.CompareHashAndPassword([]byte(c.SMTPPassword.Reveal()), []byte(pass)); err != nil {
		return false, "wrong password"
	}
	a.verified.Store(&mac)
	return true, ""
}

func (r *Registry) mac(a *Account, pass string) [sha256.Size]byte {
	h := hmac.New(sha256.New, r.key[:])
	h.Write([]byte(a.Cfg.ID))
	h.Write([]byte{0})
	h.Write([]byte(pass))
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// Sweep closes idle upstream sessions past their timeouts, in every pool.
func (r *Registry) Sweep() {
	for _, a := range r.accounts {
		if a.Pool != nil {
			a.Pool.Sweep()
		}
	}
}

// Close closes every account's pool.
func (r *Registry) Close() {
	for _, a := range r.accounts {
		if a.Pool != nil {
			a.Pool.Close()
		}
	}
}

// HashPassword returns a bcrypt hash for smtp_password.
func HashPassword(pass string) (string, error) {
	if pass == "" {
		return "", errors.New("empty password")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pass), 12)
	return string(h), err
}
