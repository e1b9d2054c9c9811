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
	"reflect"
	"strings"
	"sync"
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
	removed  atomic.Bool                       // replaced or deleted by a reload

	// Outcome counters, for the admin API.
	Sent      atomic.Int64 // final reply 2xx
	Failed    atomic.Int64 // final reply 4xx/5xx, or refused before DATA
	Ambiguous atomic.Int64 // final reply lost after the dot was sent
	lastReply atomic.Pointer[LastReply]
}

// LastReply is the last final reply of an upstream transaction.
type LastReply struct {
	Text string
	At   time.Time
}

// SetLastReply records the last upstream final reply.
func (a *Account) SetLastReply(text string, at time.Time) {
	a.lastReply.Store(&LastReply{Text: text, At: at})
}

// LastReply returns the last upstream final reply, if any.
func (a *Account) LastReply() (LastReply, bool) {
	if p := a.lastReply.Load(); p != nil {
		return *p, true
	}
	return LastReply{}, false
}

// Removed reports that a reload deleted or replaced this account: its
// sessions finish what they carry, and new transactions are refused.
func (a *Account) Removed() bool { return a.removed.Load() }

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
	Trusted []netip.Prefix // networks where password-less accounts may AUTH
	Logger  *slog.Logger
}

// PasswordCost is the bcrypt cost of the hashes HashPassword makes.
const PasswordCost = 12

// Registry finds accounts by AUTH username. Its account set is replaced
// as a whole by a reload; readers always see one consistent set.
type Registry struct {
	opts Options
	log  *slog.Logger
	key  [32]byte

	cur     atomic.Pointer[set]
	mu      sync.Mutex     // serialises Replace and Close
	closers sync.WaitGroup // pools of removed accounts being closed
}

// set is one generation of accounts.
type set struct {
	byName   map[string]*Account // enabled accounts by lower-cased email and account_id
	accounts []*Account          // all, disabled ones included, in file order
}

// Build makes the runtime state of one account.
type Build func(*config.Account) (*Account, error)

// NewRegistry builds every account of snap.
func NewRegistry(snap *config.Snapshot, build Build, opts Options) (*Registry, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Registry{opts: opts, log: opts.Logger}
	if _, err := rand.Read(r.key[:]); err != nil {
		return nil, fmt.Errorf("account registry: %w", err)
	}
	s, _, err := r.build(snap, build, nil)
	if err != nil {
		return nil, err
	}
	r.cur.Store(s)
	return r, nil
}

// build makes a new set from snap, reusing the accounts of old whose
// configuration did not change (their tokens, sessions and counters go
// on). It returns the set and the old accounts it did not reuse. On error
// nothing is kept: accounts built so far are closed.
func (r *Registry) build(snap *config.Snapshot, build Build, old *set) (*set, []*Account, error) {
	prev := map[string]*Account{}
	if old != nil {
		for _, a := range old.accounts {
			prev[a.Cfg.ID] = a
		}
	}
	s := &set{byName: make(map[string]*Account, 2*len(snap.Accounts))}
	var fresh []*Account
	for _, c := range snap.Accounts {
		a, ok := prev[c.ID]
		if ok && reflect.DeepEqual(*a.Cfg, *c) {
			delete(prev, c.ID)
		} else {
			var err error
			if a, err = build(c); err != nil {
				for _, f := range fresh {
					closePool(f)
				}
				return nil, nil, fmt.Errorf("account %s: %w", c.ID, err)
			}
			fresh = append(fresh, a)
		}
		s.accounts = append(s.accounts, a)
		if c.Disabled {
			continue
		}
		s.byName[strings.ToLower(c.Email)] = a
		if _, taken := s.byName[strings.ToLower(c.ID)]; !taken {
			s.byName[strings.ToLower(c.ID)] = a
		}
	}
	var gone []*Account
	for _, a := range prev {
		gone = append(gone, a)
	}
	return s, gone, nil
}

// Change summarises what a Replace did, by account_id.
type Change struct {
	Added, Changed, Removed []string
}

