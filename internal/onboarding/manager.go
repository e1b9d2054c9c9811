package onboarding

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/oauthflow"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/safefile"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// InvitationState is where an invitation stands.
type InvitationState string

// The states of an invitation. Expired is never stored: a pending or
// opened invitation past ExpiresAt shows as expired.
const (
	StatePending   InvitationState = "pending"   // created, link not opened yet
	StateOpened    InvitationState = "opened"    // the owner was sent to the provider
	StateConsented InvitationState = "consented" // the grant is stored
	StateFailed    InvitationState = "failed"    // refused, another address, or an error: Reason says
	StateExpired   InvitationState = "expired"
)

// States lists every state, for metrics.
func States() []InvitationState {
	return []InvitationState{StatePending, StateOpened, StateConsented, StateFailed, StateExpired}
}

// DefaultTTL is an invitation's lifetime when Invite is given none.
const DefaultTTL = 7 * 24 * time.Hour

// Invitation is what the operator sees of an invitation: never its token.
type Invitation struct {
	ID        string          `json:"id"` // public id, not the secret token
	AccountID string          `json:"account_id"`
	Email     string          `json:"email"`
	State     InvitationState `json:"state"`
	Reason    string          `json:"reason,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
	ExpiresAt time.Time       `json:"expires_at"`
}

// stored is an invitation in the state file: the token only as SHA-256.
type stored struct {
	Invitation
	TokenSHA256 string `json:"token_sha256"`
}

// Options configure a Manager.
type Options struct {
	// StatePath is the invitations' state file (invitations.json).
	StatePath string
	// PublicURL is the onboarding listener's address as the owner's
	// browser reaches it, e.g. https://onboard.example.com; links and the
	// OAuth redirect URI (PublicURL + "/callback") start with it.
	PublicURL string
	// TTL is an invitation's lifetime when Invite is given none; 0 is
	// DefaultTTL.
	TTL time.Duration
	// Snapshot returns the configuration in force (the accounts).
	Snapshot func() *config.Snapshot
	// Grants stores consented grants.
	Grants GrantStore
	// AfterGrant runs after a grant is stored (the service's reload); nil
	// does nothing.
	AfterGrant func(ctx context.Context) error
	// HTTPClient makes the token requests; nil is http.DefaultClient.
	HTTPClient *http.Client
	Logger     *slog.Logger
	Now        func() time.Time // default time.Now
}

// pendingAuth is an authorization in flight, by its OAuth state.
type pendingAuth struct {
	id      string
	req     oauthflow.Request
	app     oauthflow.App
	expires time.Time
}

// Manager keeps the invitations and runs their flow.
type Manager struct {
	o   Options
	log *slog.Logger

	mu       sync.Mutex // guards inv and auths, and the state file's writes
	inv      []*stored
	auths    map[string]*pendingAuth // by OAuth state
	maxAuths int
}

// New loads the state file (absent: no invitations yet).
func New(o Options) (*Manager, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.PublicURL = strings.TrimRight(o.PublicURL, "/")
	m := &Manager{o: o, log: o.Logger, auths: map[string]*pendingAuth{}, maxAuths: 10000}
	b, err := os.ReadFile(o.StatePath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("invitations: %w", err)
	default:
		var f struct {
			Invitations []*stored `json:"invitations"`
		}
		if err := json.Unmarshal(b, &f); err != nil {
			return nil, fmt.Errorf("invitations: %s: %w", o.StatePath, err)
		}
		m.inv = f.Invitations
	}
	return m, nil
}

// saveLocked writes the state file. Callers hold m.mu.
func (m *Manager) saveLocked() error {
	b, err := json.MarshalIndent(struct {
		Comment     string    `json:"_comment"`
		Invitations []*stored `json:"invitations"`
	}{"Invitations of xoauth2-proxy: written by the proxy; tokens are kept only as SHA-256.", m.inv}, "", "  ")
	if err != nil {
		return err
	}
	if err := safefile.Replace(m.o.StatePath, append(b, '\n')); err != nil {
		return fmt.Errorf("invitations: save: %w", err)
	}
	return nil
}

func hashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

func newID() string {
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand documentation)
	return "inv_" + hex.EncodeToString(b[:])
}

// account finds an account by account_id or email.
func (m *Manager) account(name string) *config.Account {
	for _, a := range m.o.Snapshot().Accounts {
		if a.ID == name || strings.EqualFold(a.Email, name) {
			return a
		}
	}
	return nil
}

// ErrUnknownAccount: Invite was given no known account.
var ErrUnknownAccount = errors.New("no such account")

// Invite creates an invitation for the account (account_id or email) that
// lives ttl (0: DefaultTTL) and returns it with its link, the only time
// the link exists outside the owner's mail.
func (m *Manager) Invite(ctx context.Context, accountID string, ttl time.Duration) (Invitation, secret.String, error) {
	if err := ctx.Err(); err != nil {
		return Invitation{}, secret.String{}, err
	}
	a := m.account(accountID)
	if a == nil {
		return Invitation{}, secret.String{}, fmt.Errorf("invite %s: %w", accountID, ErrUnknownAccount)
	}
	if _, err := AppFor(a); err != nil {
		return Invitation{}, secret.String{}, fmt.Errorf("invite %s: %w", a.ID, err)
	}
	if ttl <= 0 {
		ttl = m.o.TTL
	}
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	tok := oauthflow.NewState() // 256 random bits
	now := m.o.Now()
	s := &stored{Invitation: Invitation{ID: newID(), AccountID: a.ID, Email: a.Email, State: StatePending,
		CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(ttl)}, TokenSHA256: hashToken(tok.Reveal())}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.inv = append(m.inv, s)
	if err := m.saveLocked(); err != nil {
		m.inv = m.inv[:len(m.inv)-1]
		return Invitation{}, secret.String{}, err
	}
	m.log.Info("invitation created", "invitation", s.ID, "account", a.ID, "expires_at", s.ExpiresAt)
	return m.view(s, now), secret.New(m.o.PublicURL + "/i/" + tok.Reveal()), nil
}

// view is s as the operator sees it at now.
func (m *Manager) view(s *stored, now time.Time) Invitation {
	v := s.Invitation
	if (v.State == StatePending || v.State == StateOpened) && !now.Before(v.ExpiresAt) {
		v.State = StateExpired
	}
	return v
}

// Invitations lists every invitation, newest first.
func (m *Manager) Invitations() []Invitation {
	now := m.o.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Invitation, 0, len(m.inv))
	for _, s := range m.inv {
		out = append(out, m.view(s, now))
	}
	slices.SortStableFunc(out, func(a, b Invitation) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return out
}

// Counts is the number of invitations in each state.
func (m *Manager) Counts() map[InvitationState]int {
	c := map[InvitationState]int{}
	for _, v := range m.Invitations() {
		c[v.State]++
	}
	return c
}

// byTokenLocked finds the invitation of a link token. Callers hold m.mu.
func (m *Manager) byTokenLocked(tok string) *stored {
	h := hashToken(tok)
	for _, s := range m.inv {
		if s.TokenSHA256 == h {
			return s
		}
	}
	return nil
}

func (m *Manager) byIDLocked(id string) *stored {
	for _, s := range m.inv {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// setLocked moves an invitation to a state and saves. Callers hold m.mu.
func (m *Manager) setLocked(s *stored, st InvitationState, reason string) {
	s.State, s.Reason, s.UpdatedAt = st, reason, m.o.Now()
	if err := m.saveLocked(); err != nil {
		m.log.Error("invitation state not saved", "invitation", s.ID, "state", st, "err", err)
	}
}
