package account

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/pool"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/provider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

// SessionOptions are the parts of opening a session shared by all
// accounts.
type SessionOptions struct {
	HeloName     string
	TLSConfig    *tls.Config // base upstream TLS settings (RootCAs); nil: system roots
	BindSourceIP bool        // use the account's ip_address as source
	AllowIPv6    bool        // use_ipv6: an IPv6 ip_address may be bound
	// LocalIPs, when non-nil, are the addresses present on this host
	// (validate_source_ip): an ip_address not among them refuses to send.
	LocalIPs       map[netip.Addr]bool
	CommandTimeout time.Duration
	// NoChunking keeps bodies on DATA even where the upstream offers
	// CHUNKING (upstream_chunking false).
	NoChunking bool
	// OpenTimeout bounds opening one session: connect, TLS, EHLO, token,
	// AUTH; 0 means 60s. (Waiting for a free session is bounded apart, by
	// the wait given to Lease.)
	OpenTimeout time.Duration
	// ShrinkFor is how long an account's session cap stays lowered after
	// the provider refused a session for concurrency; 0 means 1m.
	ShrinkFor time.Duration
	// Dial replaces the network dialer (tests, the benchmark's latency relay).
	Dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	Metrics *Metrics // nil: unregistered
	Logger  *slog.Logger
	// Slots, when set, holds a slot of the account's cap shared with
	// other proxies for each open session (cluster mode, slots.go); nil:
	// the local pool's cap alone.
	Slots SlotGate
}

// TokenSource is what opening a session needs of the account's tokens.
// *token.Source implements it.
type TokenSource interface {
	// Token returns a valid access token, cached or new.
	Token(ctx context.Context) (token.Token, error)
	// Refresh replaces stale, the token the upstream refused.
	Refresh(ctx context.Context, stale secret.String) (token.Token, error)
	// Cached returns the token Token would return without a request.
	Cached() (token.Token, bool)
}

// SourceIPError means an account's ip_address cannot be used, so the
// account does not send at all rather than send from another address.
type SourceIPError struct {
	Addr   netip.Addr
	Reason string
}

func (e *SourceIPError) Error() string { return "source address " + e.Addr.String() + " " + e.Reason }

// defaultOpenTimeout is SessionOptions.OpenTimeout's default.
const defaultOpenTimeout = 60 * time.Second

// ErrTokenRejected means the upstream refused a freshly refreshed token.
var ErrTokenRejected = errors.New("upstream rejected the access token")

