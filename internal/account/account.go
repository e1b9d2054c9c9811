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
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/quota"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
)

// ErrBadCredentials is the one answer to every failed AUTH.
var ErrBadCredentials = reply.New(535, "5.7.8", "Authentication credentials invalid")

// Account is one configuration of an account, as a reload found it,
// paired with the account's State, which outlives the configuration: a
// reload that edits the account makes a new Account over the same State.
type Account struct {
	Cfg *config.Account // immutable
	*State
	budget Budget

	verified atomic.Pointer[[sha256.Size]byte] // HMAC of the last password that verified
	removed  atomic.Bool                       // replaced or deleted by a reload
}

// Removed reports that a reload deleted or replaced this account: its
// sessions finish what they carry, and new transactions are refused.
func (a *Account) Removed() bool { return a.removed.Load() }

// Name identifies the account in logs.
func (a *Account) Name() string { return a.Cfg.ID }

// Budget is the account's budgets and cool-downs.
func (a *Account) Budget() Budget { return a.budget }

// Acquire counts one more message in flight; it fails when the account is
// at its MaxConcurrentMessages.
func (a *Account) Acquire() bool { return a.acquire(a.Cfg.MaxConcurrentMessages) }

// Options configure a Registry.
type Options struct {
	Trusted []netip.Prefix // networks where password-less accounts may AUTH
	// Budget keeps the accounts' sending budgets and cool-downs by
	// account_id; nil: none (dry-run).
	Budget quota.Budget
	Logger *slog.Logger
	// Now is the clock of the warm-up ramp (quota.Ramp); nil: time.Now.
	Now func() time.Time
}

// PasswordCost is the bcrypt cost of the hashes HashPassword makes.
const PasswordCost = 12

// Registry finds accounts by AUTH username and keeps each account's State
// by account_id for as long as the account exists. Its account set is
// replaced as a whole by a reload; readers always see one consistent set.
type Registry struct {
	opts Options
	log  *slog.Logger
	key  [32]byte

	cur     atomic.Pointer[set]
	mu      sync.Mutex     // serialises Replace and Close
	closers sync.WaitGroup // sessions of replaced runtimes and removed accounts being closed
	// openedGone is the sessions opened by accounts a reload removed, so
	// that the total over all accounts never falls.
	openedGone atomic.Int64
}

// set is one generation of accounts.
type set struct {
	byName   map[string]*Account // enabled accounts by lower-cased email and account_id
	accounts []*Account          // all, disabled ones included, in file order
	byID     map[string]*Account // all, by account_id
}

// Build makes the Runtime of account c, whose long-lived state is st (a
// token source's OnBlocked hook drains st's sessions). tokens, when not
// nil, is the account's token source to keep: only the session side of
// its configuration changed.
type Build func(c *config.Account, st *State, tokens *token.Source) (Runtime, error)

// NewRegistry builds every account of snap.
func NewRegistry(snap *config.Snapshot, build Build, opts Options) (*Registry, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Registry{opts: opts, log: opts.Logger}
	if _, err := rand.Read(r.key[:]); err != nil {
		return nil, fmt.Errorf("account registry: %w", err)
	}
	p, err := r.plan(snap, build, &set{})
	if err != nil {
		return nil, err
	}
	r.cur.Store(p.next)
	return r, nil
}

// plan is what a reload will do: the next set, and the runtimes to
// install into states that go on.
type plan struct {
	next  *set
	swaps []swap
	gone  []*Account // accounts of the old set not in the next one
	ch    Change
}

type swap struct {
	st *State
	rt Runtime
}

// plan makes the next set from snap. An account whose configuration did
// not change is kept as it is. An edited one gets a new Account over its
// State: when the edit touches its sessions (Classify) it gets a new
// Runtime (and drops its old sessions), otherwise it keeps its sessions,
// tokens, counters and cool-downs. On error nothing changes: runtimes
// built so far are closed.
func (r *Registry) plan(snap *config.Snapshot, build Build, old *set) (*plan, error) {
	prev := make(map[string]*Account, len(old.accounts))
	for _, a := range old.accounts {
		prev[a.Cfg.ID] = a
	}
	p := &plan{next: &set{
		byName: make(map[string]*Account, 2*len(snap.Accounts)),
		byID:   make(map[string]*Account, len(snap.Accounts)),
	}}
	fail := func(id string, err error) (*plan, error) {
		for _, sw := range p.swaps {
			closeRuntime(sw.rt)
		}
		for _, a := range p.next.accounts {
			if _, ok := prev[a.Cfg.ID]; !ok {
				closeRuntime(*a.rt.Load())
			}
		}
		return nil, fmt.Errorf("account %s: %w", id, err)
	}
	for _, c := range snap.Accounts {
		a, ok := prev[c.ID]
		switch {
		case !ok:
			st := &State{id: c.ID}
			rt, err := build(c, st, nil)
			if err != nil {
				return fail(c.ID, err)
			}
			st.rt.Store(&rt)
			a = r.account(c, st)
			p.ch.Added = append(p.ch.Added, c.ID)
		default:
			delete(prev, c.ID)
			edit := Classify(a.Cfg, c)
			if edit == Unchanged {
				break
			}
			st := a.State
			a = r.account(c, st)
			p.ch.Changed = append(p.ch.Changed, c.ID)
			if edit == SettingsOnly {
				break
			}
			var keep *token.Source
			if edit == SessionsOnly {
				keep = st.Tokens()
			}
			rt, err := build(c, st, keep)
			if err != nil {
				return fail(c.ID, err)
			}
			p.swaps = append(p.swaps, swap{st, rt})
			p.ch.Reopened = append(p.ch.Reopened, c.ID)
		}
		p.next.accounts = append(p.next.accounts, a)
		p.next.byID[c.ID] = a
		if c.Disabled {
			continue
		}
		p.next.byName[strings.ToLower(c.Email)] = a
		if _, taken := p.next.byName[strings.ToLower(c.ID)]; !taken {
			p.next.byName[strings.ToLower(c.ID)] = a
		}
	}
	for _, a := range old.accounts {
		if n := p.next.byID[a.Cfg.ID]; n == nil || n.State != a.State {
			p.gone = append(p.gone, a)
			p.ch.Removed = append(p.ch.Removed, a.Cfg.ID)
		}
	}
	return p, nil
}

