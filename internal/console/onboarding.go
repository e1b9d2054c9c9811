package console

import (
	"context"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// Onboarding creates consent invitations (issue 13's package implements
// it; the service passes it in).
type Onboarding interface {
	// Invite creates an invitation for the account, valid for ttl, and
	// returns its view and its link, which is secret: it is handed to
	// the operator once, as a download, and never shown in a page.
	Invite(ctx context.Context, accountID string, ttl time.Duration) (InvitationView, secret.String, error)
	// Invitations lists the invitations and their states.
	Invitations() []InvitationView
}

// InvitationView is what may be shown of an invitation.
type InvitationView struct {
	ID, AccountID, Email string
	// State is pending, opened, consented, failed or expired.
	State, Reason                   string
	CreatedAt, UpdatedAt, ExpiresAt time.Time
}

// Cluster describes the proxies of a cluster (cluster mode); the page is
// shown only when one is given.
type Cluster interface {
	// Proxies lists the proxies that share the accounts.
	Proxies() []ProxyView
	// StoreState says how the shared store (Redis) is, in words.
	StoreState() string
}

// ProxyView is one proxy of a cluster.
type ProxyView struct {
	ID       string
	Addr     string
	LastSeen time.Time
	// Leases is the upstream sessions this proxy holds.
	Leases int
}
