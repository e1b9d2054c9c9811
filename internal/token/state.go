package token

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/tokenstore"
)

// State is an account's token state, as the admin API shows it.
type State string

const (
	// StateOK: the last request succeeded, or none was needed yet.
	StateOK State = "ok"
	// StateRefreshing: a request is in flight.
	StateRefreshing State = "refreshing"
	// StateRetrying: the last request failed transiently (5xx, 429,
	// timeout, connection error); the next one waits for the backoff,
	// Retry-After or the circuit breaker (Status.NextRefresh).
	StateRetrying State = "retrying"
	// StateNeedsConsent: the provider rejected the credential for good
	// (ErrFinal). No request is made until the account's credential changes
	// in accounts.json or an operator calls Reset.
	StateNeedsConsent State = "needs_consent"
	// StateDisabled: an operator called Disable. No token is handed out.
	StateDisabled State = "disabled"
)

// Status is a snapshot of an account's token state for the admin API and
// health checks. It holds no secret.
type Status struct {
	State State
	// Expiry is when the cached access token expires; zero when none.
	Expiry time.Time
	// LastError is the latest failure, "" after a success. For
	// needs_consent it is the provider's verdict (sanitized).
	LastError string
	// LastRefresh is when the latest successful request was sent.
	LastRefresh time.Time
	// NextRefresh is when the next request is due: the background
	// renewal of a cached token, or the next retry after a failure. Zero
	// when none is planned (no token yet, needs_consent, disabled).
	NextRefresh time.Time
	// Failures counts consecutive failed requests.
	Failures int
	// BreakerOpen: the circuit breaker holds requests until NextRefresh.
	BreakerOpen bool
	// LastUsed is when a client last needed a token of this account.
	LastUsed time.Time
}

// Status returns the account's token state.
func (s *Source) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{
		State:       StateOK,
		Expiry:      s.tok.Expiry,
		LastRefresh: s.lastRefresh,
		Failures:    s.failures,
		BreakerOpen: s.breakerOpen,
		LastUsed:    s.lastUsed,
	}
	if s.lastErr != nil {
		st.LastError = s.lastErr.detail()
	}
	switch {
	case s.disabled != "":
		st.State, st.LastError = StateDisabled, s.disabled
	case s.final != nil:
		st.State = StateNeedsConsent
	case s.inflight != nil:
		st.State = StateRefreshing
	case s.failures > 0:
		st.State, st.NextRefresh = StateRetrying, s.nextTry
	case !s.tok.Access.Empty():
		st.NextRefresh = s.renewAt
	}
	return st
}

// Reset is the operator's "try again": it clears needs_consent, the
// failure count, any Retry-After and an open circuit breaker, so the next
// Token makes a request. It does not undo Disable.
func (s *Source) Reset() {
	s.mu.Lock()
	s.final, s.lastErr, s.failures = nil, nil, 0
	s.nextTry, s.holdUntil, s.breakerOpen = time.Time{}, time.Time{}, false
	s.resetShared = s.cfg.Shared != nil
	e := s.entryLocked()
	s.mu.Unlock()
	s.log.Info("token state reset by an operator")
	s.put(e)
}

// Disable stops handing out tokens and making requests for the account
// until Enable; reason shows in Status.LastError. It persists.
func (s *Source) Disable(reason string) {
	if reason == "" {
		reason = "disabled by an operator"
	}
	s.mu.Lock()
	s.disabled = reason
	e := s.entryLocked()
	s.mu.Unlock()
	s.log.Info("account disabled", "reason", reason)
	s.put(e)
	if s.cfg.OnBlocked != nil {
		s.cfg.OnBlocked()
	}
}

// Enable undoes Disable.
func (s *Source) Enable() {
	s.mu.Lock()
	s.disabled = ""
	e := s.entryLocked()
	s.mu.Unlock()
	s.log.Info("account enabled")
	s.put(e)
}

// blockedLocked returns why no request may be made now, or nil.
func (s *Source) blockedLocked(now time.Time) error {
	switch {
	case s.disabled != "":
		return &Error{Account: s.cfg.Account, Err: fmt.Errorf("%w: %s", ErrDisabled, s.disabled)}
	case s.final != nil:
		return s.final
	case now.Before(s.holdUntil) && s.lastErr != nil:
		return s.lastErr
	}
	return nil
}