// account pairs configuration c with state st.
func (r *Registry) account(c *config.Account, st *State) *Account {
	return &Account{Cfg: c, State: st, budget: Budget{
		b: r.opts.Budget, id: c.ID, limits: quota.LimitsFor(c),
		// rate_limiting.enabled false switches the account's budgets
		// off, cool-downs from earlier provider replies included.
		on:     r.opts.Budget != nil && c.RateLimiting.Enabled,
		warmup: c.RateLimiting.Warmup, now: r.opts.Now,
	}}
}

// Change summarises what a Replace did, by account_id. Changed lists
// every edited account; Reopened those of them whose sessions were
// replaced.
type Change struct {
	Added, Changed, Removed, Reopened []string
}

// Replace switches to the accounts of snap. Unchanged accounts stay as
// they are. Edited ones are marked removed, so their authenticated
// clients must log in again, while their State goes on in a new Account:
// an edit of what upstream sessions depend on (Classify) drains the old
// sessions (transactions in flight finish on them) and opens new ones on
// demand; any other edit keeps the warm sessions. Removed accounts'
// sessions close once their transactions in flight have returned them.
// Counters never fall. New AUTHs see the new set at once. On error
// nothing changes.
func (r *Registry) Replace(snap *config.Snapshot, build Build) (Change, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.cur.Load()
	p, err := r.plan(snap, build, old)
	if err != nil {
		return Change{}, err
	}
	var retired []Runtime
	for _, sw := range p.swaps {
		retired = append(retired, sw.st.swap(sw.rt))
	}
	r.cur.Store(p.next)
	for _, a := range old.accounts {
		if p.next.byID[a.Cfg.ID] != a {
			a.removed.Store(true)
		}
	}
	for _, a := range p.gone {
		r.openedGone.Add(a.SessionStats().Opened)
		retired = append(retired, *a.rt.Load())
	}
	for _, rt := range retired {
		r.closers.Go(func() { closeRuntime(rt) })
	}
	return p.ch, nil
}

// closeRuntime closes a runtime's sessions: idle ones now, leased ones
// when their transactions return them.
func closeRuntime(rt Runtime) {
	if rt.Sessions != nil {
		rt.Sessions.Close()
	}
}

// OpenedGone is the sessions opened, ever, by accounts that reloads
// removed: with the SessionStats of the accounts in force, the total
// opened since start.
func (r *Registry) OpenedGone() int64 { return r.openedGone.Load() }

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

// Current returns the account a client that authenticated as a sends
// as now: a itself, or, after a reload edited it, the account with its
// account_id in the current set, as long as what the client proved at
// AUTH still holds there (same email, same smtp_password, enabled) and
// it is the same account (the same runtime state, kept by account_id).
// An edit of vmta_name, budgets or the upstream side thus does not make
// PowerMTA's open connections log in again. nil: the account was removed,
// disabled or its password or email changed; the client must log in
// again.
func (r *Registry) Current(a *Account) *Account {
	if !a.Removed() {
		return a
	}
	n := r.cur.Load().byID[a.Cfg.ID]
	if n == nil || n.State != a.State || n.Cfg.Disabled ||
		!strings.EqualFold(n.Cfg.Email, a.Cfg.Email) ||
		n.Cfg.PasswordHashed != a.Cfg.PasswordHashed ||
		subtle.ConstantTimeCompare([]byte(n.Cfg.SMTPPassword.Reveal()), []byte(a.Cfg.SMTPPassword.Reveal())) != 1 {
		return nil
	}
	return n
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

// Sweep closes idle upstream sessions past their timeouts, in every
// account.
func (r *Registry) Sweep() {
	for _, a := range r.All() {
		if ss := a.Sessions(); ss != nil {
			ss.Sweep()
		}
	}
}

// Close closes every account's sessions (QUIT to idle ones) and waits for
// those of runtimes and accounts replaced or removed by earlier reloads.
func (r *Registry) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.All() {
		closeRuntime(*a.rt.Load())
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
