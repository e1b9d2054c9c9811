package admin

import (
	"context"
	"net/http"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/onboarding"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// Inviter creates and lists invitations (onboarding.Manager).
type Inviter interface {
	Invite(ctx context.Context, accountID string, ttl time.Duration) (onboarding.Invitation, secret.String, error)
	Invitations() []onboarding.Invitation
}

// maxInvitesPerRequest bounds one POST /api/invitations.
const maxInvitesPerRequest = 1000

// HandleInvitations adds the invitation routes, when the onboarding
// listener is configured:
//
//	POST /api/invitations {"accounts": ["EMAIL or ACCOUNT_ID", ...], "ttl_seconds": N}
//	GET  /api/invitations
//
// The POST answers each created invitation with its link: the only time
// the link is shown (the proxy keeps only its hash). 200 when all were
// created, 206 when some were, 400 when none.
func (a *API) HandleInvitations(inv Inviter) {
	a.handle("GET /api/invitations", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"success": true, "invitations": inv.Invitations()})
	})
	a.handle("POST /api/invitations", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Accounts   []string `json:"accounts"`
			TTLSeconds int64    `json:"ttl_seconds"`
		}
		if !decode(w, r, &req) {
			return
		}
		if len(req.Accounts) == 0 || len(req.Accounts) > maxInvitesPerRequest || req.TTLSeconds < 0 || req.TTLSeconds > 365*86400 {
			fail(w, http.StatusBadRequest, "give 1 to 1000 accounts, and ttl_seconds between 0 (the default) and one year")
			return
		}
		type created struct {
			onboarding.Invitation
			Link string `json:"link"`
		}
		type failed struct {
			Account string `json:"account"`
			Error   string `json:"error"`
		}
		out, bad := []created{}, []failed{}
		for _, name := range req.Accounts {
			v, link, err := inv.Invite(r.Context(), name, time.Duration(req.TTLSeconds)*time.Second)
			if err != nil {
				// The errors name the account and what its config lacks;
				// they hold no secret.
				a.log.Warn("invitation refused", "account", name, "err", err)
				bad = append(bad, failed{name, err.Error()})
				continue
			}
			out = append(out, created{v, link.Reveal()})
		}
		status := http.StatusOK
		switch {
		case len(out) == 0:
			status = http.StatusBadRequest
		case len(bad) > 0:
			status = http.StatusPartialContent
		}
		writeJSON(w, status, map[string]any{"success": len(bad) == 0, "invitations": out, "failed": bad})
	})
}
