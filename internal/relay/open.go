package relay

import (
	"errors"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/logthrottle"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/provider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/smtpd"
)

// openFailure is the client's reply when the account's session lease
// failed (an *account.OpenError, which already holds the reply), and acts
// on it: errors_total counts each failure, the log shows an account's
// first of a kind and then counts (logthrottle), and a provider's refusal
// for the account starts its cool-down.
func (r *Relay) openFailure(a *account.Account, c *smtpd.ConnInfo, err error) reply.Reply {
	var oe *account.OpenError
	if !errors.As(err, &oe) {
		r.m.errors.WithLabelValues("connect").Inc()
		r.logs.Warn(r.log, logthrottle.Key{Account: a.Cfg.ID, Reason: "connect"}, "cannot open upstream session",
			"conn_id", c.ID, "account", a.Cfg.ID, "err", err)
		return refusal(a.Cfg.Email, errNoSession, c.ID)
	}
	r.m.errors.WithLabelValues(oe.Reason).Inc()
	log := r.log.With("conn_id", c.ID, "account", a.Cfg.ID, "err", oe.Err)
	key := logthrottle.Key{Account: a.Cfg.ID, Reason: oe.Reason}
	var attrs []any
	if oe.ProviderReply != nil {
		attrs = append(attrs, "upstream_reply", oe.ProviderReply.String())
	}
	switch oe.Refusal {
	case provider.Normal:
	case provider.Rate:
		r.coolDown(a, oe.Refusal, *oe.ProviderReply)
	default:
		r.coolDown(a, oe.Refusal, *oe.ProviderReply)
		attrs = append(attrs, "cap", a.SessionStats().Cap)
	}
	if oe.Reason == "busy" {
		attrs = append(attrs, "wait", r.opts.AcquireTimeout)
	}
	if oe.Severe {
		r.logs.Error(log, key, oe.Log, attrs...)
	} else {
		r.logs.Warn(log, key, oe.Log, attrs...)
	}
	return refusal(a.Cfg.Email, oe, c.ID)
}
