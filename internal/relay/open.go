package relay

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

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/logthrottle"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/pool"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/provider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/smtpd"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

// DialOptions are the parts of a session's set-up shared by all accounts.
type DialOptions struct {
	HeloName     string
	TLSConfig    *tls.Config // base upstream TLS settings (RootCAs); nil: system roots
	BindSourceIP bool        // use the account's ip_address as source
	AllowIPv6    bool        // use_ipv6: an IPv6 ip_address may be bound
	// LocalIPs, when non-nil, are the addresses present on this host
	// (validate_source_ip): an ip_address not among them refuses to send.
	LocalIPs       map[netip.Addr]bool
	CommandTimeout time.Duration
	// OpenTimeout bounds opening one session: connect, TLS, EHLO, token,
	// AUTH; 0 means 60s. (Waiting for a free session is bounded apart, by
	// Options.AcquireTimeout.)
	OpenTimeout time.Duration
	// Dial replaces the network dialer (tests, the benchmark's latency relay).
	Dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	Metrics *Metrics // nil: unregistered
	Logger  *slog.Logger
}

// SourceIPError means an account's ip_address cannot be used, so the
// account does not send at all rather than send from another address.
type SourceIPError struct {
	Addr   netip.Addr
	Reason string
}

func (e *SourceIPError) Error() string { return "source address " + e.Addr.String() + " " + e.Reason }

// defaultOpenTimeout is DialOptions.OpenTimeout's default.
const defaultOpenTimeout = 60 * time.Second

// ErrTokenRejected means the upstream refused a freshly refreshed token.
var ErrTokenRejected = errors.New("upstream rejected the access token")

// Dialer returns the function the account's pool uses to open a session.
func Dialer(a *config.Account, tokens *token.Source, o DialOptions) func(ctx context.Context) (*upstream.Client, error) {
	cfg := upstream.Config{
		Addr:           a.SMTPAddr,
		TLS:            a.TLS,
		HeloName:       o.HeloName,
		Dial:           o.Dial,
		CommandTimeout: o.CommandTimeout,
	}
	if o.TLSConfig != nil {
		cfg.TLSConfig = o.TLSConfig.Clone()
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := o.Metrics
	if m == nil {
		m = NewMetrics(nil, false)
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
func authenticate(ctx context.Context, c *upstream.Client, a *config.Account, tokens *token.Source) error {
	before, cached := tokens.Cached()
	tok, err := tokens.Token(ctx) // also marks the account in use
	if err != nil {
		return err
	}
	cached = cached && tok.Access == before.Access
	err = c.Auth(ctx, a.Mechanism, a.Email, tok.Access.Reveal())
	var ae *upstream.AuthError
	if !errors.As(err, &ae) || c.Broken() || !(ae.TokenRejected() || cached && ae.PlainRefusal()) {
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

// openFailure maps a failure to open a session into the client's reply,
// and logs the cause, which the client does not see. Under overload every
// transaction fails alike: errors_total counts each failure, the log shows
// an account's first of a kind and then counts (logthrottle).
func (r *Relay) openFailure(a *account.Account, c *smtpd.ConnInfo, err error) reply.Reply {
	log := r.log.With("conn_id", c.ID, "account", a.Cfg.ID, "err", err)
	key := func(reason string) logthrottle.Key { return logthrottle.Key{Account: a.Cfg.ID, Reason: reason} }
	var te *token.Error
	var se *SourceIPError
	var ae *upstream.AuthError
	var ue *upstream.Error
	errType := "connect"
	defer func() { r.m.errors.WithLabelValues(errType).Inc() }()
	if rp, kind := sessionRefusal(err); rp != nil {
		r.coolDown(a, kind, *rp)
		if kind == provider.Rate {
			// Gmail's 421 4.7.0 "Try again later": the account's
			// rate, not its sessions; the cool-down holds it back.
			errType = "rate_refused"
			r.logs.Warn(log, key(errType), "provider refused a session for the account's rate", "upstream_reply", rp.String())
		} else {
			errType = "concurrency_refused"
			// PROVIDERS.md: 421 4.3.0 / 454 4.7.0 (Gmail), 432 4.3.2
			// (Microsoft) mean "too many sessions": hold back instead of
			// hammering the account.
			a.Pool.Shrink(r.opts.ShrinkFor)
			r.logs.Warn(log, key(errType), "provider refused another session; lowering the account's session cap for a while",
				"for", r.opts.ShrinkFor, "cap", a.Pool.Cap(), "upstream_reply", rp.String())
		}
		return reply.New(451, "4.7.0", a.Cfg.Email+": provider says: "+rp.String())
	}
	switch {
	case errors.Is(err, pool.ErrBusy):
		errType = "busy"
		r.logs.Warn(log, key(errType), "no upstream session free", "wait", r.opts.AcquireTimeout)
		return reply.New(451, "4.7.0", a.Cfg.Email+": all upstream sessions busy, try again later")
	case errors.As(err, &se):
		errType = "source_ip"
		r.logs.Error(log, key(errType), "account cannot send: its source address is unusable")
		return reply.New(451, "4.4.0", a.Cfg.Email+": configured source address unavailable, not sending from another one")
	case isAddrNotAvail(err):
		errType = "source_ip"
		r.logs.Error(log, key(errType), "account cannot send: binding its source address failed")
		return reply.New(451, "4.4.0", a.Cfg.Email+": configured source address unavailable, not sending from another one")
	case errors.As(err, &te):
		errType = "token"
		r.logs.Warn(log, key(errType), "token refresh failed")
		if te.Final {
			errType = "token_final"
			return reply.New(454, "4.7.0", a.Cfg.Email+": OAuth2 credentials rejected by the provider; account needs new consent")
		}
		return reply.New(454, "4.7.0", a.Cfg.Email+": cannot obtain an OAuth2 access token, try again later")
	case errors.As(err, &ae):
		errType = "upstream_auth"
		r.logs.Warn(log, key(errType), "upstream authentication failed", "upstream_reply", ae.Reply.String())
		return reply.New(454, "4.7.0", a.Cfg.Email+": upstream authentication failed: "+ae.Reply.String())
	case errors.As(err, &ue) && ue.Reply != nil:
		r.logs.Warn(log, key("upstream_refused"), "upstream refused the session", "stage", ue.Stage)
		if ue.Reply.Temporary() || ue.Reply.Permanent() {
			return reply.New(451, "4.4.0", "upstream refused the connection: "+ue.Reply.String())
		}
		return reply.New(451, "4.4.0", "upstream refused the connection")
	case errors.Is(err, context.DeadlineExceeded):
		errType = "timeout"
		r.logs.Warn(log, key(errType), "opening an upstream session timed out")
		return reply.New(451, "4.4.1", "Upstream did not answer in time, try again later")
	default:
		r.logs.Warn(log, key(errType), "cannot open upstream session")
		return reply.New(451, "4.4.1", "Cannot connect to upstream, try again later")
	}
}

func isAddrNotAvail(err error) bool { return errors.Is(err, syscall.EADDRNOTAVAIL) }

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