// setTokenLocked caches tok, requested at obtained, and plans its renewal:
// in the background at the earlier of expiry − RefreshBuffer and 80% of
// its lifetime, less a random tenth of the lifetime so that tokens fetched
// together are not renewed together; handed out only until expiry −
// RefreshBuffer (or half its life, for a short-lived token).
func (s *Source) setTokenLocked(tok Token, obtained time.Time) {
	life := tok.Expiry.Sub(obtained)
	if life <= 0 {
		life = time.Second
	}
	s.tok, s.obtained = tok, obtained
	s.hardAt = tok.Expiry.Add(-min(s.cfg.RefreshBuffer, life/2))
	renew := tok.Expiry.Add(-s.cfg.RefreshBuffer)
	if at80 := obtained.Add(life / 10 * 8); at80.Before(renew) {
		renew = at80
	}
	renew = renew.Add(-time.Duration(s.rand() * float64(life/10)))
	if floor := obtained.Add(life / 2); renew.Before(floor) {
		renew = floor
	}
	if renew.After(s.hardAt) {
		renew = s.hardAt
	}
	s.renewAt = renew
}

// backoffLocked is the wait after the n-th consecutive transient failure.
func (s *Source) backoffLocked(n int) time.Duration {
	b := s.cfg.Retry
	d := float64(b.Base) * math.Pow(b.Factor, float64(n-1))
	if d > float64(b.Max) || math.IsInf(d, 0) || math.IsNaN(d) {
		d = float64(b.Max)
	}
	if b.Jitter {
		d = d/2 + s.rand()*d/2
	}
	return time.Duration(d)
}

// finish records the outcome of a request sent at sent: the grant g or
// err, and a rotated refresh token. A rotation is made durable before
// anything else happens: before the new access token is handed out, and
// before the new refresh token can be sent (run checks unsaved).
func (s *Source) finish(g grant, err error, rotated secret.String, sent time.Time) (Token, error) {
	var tok Token
	if err == nil {
		tok = Token{Access: secret.New(g.access), Expiry: sent.Add(g.expiresIn)}
	}
	if !rotated.Empty() {
		s.mu.Lock()
		e := s.entryLocked()
		e.RefreshToken, e.RefreshVersion = rotated, s.refreshVer
		if err == nil {
			e.AccessToken, e.Expiry, e.Obtained = tok.Access, tok.Expiry, sent
		}
		s.mu.Unlock()
		saved := true
		if s.cfg.Store != nil {
			if perr := s.cfg.Store.PutSync(s.cfg.Account, e); perr != nil {
				saved = false
				// Keep the new token in memory (the provider may already
				// have retired the old one) but send it nowhere until it
				// is saved.
				s.log.Error("rotated refresh token NOT saved; no further refresh until it is", "err", perr)
			}
		}
		s.mu.Lock()
		s.refresh, s.unsaved = rotated, !saved
		s.mu.Unlock()
		s.log.Info("refresh token rotated", "saved", saved)
	}

	now := s.now()
	s.mu.Lock()
	if err == nil {
		s.failures, s.lastErr, s.final = 0, nil, nil
		s.nextTry, s.holdUntil, s.breakerOpen = time.Time{}, time.Time{}, false
		s.lastRefresh = sent
		s.hist.add(Event{At: sent, OK: true})
		s.setTokenLocked(tok, sent)
	} else {
		err = s.failLocked(err, now)
	}
	e := s.entryLocked()
	s.mu.Unlock()
	if rotated.Empty() && (err == nil || errors.Is(err, ErrFinal)) {
		s.put(e) // an access token or a verdict: may be lost in a crash
	}
	return tok, err
}

