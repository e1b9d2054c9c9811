package token

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/tokenstore"
)

// Shared is the token state of one account that every proxy of a cluster
// shares (docs/CLUSTER.md: Tokens and the account set; package
// clustertoken implements it in Redis). Correctness rests on Commit, a
// compare-and-set on the record's version: a proxy whose result lost the
// race takes the committed one. Lock only saves the other proxies a
// request while one of them renews. All methods are bounded by ctx.
type Shared interface {
	// Load returns the committed record; Version 0 when there is none
	// (a new account, or a Redis that came back empty).
	Load(ctx context.Context, account string) (Committed, error)
	// Lock tries to take the right to make the account's next token
	// request for ttl. ok is false while another proxy holds it; unlock
	// gives it back, and is a no-op once the lock expired or moved on.
	Lock(ctx context.Context, account string, ttl time.Duration) (unlock func(), ok bool, err error)
	// Commit stores c as version base+1 if the record's version is still
	// base, and reports whether it did.
	Commit(ctx context.Context, account string, base int64, c Committed) (bool, error)
	// Seed stores c when the record is missing or holds, for c's
	// credential, a refresh token older than c.RefreshVersion, and
	// reports whether it did. It re-seeds an emptied Redis.
	Seed(ctx context.Context, account string, c Committed) (bool, error)
}

// Committed is the shared token record of one account.
type Committed struct {
	// Version counts the commits; 0 means no record.
	Version int64
	// Credential and Grant are the Source's fingerprints (as in
	// tokenstore.Entry): a record of another credential is not adopted.
	Credential, Grant string
	// RefreshToken is the current refresh token when the provider rotated
	// it ("" while the configured one is current), and RefreshVersion the
	// Version that committed it.
	RefreshToken   secret.String
	RefreshVersion int64
	// AccessToken is the cluster's access token, valid until Expiry,
	// requested at Obtained; empty when none.
	AccessToken      secret.String
	Expiry, Obtained time.Time
	// State is "" or tokenstore.StateNeedsConsent, with the provider's
	// sanitized verdict in LastError.
	State, LastError string
}

// errSharedVerdict marks a needs_consent verdict taken from the shared
// record (another proxy's request got it).
var errSharedVerdict = errors.New("verdict committed by another proxy")

// sharedPoll is how often a proxy waiting for another's renewal looks at
// the shared record again.
const sharedPoll = 50 * time.Millisecond

// runShared is run for a Source with Config.Shared: it takes the token the
// cluster committed, or makes the request under the cluster's lock and
// commits its outcome, then publishes the result to the flight's callers.
func (s *Source) runShared(f *flight, sent time.Time) {
	defer f.cancel()
	tok, err := s.sharedRequest(f.ctx, sent)
	s.publish(f, tok, err)
}

func (s *Source) sharedRequest(ctx context.Context, sent time.Time) (Token, error) {
	c, err := s.loadShared(ctx)
	if err != nil {
		return s.unshared(ctx, sent, err)
	}
	for {
		if tok, err, ok := s.adoptShared(c); ok {
			return tok, err
		}
		unlock, locked, err := s.cfg.Shared.Lock(ctx, s.cfg.Account, s.cfg.Timeout+saveGrace)
		if err != nil {
			return s.unshared(ctx, sent, err)
		}
		if locked {
			// The holder before us may have committed since c was read.
			if c, err = s.cfg.Shared.Load(ctx, s.cfg.Account); err != nil {
				unlock()
				return s.unshared(ctx, sent, err)
			}
			if tok, err, ok := s.adoptShared(c); ok {
				unlock()
				return tok, err
			}
			tok, err := s.lockedRequest(ctx, c, sent)
			unlock()
			return tok, err
		}
		// Another proxy is renewing: wait for its commit, or for the lock.
		select {
		case <-ctx.Done():
			return Token{}, &Error{Account: s.cfg.Account, Err: fmt.Errorf("waiting for another proxy's token request: %w", context.Cause(ctx))}
		case <-time.After(sharedPoll):
		}
		if c, err = s.cfg.Shared.Load(ctx, s.cfg.Account); err != nil {
			return s.unshared(ctx, sent, err)
		}
	}
}

// loadShared reads the shared record and first re-seeds it when it lost
// this proxy's newer refresh token (Redis came back empty).
func (s *Source) loadShared(ctx context.Context) (Committed, error) {
	c, err := s.cfg.Shared.Load(ctx, s.cfg.Account)
	if err != nil {
		return c, err
	}
	s.mu.Lock()
	mine := s.committedLocked()
	s.mu.Unlock()
	if mine.RefreshVersion > 0 && (c.Version == 0 || (c.Credential == mine.Credential && c.RefreshVersion < mine.RefreshVersion)) {
		ok, err := s.cfg.Shared.Seed(ctx, s.cfg.Account, mine)
		if err != nil {
			return c, err
		}
		s.mu.Lock()
		s.seedPending = false
		s.mu.Unlock()
		if ok {
			s.log.Warn("shared token record was missing or older than this proxy's: re-seeded it from the state file",
				"refresh_version", mine.RefreshVersion)
		}
		return s.cfg.Shared.Load(ctx, s.cfg.Account)
	}
	return c, nil
}

