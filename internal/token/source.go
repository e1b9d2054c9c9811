package token

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

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
	rand   func() float64
	log    *slog.Logger
	// credential and grantPrint fingerprint the configuration (see
	// fingerprints); they key the persisted state.
	credential, grantPrint string

	mu          sync.Mutex
	refresh     secret.String // current refresh token; replaced on rotation
	unsaved     bool          // refresh is a rotated token not yet durable
	tok         Token         // zero until the first success
	obtained    time.Time     // when tok was requested
	renewAt     time.Time     // background renewal may start here (jittered)
	hardAt      time.Time     // tok is not handed out from here on
	inflight    *flight       // the running request, if any
	final       *Error        // the verdict that put the account in needs_consent
	disabled    string        // why an operator disabled the account; "" if not
	failures    int           // consecutive transient failures
	lastErr     *Error        // the latest failure, transient or final
	nextTry     time.Time     // background retry after a transient failure
	holdUntil   time.Time     // no request before this (Retry-After, open breaker)
	breakerOpen bool          // holdUntil comes from the circuit breaker
	lastRefresh time.Time     // last successful request
	hist        history       // the last token requests (history.go)
	lastUsed    time.Time     // last Token or Refresh call
	usedSaved   time.Time     // lastUsed as last given to the Store
	// Cluster mode (Config.Shared, shared.go): refreshVer is the version
	// of the shared record that committed refresh; rejected is an access
	// token the upstream refused, never adopted from the shared record
	// again; resetShared makes the next request ignore a needs_consent
	// verdict committed there (an operator's Reset).
	refreshVer  int64
	verdictVer  int64 // version of the shared record that held final
	seedPending bool  // a rotation made while Redis did not answer is not in the record yet
	rejected    secret.String
	resetShared bool
}

// flight is one token request shared by every caller that waits for it.
// tok and err are written before done is closed and only read after. ctx
// bounds the request (Config.Timeout); callers stop waiting when it ends.
type flight struct {
	done   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	tok    Token
	err    error
}

