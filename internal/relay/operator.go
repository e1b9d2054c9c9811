package relay

import (
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/smtpd"
)

// SenderFor is the sender of account a for a message the operator sends
// from the console (a test message): no AUTH, since the operator signed
// in with the admin token; from there the message takes the clients' path
// (Begin's checks and budget, the session lease, the upstream reply).
// origin is logged as the client's address.
func (r *Relay) SenderFor(a *account.Account, origin string) smtpd.Sender {
	return &sender{r: r, a: a, remote: origin}
}