// SeedShared writes this Source's rotated refresh token to the shared
// record when the record is missing or older (an emptied Redis), so that
// the other proxies, new ones included, find it. It is a no-op outside
// cluster mode and while the configured refresh token is still current.
func (s *Source) SeedShared(ctx context.Context) (bool, error) {
	if s.cfg.Shared == nil || s.cfg.AuthType != AuthRefreshToken {
		return false, nil
	}
	s.mu.Lock()
	mine := s.committedLocked()
	s.mu.Unlock()
	if mine.RefreshVersion == 0 {
		return false, nil
	}
	ok, err := s.cfg.Shared.Seed(ctx, s.cfg.Account, mine)
	if err != nil {
		return false, fmt.Errorf("seed shared token of %s: %w", s.cfg.Account, err)
	}
	return ok, nil
}

// committedLocked is this Source's state as a shared record.
func (s *Source) committedLocked() Committed {
	c := Committed{Version: s.refreshVer, Credential: s.credential, Grant: s.grantPrint}
	if s.refresh != s.cfg.RefreshToken {
		c.RefreshToken, c.RefreshVersion = s.refresh, s.refreshVer
	}
	if s.validLocked(s.now()) {
		c.AccessToken, c.Expiry, c.Obtained = s.tok.Access, s.tok.Expiry, s.obtained
	}
	return c
}

// adoptShared takes what the committed record c offers: a newer refresh
// token of this Source's lineage, and then a valid access token other than
// the one this Source has or the upstream rejected, or a needs_consent
// verdict. ok reports that the flight is answered (tok or err) without a
// request of its own.
func (s *Source) adoptShared(c Committed) (tok Token, err error, ok bool) {
	if c.Version == 0 || c.Credential != s.credential {
		return Token{}, nil, false
	}
	s.mu.Lock()
	changed := false
	if s.cfg.AuthType == AuthRefreshToken && !c.RefreshToken.Empty() && c.RefreshToken != s.refresh && c.RefreshVersion >= s.refreshVer {
		s.refresh, s.refreshVer, s.unsaved = c.RefreshToken, c.RefreshVersion, false
		changed = true
	}
	switch {
	case c.Grant != s.grantPrint:
	case c.State == tokenstore.StateNeedsConsent && !s.resetShared:
		s.final = &Error{Account: s.cfg.Account, Final: true, Description: c.LastError, Err: errSharedVerdict}
		s.lastErr = s.final
		s.verdictVer = c.Version
		s.failures++
		tok, err, ok = Token{}, s.final, true
	case c.State == "" && !c.AccessToken.Empty() && c.AccessToken != s.tok.Access && c.AccessToken != s.rejected:
		life := c.Expiry.Sub(c.Obtained)
		if life <= 0 {
			life = time.Second
		}
		if s.now().Before(c.Expiry.Add(-min(s.cfg.RefreshBuffer, life/2))) {
			s.failures, s.lastErr, s.final = 0, nil, nil
			s.nextTry, s.holdUntil, s.breakerOpen = time.Time{}, time.Time{}, false
			s.lastRefresh = c.Obtained
			s.setTokenLocked(Token{Access: c.AccessToken, Expiry: c.Expiry}, c.Obtained)
			tok, ok, changed = s.tok, true, true
		}
	}
	e := s.entryLocked()
	s.mu.Unlock()
	if changed {
		s.put(e) // the local copy: it re-seeds an emptied Redis
	}
	return tok, err, ok
}