// Dialer returns the function that opens one authenticated session of
// account a: connect, TLS, EHLO, then AUTH with a token from tokens.
func Dialer(a *config.Account, tokens TokenSource, o SessionOptions) func(ctx context.Context) (*upstream.Client, error) {
	cfg := upstream.Config{
		Addr:           a.SMTPAddr,
		TLS:            a.TLS,
		HeloName:       o.HeloName,
		Dial:           o.Dial,
		CommandTimeout: o.CommandTimeout,
		NoChunking:     o.NoChunking,
		// Shared by every account, not cloned for each (a clone is about
		// 470 bytes, 47 MB at 100,000 accounts): upstream.Dial clones it
		// for each session and nothing changes it after start.
		TLSConfig: o.TLSConfig,
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := o.Metrics
	if m == nil {
		m = NewMetrics(nil)
	}
	var srcErr error
	if ip := a.IPAddress.Unmap(); o.BindSourceIP && ip.IsValid() {
		cfg.LocalAddr = ip
		switch {
		case ip.Is6() && !o.AllowIPv6:
			srcErr = &SourceIPError{Addr: ip, Reason: "is IPv6 and use_ipv6 is off"}
		case o.LocalIPs != nil && !o.LocalIPs[ip]:
			srcErr = &SourceIPError{Addr: ip, Reason: "is not configured on this host"}
		}
	}
	openTimeout := o.OpenTimeout
	if openTimeout <= 0 {
		openTimeout = defaultOpenTimeout
	}
	return func(ctx context.Context) (*upstream.Client, error) {
		if srcErr != nil {
			// Never fall back to another source address (COMPAT.md).
			return nil, srcErr
		}
		ctx, cancel := context.WithTimeout(ctx, openTimeout)
		defer cancel()
		start := time.Now()
		c, err := upstream.Dial(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("open session to %s: %w", cfg.Addr, err)
		}
		if err := authenticate(ctx, c, a, tokens); err != nil {
			c.Close()
			var ae *upstream.AuthError
			if errors.As(err, &ae) {
				m.upstreamAuth.WithLabelValues("failure").Inc()
			}
			return nil, err
		}
		m.upstreamAuth.WithLabelValues("success").Inc()
		m.upstreamAuthTime.Observe(time.Since(start).Seconds())
		log.Info("upstream session opened", "account", a.ID, "upstream", cfg.Addr, "ms", time.Since(start).Milliseconds())
		return c, nil
	}
}

// authenticate runs AUTH with a cached or fresh token. A token the
// upstream rejects (Gmail's 400/401 challenge, Microsoft HVE's 501
// 5.5.127/5.5.124), and a cached token refused with a plain 535 (Microsoft:
// revoked or expired early, PROVIDERS.md), is dropped, refreshed once and
// AUTH tried once more; a refusal after that is final for this session.
// A token just issued and refused with a plain 535 is not refreshed: a new
// one would fare no better (the mailbox may not send at all).
func authenticate(ctx context.Context, c *upstream.Client, a *config.Account, tokens TokenSource) error {
	before, cached := tokens.Cached()
	tok, err := tokens.Token(ctx) // also marks the account in use
	if err != nil {
		return err
	}
	cached = cached && tok.Access == before.Access
	err = c.Auth(ctx, a.Mechanism, a.Email, tok.Access.Reveal())
	var ae *upstream.AuthError
	if !errors.As(err, &ae) || c.Broken() {
		return err
	}
	if v := authVerdict(ae); v != provider.TokenRejected && !(cached && v == provider.PlainRefusal) {
		return err
	}
	tok, err = tokens.Refresh(ctx, tok.Access)
	if err != nil {
		return err
	}
	if err := c.Auth(ctx, a.Mechanism, a.Email, tok.Access.Reveal()); err != nil {
		return fmt.Errorf("%w after refresh: %w", ErrTokenRejected, err)
	}
	return nil
}

// authVerdict is what a refused AUTH says about the token (provider.ClassifyAuth).
func authVerdict(ae *upstream.AuthError) provider.Auth {
	return provider.ClassifyAuth(ae.Reply, ae.Challenge != nil, ae.Challenge != nil && ae.Challenge.TokenRejected())
}

// OpenError says why an account got no session: what its client is told
// and, for the operator, why. Its Reply never carries internal detail.
type OpenError struct {
	Reply reply.Reply
	// Reason is the errors_total error_type: busy, token, token_final,
	// concurrency_refused, rate_refused, source_ip, upstream_auth,
	// connect, timeout.
	Reason string
	// Refusal is what the provider refused the session for, when it
	// refused it for the account (provider.Concurrency, LoginRate, Rate);
	// provider.Normal otherwise. ProviderReply is then its reply.
	Refusal       provider.Kind
	ProviderReply *reply.Reply
	// Log is the operator's line for it; Severe marks a misconfiguration
	// (logged as an error), not a passing failure.
	Log    string
	Severe bool
	Err    error // the cause, for the log only
}

func (e *OpenError) Error() string {
	return "open upstream session: " + e.Reason + ": " + e.Err.Error()
}
func (e *OpenError) Unwrap() error { return e.Err }

// openFailure maps a failure to open a session of the account with
// address email into the client's reply and its reason.
func openFailure(email string, err error) *OpenError {
	e := &OpenError{Err: err, Reason: "connect"}
	var te *token.Error
	var se *SourceIPError
	var ae *upstream.AuthError
	var ue *upstream.Error
	if rp, kind := sessionRefusal(err); rp != nil {
		e.Refusal, e.ProviderReply = kind, rp
		e.Reply = reply.New(451, "4.7.0", email+": provider says: "+rp.String())
		if kind == provider.Rate {
			// Gmail's 421 4.7.0 "Try again later": the account's
			// rate, not its sessions; the cool-down holds it back.
			e.Reason, e.Log = "rate_refused", "provider refused a session for the account's rate"
		} else {
			// PROVIDERS.md: 421 4.3.0 / 454 4.7.0 (Gmail), 432 4.3.2
			// (Microsoft) mean "too many sessions": hold back instead of
			// hammering the account.
			e.Reason, e.Log = "concurrency_refused", "provider refused another session; lowering the account's session cap for a while"
		}
		return e
	}
	switch {
	case errors.Is(err, pool.ErrBusy):
		e.Reason, e.Log = "busy", "no upstream session free"
		e.Reply = reply.New(451, "4.7.0", email+": all upstream sessions busy, try again later")
	case errors.As(err, &se):
		e.Reason, e.Log, e.Severe = "source_ip", "account cannot send: its source address is unusable", true
		e.Reply = reply.New(451, "4.4.0", email+": configured source address unavailable, not sending from another one")
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		e.Reason, e.Log, e.Severe = "source_ip", "account cannot send: binding its source address failed", true
		e.Reply = reply.New(451, "4.4.0", email+": configured source address unavailable, not sending from another one")
	case errors.As(err, &te):
		e.Reason, e.Log = "token", "token refresh failed"
		e.Reply = reply.New(454, "4.7.0", email+": cannot obtain an OAuth2 access token, try again later")
		if te.Final {
			e.Reason = "token_final"
			e.Reply = reply.New(454, "4.7.0", email+": OAuth2 credentials rejected by the provider; account needs new consent")
		}
	case errors.As(err, &ae):
		e.Reason, e.Log, e.ProviderReply = "upstream_auth", "upstream authentication failed", &ae.Reply
		e.Reply = reply.New(454, "4.7.0", email+": upstream authentication failed: "+ae.Reply.String())
	case errors.As(err, &ue) && ue.Reply != nil:
		e.Log, e.ProviderReply = "upstream refused the session", ue.Reply
		e.Reply = reply.New(451, "4.4.0", "upstream refused the connection")
		if ue.Reply.Temporary() || ue.Reply.Permanent() {
			e.Reply = reply.New(451, "4.4.0", "upstream refused the connection: "+ue.Reply.String())
		}
	case errors.Is(err, context.DeadlineExceeded):
		e.Reason, e.Log = "timeout", "opening an upstream session timed out"
		e.Reply = reply.New(451, "4.4.1", "Upstream did not answer in time, try again later")
	default:
		e.Log = "cannot open upstream session"
		e.Reply = reply.New(451, "4.4.1", "Cannot connect to upstream, try again later")
	}
	return e
}

// sessionRefusal returns the provider's reply when a session was refused
// for too many sessions or logins, or for the account's rate
// (provider.ClassifySession), else nil.
func sessionRefusal(err error) (*reply.Reply, provider.Kind) {
	var rp *reply.Reply
	var ae *upstream.AuthError
	var ue *upstream.Error
	switch {
	case errors.As(err, &ae):
		rp = &ae.Reply
	case errors.As(err, &ue) && ue.Reply != nil:
		rp = ue.Reply
	default:
		return nil, provider.Normal
	}
	if k := provider.ClassifySession(*rp).Kind; k == provider.Concurrency || k == provider.LoginRate || k == provider.Rate {
		return rp, k
	}
	return nil, provider.Normal
}
