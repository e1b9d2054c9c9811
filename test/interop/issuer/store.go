package main

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/storage"
)

// client is a fosite client with the suite's one extra property.
type client struct {
	*fosite.DefaultClient
	// TokenBytes > 0 pads this client's access tokens to that many bytes,
	// so that the SASL line exceeds 1,024 bytes and the proxy must send
	// AUTH without an initial response.
	TokenBytes int
	// AccessTTL, when positive, replaces -access-ttl for this client
	// (fosite.ClientWithCustomTokenLifespans).
	AccessTTL time.Duration
}

// GetEffectiveLifespan implements fosite.ClientWithCustomTokenLifespans.
func (c *client) GetEffectiveLifespan(_ fosite.GrantType, tt fosite.TokenType, fallback time.Duration) time.Duration {
	if tt == fosite.AccessToken && c.AccessTTL > 0 {
		return c.AccessTTL
	}
	return fallback
}

// store is fosite's in-memory store plus what the admin calls need: the
// grants (request ids) of each mailbox, users and clients added at run
// time, revoked mailboxes and counters. The embedded MemoryStore keeps the
// tokens and implements rotation and reuse detection.
type store struct {
	*storage.MemoryStore

	mu       sync.Mutex
	clients  map[string]fosite.Client
	users    map[string]string // email → password
	grants   map[string]map[string]bool
	byRTSig  map[string]string // refresh token signature → email
	revoked  map[string]bool
	counters map[string]map[string]int
}

func newStore() *store {
	return &store{
		MemoryStore: storage.NewMemoryStore(),
		clients:     map[string]fosite.Client{},
		users:       map[string]string{},
		grants:      map[string]map[string]bool{},
		byRTSig:     map[string]string{},
		revoked:     map[string]bool{},
		counters:    map[string]map[string]int{},
	}
}

func (s *store) putClient(c fosite.Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[c.GetID()] = c
}

func (s *store) putUser(email, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[email] = password
	delete(s.revoked, email)
}

// GetClient implements fosite.ClientManager.
func (s *store) GetClient(_ context.Context, id string) (fosite.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	if !ok {
		return nil, fosite.ErrNotFound
	}
	return c, nil
}

// Authenticate implements the password grant's user check; the subject is
// the mailbox itself.
func (s *store) Authenticate(_ context.Context, name, secret string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pw, ok := s.users[name]
	if !ok || pw != secret || s.revoked[name] {
		return "", fosite.ErrNotFound.WithDebug("unknown user, wrong password or revoked")
	}
	return name, nil
}

func (s *store) CreateAccessTokenSession(ctx context.Context, sig string, req fosite.Requester) error {
	s.remember(req, "")
	return s.MemoryStore.CreateAccessTokenSession(ctx, sig, req)
}

func (s *store) CreateRefreshTokenSession(ctx context.Context, sig, atSig string, req fosite.Requester) error {
	s.remember(req, sig)
	return s.MemoryStore.CreateRefreshTokenSession(ctx, sig, atSig, req)
}

func (s *store) remember(req fosite.Requester, rtSig string) {
	user := req.GetSession().GetUsername()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.grants[user] == nil {
		s.grants[user] = map[string]bool{}
	}
	s.grants[user][req.GetID()] = true
	if rtSig != "" {
		s.byRTSig[rtSig] = user
	}
}

// revokeUser revokes the access tokens of every grant of email, and with
// all also the refresh tokens, marking the mailbox revoked.
func (s *store) revokeUser(ctx context.Context, email string, all bool) (int, error) {
	s.mu.Lock()
	ids := make([]string, 0, len(s.grants[email]))
	for id := range s.grants[email] {
		ids = append(ids, id)
	}
	if all {
		s.revoked[email] = true
	}
	s.mu.Unlock()
	for _, id := range ids {
		if all {
			if err := s.RevokeRefreshToken(ctx, id); err != nil && !errors.Is(err, fosite.ErrNotFound) {
				return 0, err
			}
		}
		if err := s.RevokeAccessToken(ctx, id); err != nil && !errors.Is(err, fosite.ErrNotFound) {
			return 0, err
		}
	}
	return len(ids), nil
}

func (s *store) isRevoked(email string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.revoked[email]
}

func (s *store) count(user, what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if user == "" {
		user = "(unknown)"
	}
	if s.counters[user] == nil {
		s.counters[user] = map[string]int{}
	}
	s.counters[user][what]++
}

func (s *store) stats() map[string]map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]map[string]int, len(s.counters))
	for u, m := range s.counters {
		c := make(map[string]int, len(m))
		for k, v := range m {
			c[k] = v
		}
		out[u] = c
	}
	return out
}

// userOfForm names the mailbox a refused token request was about, for the
// log: the password grant's username, or the owner of the refresh token.
func (s *store) userOfForm(ctx context.Context, r *http.Request) string {
	if u := r.PostFormValue("username"); u != "" {
		return u
	}
	rt := r.PostFormValue("refresh_token")
	if rt == "" {
		return ""
	}
	sig := rtSignature(ctx, rt)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byRTSig[sig]
}

// rtSignature is the HMAC strategy's signature part of a refresh token
// ("ory_rt_<key>.<signature>").
func rtSignature(_ context.Context, token string) string {
	_, sig, ok := strings.Cut(token, ".")
	if !ok {
		return ""
	}
	return sig
}

// paddedStrategy is fosite's HMAC strategy, with the access tokens of a
// client whose TokenBytes is set padded in front to that length. Padding
// and token are separated by "~" (a b64token character, RFC 6750 §2.1)
// and the padding is stripped before fosite checks a token.
type paddedStrategy struct {
	*oauth2.HMACSHAStrategy
}

const padAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func (p *paddedStrategy) GenerateAccessToken(ctx context.Context, r fosite.Requester) (string, string, error) {
	tok, sig, err := p.HMACSHAStrategy.GenerateAccessToken(ctx, r)
	if err != nil {
		return tok, sig, err
	}
	c, ok := r.GetClient().(*client)
	if !ok || c.TokenBytes <= len(tok)+1 {
		return tok, sig, nil
	}
	pad := make([]byte, c.TokenBytes-len(tok)-1)
	if _, err := rand.Read(pad); err != nil {
		return "", "", err
	}
	for i, b := range pad {
		pad[i] = padAlphabet[int(b)%len(padAlphabet)]
	}
	return string(pad) + "~" + tok, sig, nil
}

func (p *paddedStrategy) AccessTokenSignature(ctx context.Context, token string) string {
	return p.HMACSHAStrategy.AccessTokenSignature(ctx, unpad(token))
}

func (p *paddedStrategy) ValidateAccessToken(ctx context.Context, r fosite.Requester, token string) error {
	return p.HMACSHAStrategy.ValidateAccessToken(ctx, r, unpad(token))
}

func unpad(token string) string {
	if i := strings.LastIndexByte(token, '~'); i >= 0 {
		return token[i+1:]
	}
	return token
}