// failLocked records a failed request and returns it as an *Error.
func (s *Source) failLocked(err error, now time.Time) *Error {
	te, ok := errors.AsType[*Error](err)
	if !ok {
		te = s.errorf(0, err)
	}
	if te.Final {
		te = s.testingAppLocked(te, now) // testingapp.go
	}
	s.lastErr = te
	s.hist.add(Event{At: now, Detail: te.detail()})
	if te.Final {
		s.final = te
		s.failures++
		s.log.Error("account needs new consent: its token endpoint will not be asked again until the credential changes in accounts.json or an operator resets the account",
			"provider_error", te.detail())
		return te
	}
	s.failures++
	wait := max(s.backoffLocked(s.failures), te.RetryAfter)
	s.nextTry, s.holdUntil, s.breakerOpen = now.Add(wait), time.Time{}, false
	if te.RetryAfter > 0 {
		s.holdUntil = now.Add(te.RetryAfter)
	}
	if th := s.cfg.Breaker.Threshold; th > 0 && s.failures >= th {
		until := now.Add(s.cfg.Breaker.Recovery)
		if until.After(s.holdUntil) {
			s.holdUntil = until
		}
		if until.After(s.nextTry) {
			s.nextTry = until
		}
		s.breakerOpen = true
		if s.failures == th {
			s.log.Warn("circuit breaker open: no token request for this account until it recovers",
				"failures", s.failures, "recovery", s.cfg.Breaker.Recovery)
		}
	}
	return te
}

// due reports whether the Refresher should request a token now: the
// account was used within active, nothing blocks a request, and its token
// reached its renewal time, or a retry is due, or it has no token.
func (s *Source) due(now time.Time, active time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.inflight != nil || s.blockedLocked(now) != nil:
		return false
	case s.lastUsed.IsZero() || now.Sub(s.lastUsed) > active:
		return false
	case s.failures > 0:
		return !now.Before(s.nextTry)
	case s.tok.Access.Empty():
		return true
	}
	return !now.Before(s.renewAt)
}

// wantsPrewarm reports whether a start-up pre-warm should fetch a token:
// none is cached (or it is past its hand-out time), nothing blocks a
// request, and the account was used within active before the restart,
// or all is set.
func (s *Source) wantsPrewarm(now time.Time, active time.Duration, all bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.validLocked(now) || s.inflight != nil || s.blockedLocked(now) != nil {
		return false
	}
	return all || (!s.lastUsed.IsZero() && now.Sub(s.lastUsed) <= active)
}

// saveUsage gives LastUsed to the Store when it changed since last time,
// so that the next start knows which accounts were busy.
func (s *Source) saveUsage() {
	s.mu.Lock()
	if s.lastUsed.Equal(s.usedSaved) {
		s.mu.Unlock()
		return
	}
	e := s.entryLocked()
	s.mu.Unlock()
	s.put(e)
}

// put hands an entry to the Store (buffered).
func (s *Source) put(e tokenstore.Entry) {
	if s.cfg.Store == nil {
		return
	}
	s.mu.Lock()
	s.usedSaved = e.LastUsed
	s.mu.Unlock()
	s.cfg.Store.Put(s.cfg.Account, e)
}

// saveRotation makes a rotated refresh token that could not be saved
// durable, before it is sent anywhere. It is a no-op when none is pending.
func (s *Source) saveRotation() error {
	s.mu.Lock()
	if !s.unsaved || s.cfg.Store == nil {
		s.mu.Unlock()
		return nil
	}
	e := s.entryLocked()
	s.mu.Unlock()
	if err := s.cfg.Store.PutSync(s.cfg.Account, e); err != nil {
		return s.errorf(0, fmt.Errorf("rotated refresh token not saved, not using it: %w", err))
	}
	s.mu.Lock()
	s.unsaved = false
	s.mu.Unlock()
	s.log.Info("rotated refresh token saved")
	return nil
}

// adoptStoredLocked takes a newer refresh token of the same lineage from
// the Store before a request: another Source for this account (the one a
// reload replaced) or another process may have rotated it since this
// Source loaded. The Store holds this Source's own saved rotations too, so
// a differing token there is the newer one.
func (s *Source) adoptStoredLocked() {
	if s.cfg.Store == nil || s.cfg.AuthType != AuthRefreshToken || s.unsaved {
		return
	}
	get := s.cfg.Store.Get
	if fs, ok := s.cfg.Store.(FreshStore); ok {
		get = fs.Fresh
	}
	e, ok := get(s.cfg.Account)
	if ok && e.Credential == s.credential && !e.RefreshToken.Empty() && e.RefreshToken != s.refresh {
		s.refresh = e.RefreshToken
		s.log.Info("using a refresh token rotated elsewhere (a reload or another process)")
	}
}