// NewSource checks cfg, applies defaults, loads the account's persisted
// state from cfg.Store and returns a Source. It makes no request.
func NewSource(cfg Config) (*Source, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("token source %s: %w", cfg.Account, err)
	}
	s := &Source{
		cfg:     cfg,
		client:  cfg.HTTPClient,
		now:     cfg.Now,
		rand:    cfg.Rand,
		log:     cfg.Logger,
		refresh: cfg.RefreshToken,
	}
	if s.client == nil {
		s.client = newDefaultClient()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rand == nil {
		s.rand = rand.Float64
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("account", cfg.Account)
	s.credential, s.grantPrint = fingerprints(&s.cfg)
	s.load()
	return s, nil
}

// Account is the account id the Source serves.
func (s *Source) Account() string { return s.cfg.Account }

// Token returns the cached access token while it has more than the refresh
// buffer left, and otherwise makes a request (or joins the one in flight).
// It returns at once, without a request, when the account is disabled, in
// needs_consent, waiting out a Retry-After or behind an open circuit
// breaker: with the last error, an *Error. A caller whose ctx ends stops
// waiting and gets ctx's error (wrapped) while the request goes on for the
// others; no caller waits longer than Config.Timeout.
func (s *Source) Token(ctx context.Context) (Token, error) {
	s.mu.Lock()
	now := s.now()
	s.lastUsed = now
	if s.disabled == "" && s.validLocked(now) {
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
	s.lastUsed = now
	if s.disabled == "" && s.inflight == nil && s.validLocked(now) && !stale.Empty() && s.tok.Access != stale {
		tok := s.tok
		s.mu.Unlock()
		return tok, nil
	}
	if s.inflight == nil && s.tok.Access == stale {
		// The upstream rejected it; nobody should get it again.
		s.tok, s.hardAt, s.renewAt = Token{}, time.Time{}, time.Time{}
		s.rejected = stale
	}
	f, err := s.flightLocked(ctx, now)
	s.mu.Unlock()
	if err != nil {
		return Token{}, err
	}
	return s.wait(ctx, f)
}

// Cached returns the cached token if there is one that Token would return
// without a request. It never blocks on a request.
func (s *Source) Cached() (Token, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.disabled != "" || !s.validLocked(s.now()) {
		return Token{}, false
	}
	return s.tok, true
}

func (s *Source) validLocked(now time.Time) bool {
	return !s.tok.Access.Empty() && now.Before(s.hardAt)
}

// flightLocked returns the request to wait for: the one in flight, or a new
// one. It returns an error instead when no request may be made now (see
// blockedLocked), and does not start a request for a caller whose ctx has
// already ended.
func (s *Source) flightLocked(ctx context.Context, now time.Time) (*flight, error) {
	if s.inflight != nil {
		return s.inflight, nil
	}
	if err := s.blockedLocked(now); err != nil {
		s.log.Debug("token request skipped", "err", err)
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("refresh %s: %w", s.cfg.Account, context.Cause(ctx))
	}
	s.adoptStoredLocked()
	// The request must outlive any one caller (others wait for it, and a
	// rotated refresh token in its response must not be lost), so it gets
	// ctx's values but not its cancellation, and its own Timeout.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
	f := &flight{done: make(chan struct{}), ctx: fctx, cancel: cancel}
	s.inflight = f
	go s.run(f, s.refresh, now)
	return f, nil
}

// saveGrace is how long callers wait past a request's Timeout for its
// outcome: the HTTP exchange ends at the Timeout, but saving a rotated
// refresh token may take a moment longer. A disk that hangs longer does not
// hold callers.
const saveGrace = time.Second

// wait returns f's outcome, or gives up when ctx ends or f runs past its
// Timeout plus saveGrace.
func (s *Source) wait(ctx context.Context, f *flight) (Token, error) {
	select {
	case <-f.done:
		return f.tok, f.err
	case <-ctx.Done():
		return s.late(f, fmt.Errorf("refresh %s: waiting for token: %w", s.cfg.Account, context.Cause(ctx)))
	case <-f.ctx.Done():
	}
	grace := time.NewTimer(saveGrace)
	defer grace.Stop()
	select {
	case <-f.done:
		return f.tok, f.err
	case <-ctx.Done():
		return s.late(f, fmt.Errorf("refresh %s: waiting for token: %w", s.cfg.Account, context.Cause(ctx)))
	case <-grace.C:
		return s.late(f, &Error{Account: s.cfg.Account, Err: fmt.Errorf("no token within %v: %w", s.cfg.Timeout, context.DeadlineExceeded)})
	}
}

// late returns f's outcome if it has just arrived, else err.
func (s *Source) late(f *flight, err error) (Token, error) {
	select {
	case <-f.done:
		return f.tok, f.err
	default:
		return Token{}, err
	}
}

// run performs flight f with the refresh token rt, started at sent, and
// publishes the outcome. It is the only writer of s.refresh after NewSource.
func (s *Source) run(f *flight, rt secret.String, sent time.Time) {
	if s.cfg.Shared != nil {
		s.runShared(f, sent) // shared.go: the cluster's one token
		return
	}
	defer f.cancel()
	var g grant
	err := s.saveRotation() // a rotation not yet durable must be before rt is sent again
	if err == nil {
		g, err = s.fetch(f.ctx, rt, sent)
	}

	var rotated secret.String
	if g.refresh != "" && g.refresh != rt.Reveal() {
		// PROVIDERS.md: Microsoft rotates the refresh token on every
		// refresh; the new one must be stored and the old one discarded.
		// inflight is still set, so no other request can use rt meanwhile.
		rotated = secret.New(g.refresh)
	}
	tok, err := s.finishRotated(g, err, rotated, sent)
	s.publish(f, tok, err)
}

// finishRotated is finish, then OnRotate after a rotation.
func (s *Source) finishRotated(g grant, err error, rotated secret.String, sent time.Time) (Token, error) {
	tok, err := s.finish(g, err, rotated, sent)
	if !rotated.Empty() && s.cfg.OnRotate != nil {
		s.cfg.OnRotate(rotated)
	}
	return tok, err
}

// publish ends flight f with its outcome: logged, OnBlocked called on a
// verdict, and handed to the callers waiting.
func (s *Source) publish(f *flight, tok Token, err error) {
	if err != nil {
		final := errors.Is(err, ErrFinal)
		s.log.Warn("token request failed", "err", err, "final", final)
		if final && s.cfg.OnBlocked != nil {
			s.cfg.OnBlocked()
		}
	} else {
		s.log.Debug("token obtained", "expiry", tok.Expiry)
	}

	s.mu.Lock()
	s.inflight = nil
	s.mu.Unlock()
	f.tok, f.err = tok, err
	close(f.done)
}
