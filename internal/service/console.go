package service

import (
	"context"
	"strconv"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/cluster"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/console"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/onboarding"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/traffic"
)

// The console.Backend implementation, beside admin.Backend (admin.go).

// MessageTotals implements console.Backend: messages_total's sent,
// deferred and rejected series, read from the registry /metrics serves,
// so that the console and /metrics never disagree.
func (s *Service) MessageTotals() traffic.Totals {
	var t traffic.Totals
	mfs, err := s.metrics.Gather()
	if err != nil {
		s.log.Warn("console: gather metrics", "err", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "messages_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			n := int64(m.GetCounter().GetValue())
			for _, l := range m.GetLabel() {
				if l.GetName() != "result" {
					continue
				}
				switch l.GetValue() {
				case "sent":
					t.Accepted = n
				case "deferred":
					t.Deferred = n
				case "rejected":
					t.Rejected = n
				}
			}
		}
	}
	return t
}

// Traffic implements console.Backend: the outcomes per minute over the
// hour ending at now, as Run's sweeper sampled them.
func (s *Service) Traffic(now time.Time) []traffic.Minute {
	s.sampleTraffic(now) // the minute in progress, up to now
	return s.traffic.Last(now)
}

// sampleTraffic counts the outcomes since the last sample into the
// per-minute ring (Run's sweeper, every few seconds, and each read).
func (s *Service) sampleTraffic(now time.Time) { s.traffic.Sample(now, s.MessageTotals()) }

// consoleInvitations shows the onboarding listener's invitations on the
// console's Onboarding page: console codes against its own interface, so
// that it does not depend on how invitations are kept.
type consoleInvitations struct{ m *onboarding.Manager }

func (c consoleInvitations) Invite(ctx context.Context, accountID string, ttl time.Duration) (console.InvitationView, secret.String, error) {
	inv, link, err := c.m.Invite(ctx, accountID, ttl)
	return invitationView(inv), link, err
}

func (c consoleInvitations) Invitations() []console.InvitationView {
	list := c.m.Invitations()
	out := make([]console.InvitationView, len(list))
	for i, inv := range list {
		out[i] = invitationView(inv)
	}
	return out
}

func invitationView(inv onboarding.Invitation) console.InvitationView {
	return console.InvitationView{
		ID: inv.ID, AccountID: inv.AccountID, Email: inv.Email,
		State: string(inv.State), Reason: inv.Reason,
		CreatedAt: inv.CreatedAt, UpdatedAt: inv.UpdatedAt, ExpiresAt: inv.ExpiresAt,
	}
}

// consoleCluster is the console's Cluster page in cluster mode: the live
// proxies from their heartbeats, and whether Redis answers.
type consoleCluster struct{ c *cluster.Client }

func (c consoleCluster) Proxies() []console.ProxyView {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ps, err := c.c.Proxies(ctx)
	if err != nil {
		return nil // StoreState says why
	}
	out := make([]console.ProxyView, len(ps))
	for i, p := range ps {
		addr := ""
		if p.Node == c.c.Node() {
			addr = "this proxy"
		}
		out[i] = console.ProxyView{ID: p.Node, Addr: addr, LastSeen: p.LastSeen, Leases: p.SessionsHeld}
	}
	return out
}

func (c consoleCluster) StoreState() string {
	if !c.c.Up() {
		return "Redis unreachable: this proxy runs on its local share of each cap and budget"
	}
	return "Redis up; " + strconv.Itoa(c.c.Live()) + " live proxies"
}