// Replace switches to the accounts of snap. Unchanged accounts keep their
// runtime state; changed and removed ones are marked removed, so their
// connections refuse new transactions, and their pools close once the
// transactions in flight have returned their sessions. New AUTHs see the
// new set at once. On error nothing changes.
func (r *Registry) Replace(snap *config.Snapshot, build Build) (Change, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.cur.Load()
	s, gone, err := r.build(snap, build, old)
	if err != nil {
		return Change{}, err
	}
	r.cur.Store(s)
	var ch Change
	prev := make(map[string]*Account, len(old.accounts))
	for _, a := range old.accounts {
		prev[a.Cfg.ID] = a
	}
	newIDs := make(map[string]bool, len(s.accounts))
	for _, a := range s.accounts {
		newIDs[a.Cfg.ID] = true
		switch p, ok := prev[a.Cfg.ID]; {
		case !ok:
			ch.Added = append(ch.Added, a.Cfg.ID)
		case p != a:
			ch.Changed = append(ch.Changed, a.Cfg.ID)
		}
	}
	for _, a := range gone {
		if !newIDs[a.Cfg.ID] {
			ch.Removed = append(ch.Removed, a.Cfg.ID)
		}
		a.removed.Store(true)
		r.closers.Add(1)
		go func() {
			defer r.closers.Done()
			closePool(a)
		}()
	}
	return ch, nil
}

func closePool(a *Account) {
	if a.Pool != nil {
		a.Pool.Close()
	}
}

// Lookup finds an enabled account by email (any case) or account_id.
func (r *Registry) Lookup(name string) *Account {
	s := r.cur.Load()
	if a, ok := s.byName[name]; ok {
		return a
	}
	return s.byName[strings.ToLower(name)]
}

// Find is Lookup that also finds disabled accounts (for the admin API).
func (r *Registry) Find(name string) *Account {
	if a := r.Lookup(name); a != nil {
		return a
	}
	for _, a := range r.cur.Load().accounts {
		if strings.EqualFold(a.Cfg.Email, name) || a.Cfg.ID == name {
			return a
		}
	}
	return nil
}

// All returns every account, disabled ones included, in file order.
func (r *Registry) All() []*Account { return r.cur.Load().accounts }

// AuthKey returns the key that failed AUTHs for user count under: one
// per enabled account, whichever of its names (email, account_id) is
// used, and the lower-cased name for any other name.
func (r *Registry) AuthKey(user string) string {
	if a := r.Lookup(user); a != nil {
		return "account:" + a.Cfg.ID
	}
	return "name:" + strings.ToLower(user)
}

// Authenticate checks an AUTH username and password from remote. Every
// failure is ErrBadCredentials. Only a bcrypt hash costs a check; an
// unknown name or a wrong plain-text password is found at once, so
// guesses at made-up names cost no CPU. The caller makes the classes
// look alike: it answers every failure at one fixed time after the
// credentials (smtpd's AuthFailureDelay, which must exceed a check) and
// bounds the checks running at once.
func (r *Registry) Authenticate(ctx context.Context, user, pass string, remote netip.Addr) (*Account, error) {
	a := r.Lookup(user)
	ok, why := r.check(a, pass, remote)
	if ok {
		return a, nil
	}
	r.log.Info("auth failed", "user", user, "remote", remote.String(), "reason", why)
	return nil, ErrBadCredentials
}

func (r *Registry) check(a *Account, pass string, remote netip.Addr) (bool, string) {
	if a == nil {
		return false, "unknown user"
	}
	c := a.Cfg
	if c.SMTPPassword.Empty() {
		for _, p := range r.opts.Trusted {
			if p.Contains(remote.Unmap()) {
				return true, ""
			}
		}
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
	for _, a := range r.All() {
		if a.Pool != nil {
			a.Pool.Sweep()
		}
	}
}

// Close closes every account's pool (QUIT to idle sessions) and waits for
// the pools of accounts removed by earlier reloads.
func (r *Registry) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.All() {
		closePool(a)
	}
	r.closers.Wait()
}

// HashPassword returns a bcrypt hash for smtp_password.
func HashPassword(pass string) (string, error) {
	if pass == "" {
		return "", errors.New("empty password")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pass), PasswordCost)
	return string(h), err
}
