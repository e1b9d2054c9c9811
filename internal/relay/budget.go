package relay

import (
	"context"
	"strings"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/logthrottle"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/provider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/quota"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
)

// Budgets refuse early and precisely: the client hears "no budget" at MAIL
// or RCPT, never after it sent the body, and always as a 4xx so that the
// sender keeps the mail queued (issue "Sending budgets").

// admitBudget reserves one message of a's budgets: a ticket, or the
// denial that refuses the message (counted). Without budgets the ticket
// reserves nothing.
func (r *Relay) admitBudget(ctx context.Context, a *account.Account) (quota.Ticket, *quota.Denial) {
	tk, d := a.Budget().Admit(ctx)
	if d == nil {
		return tk, nil
	}
	r.countDenial(d)
	return nil, d
}

// countDenial counts a budget refusal by its reason.
func (r *Relay) countDenial(d *quota.Denial) {
	if d.Cooldown() {
		r.m.budgetRefusals.WithLabelValues("cooling_down").Inc()
		return
	}
	r.m.budgetRefusals.WithLabelValues(d.Limit).Inc()
}

// rcptBudget reserves one recipient; an error (counted) means refuse it
// here: tooManyRcpts or a *quota.Denial.
func (t *txn) rcptBudget(ctx context.Context) error {
	tooMany, d := t.ticket.Rcpt(ctx)
	switch {
	case tooMany:
		t.r.m.budgetRefusals.WithLabelValues("recipients per message").Inc()
		return tooManyRcpts{max: t.a.Budget().Limits().RecipientsPerMessage}
	case d != nil:
		t.r.countDenial(d)
		return d
	}
	return nil
}

// learn acts on what an upstream reply says about the account (cool-down)
// and returns the reply the client gets: a quota or rate reply becomes
// 451 4.7.0 with the provider's text. A 5xx that clears by itself (a daily
// quota) so becomes a 4xx and the sender retries instead of bouncing; a
// 4xx such as 421 4.7.0 or 450 4.2.1 says which account is throttled, and
// a 421 never reaches the client (clientReply).
func (r *Relay) learn(a *account.Account, rp reply.Reply) reply.Reply {
	v := provider.Classify(rp)
	if v.Kind == provider.Normal {
		return rp
	}
	r.coolDown(a, v.Kind, rp)
	a.NoteReply(rp.String(), time.Now()) // the console's account page shows the cause
	if v.Temporary || rp.Temporary() {
		return reply.New(451, "4.7.0", a.Cfg.Email+": provider says: "+rp.String())
	}
	return rp
}

// clientReply is the reply the client gets for an upstream reply to a
// relayed command: learn's, and never a 421. From the proxy a 421 would
// tell the client that the proxy is closing its connection (RFC 5321
// §3.8), while only the upstream session closed; the client hears a 451
// with the provider's reply instead.
func (r *Relay) clientReply(a *account.Account, rp reply.Reply) reply.Reply {
	rp = r.learn(a, rp)
	if rp.Code != 421 {
		return rp
	}
	enh := "4.4.2"
	if strings.HasPrefix(rp.Enhanced, "4.7.") {
		enh = "4.7.0"
	}
	return reply.New(451, enh, a.Cfg.Email+": provider closed the session: "+rp.String())
}

// coolDown starts the account's cool-down for kind, if one is configured.
func (r *Relay) coolDown(a *account.Account, kind provider.Kind, rp reply.Reply) {
	c := a.Cfg.RateLimiting.Cooldowns
	var d time.Duration
	switch kind {
	case provider.DailyQuota:
		d = c.DailyQuota
	case provider.Rate:
		d = c.Rate
	case provider.LoginRate:
		d = c.LoginRate
	case provider.Concurrency:
		d = c.Concurrency
	}
	if !a.Budget().CoolDown(rp.String(), d) {
		return
	}
	r.m.cooldowns.WithLabelValues(kind.String()).Inc()
	r.logs.Warn(r.log, logthrottle.Key{Account: a.Cfg.ID, Reason: "cooldown " + kind.String()}, "account cooling down",
		"account", a.Cfg.ID, "cause", kind.String(), "for", d, "upstream_reply", rp.String())
}