// entryLocked is the persisted form of the current state.
func (s *Source) entryLocked() tokenstore.Entry {
	e := tokenstore.Entry{Credential: s.credential, Grant: s.grantPrint, LastUsed: s.lastUsed}
	if s.refresh != s.cfg.RefreshToken {
		e.RefreshToken, e.RefreshVersion = s.refresh, s.refreshVer
	}
	if !s.tok.Access.Empty() {
		e.AccessToken, e.Expiry, e.Obtained = s.tok.Access, s.tok.Expiry, s.obtained
	}
	switch {
	case s.disabled != "":
		e.State, e.LastError = tokenstore.StateDisabled, s.disabled
	case s.final != nil:
		e.State, e.LastError = tokenstore.StateNeedsConsent, s.final.detail()
		if s.final.Err == errRestoredVerdict {
			e.LastError = s.final.Description // not "(… before a restart)" once more per restart
		}
	}
	return e
}

// errRestoredVerdict marks a needs_consent verdict loaded from the Store.
var errRestoredVerdict = errors.New("verdict recorded before a restart")

// load adopts the persisted state, if any, that matches the configuration.
func (s *Source) load() {
	if s.cfg.Store == nil {
		return
	}
	e, ok := s.cfg.Store.Get(s.cfg.Account)
	if !ok {
		return
	}
	if e.Credential != s.credential {
		// The operator changed the credential in accounts.json: it wins.
		s.log.Info("persisted token state is for a credential accounts.json no longer has; starting afresh")
		return
	}
	if !e.RefreshToken.Empty() && s.cfg.AuthType == AuthRefreshToken {
		s.refresh, s.refreshVer = e.RefreshToken, e.RefreshVersion
	}
	s.lastUsed, s.usedSaved = e.LastUsed, e.LastUsed
	if e.Grant != s.grantPrint {
		s.log.Info("token settings changed; persisted access token and verdict dropped")
		return
	}
	now := s.now()
	if !e.AccessToken.Empty() && e.Expiry.After(now) {
		obtained := e.Obtained
		if obtained.IsZero() || !obtained.Before(e.Expiry) {
			obtained = e.Expiry.Add(-defaultExpiresIn)
		}
		s.setTokenLocked(Token{Access: e.AccessToken, Expiry: e.Expiry}, obtained)
	}
	switch e.State {
	case tokenstore.StateNeedsConsent:
		s.final = &Error{Account: s.cfg.Account, Final: true, Description: e.LastError, Err: errRestoredVerdict}
		s.lastErr = s.final
	case tokenstore.StateDisabled:
		s.disabled = e.LastError
		if s.disabled == "" {
			s.disabled = "disabled by an operator"
		}
	}
}

// fingerprints identify the configuration the persisted state belongs to,
// as truncated SHA-256 hashes, so the state file never holds a configured
// secret a second time. credential covers what a refresh-token lineage
// depends on (the client and the configured refresh token); grant covers
// every setting of the grant.
func fingerprints(cfg *Config) (credential, grant string) {
	hash := func(parts ...string) string {
		h := sha256.New()
		for _, p := range parts {
			h.Write([]byte(p))
			h.Write([]byte{0})
		}
		return "v1:" + hex.EncodeToString(h.Sum(nil)[:16])
	}
	var pub string
	if cfg.Signer != nil {
		if der, err := x509.MarshalPKIXPublicKey(cfg.Signer.Public()); err == nil {
			pub = string(der)
		}
	}
	all := []string{string(cfg.AuthType), cfg.ClientID, cfg.RefreshToken.Reveal(), cfg.TokenURL, cfg.Scope,
		cfg.ClientSecret.Reveal(), cfg.Subject, cfg.Issuer, cfg.KeyID, pub, string(cfg.CertThumbprint)}
	if cfg.AuthType == AuthRefreshToken {
		return hash(all[:3]...), hash(all...)
	}
	// Without a refresh token there is no lineage: any change starts afresh.
	g := hash(all...)
	return g, g
}
