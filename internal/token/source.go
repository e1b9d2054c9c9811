package token

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// Defaults for zero Config fields.
const (
	// DefaultRefreshBuffer is used when Config.RefreshBuffer is zero.
	DefaultRefreshBuffer = 300 * time.Second
	// DefaultTimeout is used when Config.Timeout is zero.
	DefaultTimeout = 10 * time.Second
)

// finalHoldOff is how long a Final error is answered from memory before the
// endpoint is asked again: a dead credential stays dead, and asking often
// only adds noise on the provider's side (PROVIDERS.md: invalid_grant).
const finalHoldOff = time.Minute

// Config describes one account's refresh_token grant.
type Config struct {
	// Account is the account id, used only in errors and log lines.
	Account string
	// TokenURL is the token endpoint; see ValidateURL. Required.
	TokenURL string
	// ClientID is the OAuth client id. Required.
	ClientID string
	// ClientSecret is sent whenever it is non-empty (Google and confidential
	// Microsoft apps); empty for public clients.
	ClientSecret secret.String
	// RefreshToken is the initial refresh token. Required. After a rotation
	// the Source uses the new one; this field is not updated.
	RefreshToken secret.String
	// Scope is sent as "scope" when non-empty (Microsoft needs it).
	Scope string
	// RefreshBuffer: a cached token counts as expired this long before its
	// expiry, or after half its lifetime if that comes sooner (so a
	// short-lived token is not refreshed on every call). Zero means
	// DefaultRefreshBuffer (300 s). PROVIDERS.md suggests at least 10 minutes
	// for Microsoft HVE.
	RefreshBuffer time.Duration
	// Timeout bounds one token request, whatever the callers' deadlines.
	// Zero means DefaultTimeout (10 s).
	Timeout time.Duration
	// HTTPClient sends the requests. Nil means a client private to this
	// Source that does not follow redirects. A client supplied here is used
	// as is; it should not follow redirects either, since a 307/308 would
	// re-post the refresh token.
	HTTPClient *http.Client
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// OnRotate is called with the new refresh token when a response carries
	// one that differs from the current one, synchronously and before the new
	// access token is handed out or another request is made. It should
	// persist the token (PROVIDERS.md: persist rotated refresh tokens
	// atomically). It must not call back into the Source's Token or Refresh,
	// which would wait for the request OnRotate is part of. Nil means no
	// call.
	OnRotate func(newRefresh secret.String)
	// Logger receives this Source's log lines, with an "account" attribute
	// added. Nil means discard.
	Logger *slog.Logger
}

// Token is an access token and when it expires.
type Token struct {
	Access secret.String // the bearer token for XOAUTH2
	Expiry time.Time     // as announced by the endpoint, from the time the request was sent
}

// Source hands out access tokens for one account, refreshing them when
// needed. All methods are safe for concurrent use.
type Source struct {
	cfg    Config // with defaults applied; never changed after NewSource
	client *http.Client
	now    func() time.Time
	log    *slog.Logger

	mu        sync.Mutex
	refresh   secret.String // current refresh token; replaced on rotation
	tok       Token         // zero until the first success
	refreshAt time.Time     // tok counts as expired from here on
	inflight  *flight       // the running request, if any
	final     *Error        // last attempt's error, if it was Final
	finalAt   time.Time     // when final was recorded
}

// flight is one token request shared by every caller that waits for it.
// tok and err are written before done is closed and only read after.
type flight struct {
	done chan struct{}
	tok  Token
	err  error
}