// lockedRequest makes the token request while holding the cluster's lock,
// then commits the outcome over the record c was read as; a lost commit
// takes the committed record instead. A rotated refresh token is
// committed to the shared record, then saved to the state file, before
// the new access token is handed out.
func (s *Source) lockedRequest(ctx context.Context, c Committed, sent time.Time) (Token, error) {
	s.mu.Lock()
	rt := s.refresh
	s.mu.Unlock()
	g, err := s.fetch(ctx, rt, sent)
	if errors.Is(err, ErrFinal) && s.cfg.AuthType == AuthRefreshToken {
		// Not a verdict if another proxy rotated the token meanwhile.
		if c2, lerr := s.cfg.Shared.Load(ctx, s.cfg.Account); lerr == nil && c2.Credential == s.credential &&
			!c2.RefreshToken.Empty() && c2.RefreshToken != rt {
			if tok, aerr, ok := s.adoptShared(c2); ok {
				return tok, aerr
			}
			s.mu.Lock()
			rt = s.refresh
			s.mu.Unlock()
			c = c2
			g, err = s.fetch(ctx, rt, sent)
		}
	}
	var rotated secret.String
	if g.refresh != "" && g.refresh != rt.Reveal() {
		rotated = secret.New(g.refresh) // PROVIDERS.md: Microsoft rotates on every refresh
	}
	te, _ := errors.AsType[*Error](err)
	if err != nil && rotated.Empty() && (te == nil || !te.Final) {
		// A transient failure: nothing to share; the backoff is this
		// proxy's (the lock is released, another may try).
		return s.finish(g, err, rotated, sent)
	}

	s.mu.Lock()
	next := Committed{Credential: s.credential, Grant: s.grantPrint, RefreshVersion: s.refreshVer}
	if s.refresh != s.cfg.RefreshToken {
		next.RefreshToken = s.refresh
	}
	s.mu.Unlock()
	if !rotated.Empty() {
		next.RefreshToken = rotated
	}
	switch {
	case err == nil:
		next.AccessToken, next.Expiry, next.Obtained = secret.New(g.access), sent.Add(g.expiresIn), sent
	case te != nil && te.Final:
		next.State, next.LastError = tokenstore.StateNeedsConsent, te.detail()
	}
	base := c.Version
	for range 3 {
		if !rotated.Empty() {
			next.RefreshVersion = base + 1
		}
		won, cerr := s.cfg.Shared.Commit(ctx, s.cfg.Account, base, next)
		if cerr != nil {
			// Redis failed after the request: the state file holds the
			// rotation (finish saves it before use) and re-seeds Redis.
			s.log.Warn("shared token record not written: keeping the result on this proxy", "err", cerr)
			break
		}
		if won {
			break
		}
		cur, lerr := s.cfg.Shared.Load(ctx, s.cfg.Account)
		if lerr != nil {
			break
		}
		if !rotated.Empty() && cur.Credential == s.credential && cur.RefreshVersion <= c.RefreshVersion {
			// Nobody rotated since our base: ours is the newest refresh
			// token the provider issued, so it goes on top.
			base = cur.Version
			continue
		}
		// Another proxy committed first: take its result; ours (and any
		// refresh token it carried) is dropped.
		if tok, aerr, ok := s.adoptShared(cur); ok {
			return tok, aerr
		}
		base = cur.Version
		if !rotated.Empty() {
			break
		}
	}
	s.mu.Lock()
	if !rotated.Empty() {
		s.refreshVer = next.RefreshVersion
	}
	s.resetShared, s.rejected = false, secret.String{}
	s.verdictVer = base + 1 // the version that holds a verdict committed now
	s.mu.Unlock()
	return s.finishRotated(g, err, rotated, sent)
}

// FollowShared brings the shared record and this Source in step where
// they drift apart without a request: a refresh token rotated on this
// proxy while Redis did not answer is written to the record (Seed) as
// soon as Redis answers; a needs_consent verdict is lifted once the record
// has moved on without it (an operator reset the account on another proxy
// and that proxy's request succeeded). It calls Redis only in those two
// cases, and reports whether it changed anything.
func (s *Source) FollowShared(ctx context.Context) (bool, error) {
	s.mu.Lock()
	pending := s.cfg.Shared != nil && s.seedPending
	s.mu.Unlock()
	if pending {
		ok, err := s.SeedShared(ctx)
		if err != nil {
			return false, err
		}
		s.mu.Lock()
		s.seedPending = false
		s.mu.Unlock()
		if ok {
			return true, nil
		}
	}
	return s.liftVerdict(ctx)
}

// liftVerdict is FollowShared's second case.
func (s *Source) liftVerdict(ctx context.Context) (bool, error) {
	s.mu.Lock()
	held, since := s.cfg.Shared != nil && s.final != nil && s.inflight == nil, s.verdictVer
	s.mu.Unlock()
	if !held {
		return false, nil
	}
	c, err := s.cfg.Shared.Load(ctx, s.cfg.Account)
	if err != nil {
		return false, fmt.Errorf("sync verdict of %s: %w", s.cfg.Account, err)
	}
	if c.Version <= since || c.Credential != s.credential || c.State == tokenstore.StateNeedsConsent {
		return false, nil
	}
	s.mu.Lock()
	if s.final == nil || s.verdictVer != since {
		s.mu.Unlock()
		return false, nil // changed meanwhile
	}
	s.final, s.lastErr, s.failures = nil, nil, 0
	s.nextTry, s.holdUntil, s.breakerOpen = time.Time{}, time.Time{}, false
	s.mu.Unlock()
	s.adoptShared(c) // its token, when valid; else the next client requests one
	s.mu.Lock()
	e := s.entryLocked()
	s.mu.Unlock()
	s.put(e)
	s.log.Info("needs_consent lifted: another proxy's request succeeded after an operator's reset")
	return true, nil
}

// unshared is the request of a proxy that cannot reach the shared record:
// it renews on its own, as a proxy outside a cluster does; a rotation goes
// to the state file with the next version and re-seeds the shared record
// once it answers (Reseed).
func (s *Source) unshared(ctx context.Context, sent time.Time, cause error) (Token, error) {
	s.log.Warn("shared token state unreachable: this proxy requests its own token", "err", cause)
	s.mu.Lock()
	rt := s.refresh
	s.mu.Unlock()
	g, err := s.fetch(ctx, rt, sent)
	var rotated secret.String
	if g.refresh != "" && g.refresh != rt.Reveal() {
		rotated = secret.New(g.refresh)
		s.mu.Lock()
		s.refreshVer++
		s.seedPending = true
		s.mu.Unlock()
	}
	return s.finishRotated(g, err, rotated, sent)
}
