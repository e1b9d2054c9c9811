package adminclient

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// Invitation is one created invitation as POST /api/invitations answers
// it: Link is shown this once.
type Invitation struct {
	ID        string        `json:"id"`
	AccountID string        `json:"account_id"`
	Email     string        `json:"email"`
	ExpiresAt time.Time     `json:"expires_at"`
	Link      secret.String `json:"link"`
}

// InviteFailure is an account the API made no invitation for.
type InviteFailure struct {
	Account string `json:"account"`
	Error   string `json:"error"`
}

// MaxInvites is how many accounts one Invite call may name.
const MaxInvites = 1000

// Invite creates an invitation for each account (email or account_id);
// ttl 0 is the proxy's default.
func (c *Client) Invite(ctx context.Context, accounts []string, ttl time.Duration) ([]Invitation, []InviteFailure, error) {
	if len(accounts) == 0 || len(accounts) > MaxInvites {
		return nil, nil, fmt.Errorf("invite 1 to %d accounts at a time, not %d", MaxInvites, len(accounts))
	}
	var out struct {
		Invitations []Invitation    `json:"invitations"`
		Failed      []InviteFailure `json:"failed"`
		Error       string          `json:"error"`
	}
	status, err := c.do(ctx, "POST", "/api/invitations", map[string]any{"accounts": accounts, "ttl_seconds": int64(ttl / time.Second)}, &out,
		http.StatusOK, http.StatusPartialContent, http.StatusBadRequest)
	if err != nil {
		return nil, nil, err
	}
	if status == http.StatusBadRequest && len(out.Failed) == 0 {
		return nil, nil, &Error{Status: status, Message: out.Error}
	}
	return out.Invitations, out.Failed, nil
}