// NewSource checks cfg, applies defaults and returns a Source. It makes no
// request.
func NewSource(cfg Config) (*Source, error) {
	if err := ValidateURL(cfg.TokenURL); err != nil {
		return nil, fmt.Errorf("token source %s: %w", cfg.Account, err)
	}
	if cfg.ClientID == "" {
		return nil, fmt.Errorf("token source %s: client id is empty", cfg.Account)
	}
	if cfg.RefreshToken.Empty() {
		return nil, fmt.Errorf("token source %s: refresh token is empty", cfg.Account)
	}
	if cfg.RefreshBuffer < 0 {
		return nil, fmt.Errorf("token source %s: refresh buffer %v is negative", cfg.Account, cfg.RefreshBuffer)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("token source %s: timeout %v is negative", cfg.Account, cfg.Timeout)
	}
	if cfg.RefreshBuffer == 0 {
		cfg.RefreshBuffer = DefaultRefreshBuffer
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	s := &Source{
		cfg:     cfg,
		client:  cfg.HTTPClient,
		now:     cfg.Now,
		log:     cfg.Logger,
		refresh: cfg.RefreshToken,
	}
	if s.client == nil {
		s.client = newDefaultClient()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s.log = s.log.With("account", cfg.Account)
	return s, nil
}

// Token returns the cached access token while it is valid, and otherwise
// refreshes it. Concurrent callers share one request. A caller whose ctx
// ends stops waiting and gets ctx's error (wrapped) while the request goes
// on, bounded by Config.Timeout, for the others. Failures of the request are
// *Error; see the package comment for how Final errors are held.
func (s *Source) Token(ctx context.Context) (Token, error) {
	s.mu.Lock()
	now := s.now()
	if s.validLocked(now) {
		tok := s.tok
		s.mu.Unlock()
		return tok, nil
	}
	f, err := s.flightLocked(ctx, now)
	s.mu.Unlock()
	if err != nil {
		return Token{}, err
	}
	return s.wait(ctx, f)
}

// Refresh forces a new access token after the upstream rejected stale,
// unless the cached token is already a different, valid one (someone
// refreshed in the meantime), which it then returns. A request already in
// flight is joined rather than duplicated. An empty stale forces a refresh
// while leaving the cached token in use until the new one arrives. Errors
// and waiting are as for Token.
func (s *Source) Refresh(ctx context.Context, stale secret.String) (Token, error) {
	s.mu.Lock()
	now := s.now()
	if s.inflight == nil && s.validLocked(now) && !stale.Empty() && s.tok.Access.Reveal() != stale.Reveal() {
		tok := s.tok
		s.mu.Unlock()
		return tok, nil
	}
	if s.inflight == nil && s.tok.Access.Reveal() == stale.Reveal() {
		// The upstream rejected it; nobody should get it again.
		s.tok, s.refreshAt = Token{}, time.Time{}
	}
	f, err := s.flightLocked(ctx, now)
	s.mu.Unlock()
	if err != nil {
		return Token{}, err
	}
	return s.wait(ctx, f)
}

// Cached returns the cached token if there is one that Token would return
// without a request (that is, before expiry minus the refresh buffer). It
// never blocks on a request.
func (s *Source) Cached() (Token, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.validLocked(s.now()) {
		return Token{}, false
	}
	return s.tok, true
}

func (s *Source) validLocked(now time.Time) bool {
	return !s.tok.Access.Empty() && now.Before(s.refreshAt)
}

// flightLocked returns the request to wait for: the one in flight, or a new
// one. It returns the held Final error instead while that is fresh, and
// does not start a request for a caller whose ctx has already ended.
func (s *Source) flightLocked(ctx context.Context, now time.Time) (*flight, error) {
	if s.inflight != nil {
		return s.inflight, nil
	}
	if s.final != nil && now.Sub(s.finalAt) < finalHoldOff {
		s.log.Debug("token refresh skipped: credential rejected recently", "err", s.final)
		return nil, s.final
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("refresh %s: %w", s.cfg.Account, context.Cause(ctx))
	}
	f := &flight{done: make(chan struct{})}
	s.inflight = f
	// The request must outlive any one caller (others wait for it, and a
	// rotated refresh token in its response must not be lost), so it gets
	// ctx's values but not its cancellation, and its own Timeout.
	go s.run(context.WithoutCancel(ctx), f, s.refresh, now)
	return f, nil
}

func (s *Source) wait(ctx context.Context, f *flight) (Token, error) {
	select {
	case <-f.done:
		return f.tok, f.err
	case <-ctx.Done():
		select {
		case <-f.done: // finished at the same moment: take the result
			return f.tok, f.err
		default:
			return Token{}, fmt.Errorf("refresh %s: waiting for token: %w", s.cfg.Account, context.Cause(ctx))
		}
	}
}

// run performs flight f with the refresh token rt, started at sent, and
// publishes the outcome. It is the only writer of s.refresh after NewSource.
func (s *Source) run(parent context.Context, f *flight, rt secret.String, sent time.Time) {
	ctx, cancel := context.WithTimeout(parent, s.cfg.Timeout)
	defer cancel()
	g, err := s.fetch(ctx, rt)

	var rotated secret.String
	if g.refresh != "" && g.refresh != rt.Reveal() {
		// PROVIDERS.md: Microsoft rotates the refresh token on every
		// refresh; the old one must be discarded and the new one stored.
		// inflight is still set, so no other request can use rt meanwhile.
		rotated = secret.New(g.refresh)
		s.log.Info("refresh token rotated")
		if s.cfg.OnRotate != nil {
			s.cfg.OnRotate(rotated)
		}
	}

	var tok Token
	s.mu.Lock()
	if !rotated.Empty() {
		s.refresh = rotated
	}
	if err == nil {
		tok = Token{Access: secret.New(g.access), Expiry: sent.Add(g.expiresIn)}
		s.tok = tok
		s.refreshAt = tok.Expiry.Add(-min(s.cfg.RefreshBuffer, g.expiresIn/2))
		s.final = nil
	} else if e := (*Error)(nil); errors.As(err, &e) && e.Final {
		s.final, s.finalAt = e, s.now()
	}
	s.inflight = nil
	s.mu.Unlock()

	if err != nil {
		s.log.Warn("token refresh failed", "err", err, "final", errors.Is(err, ErrFinal))
	} else {
		s.log.Debug("token refreshed", "expiry", tok.Expiry)
	}
	f.tok, f.err = tok, err
	close(f.done)
}
