package relay

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/quota"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

// The relay's own refusals. Whatever the relay answers itself, rather than
// relaying the upstream's reply (clientReply), is one of these typed
// errors, and refusal is the one function that turns an error into the
// client's reply: the codes and texts a client can get from the relay are
// all here. Side effects (metrics, cool-downs, logs) stay at the place
// that refuses, in plain sight.
var (
	// errAccountGone: a reload removed, changed or disabled the account
	// after its client authenticated; it must log in again.
	errAccountGone = errors.New("account removed or disabled since AUTH")
	// errInFlight: the account is at its max_concurrent_messages.
	errInFlight = errors.New("account at max_concurrent_messages")
	// errNoSMTPUTF8: MAIL asked for SMTPUTF8, which the upstream lacks.
	errNoSMTPUTF8 = errors.New("upstream lacks SMTPUTF8")
	// errNoRecipients: the upstream said 354 with no recipient accepted;
	// no body is sent.
	errNoRecipients = errors.New("354 with no valid recipient")
	// errUpstreamLost: the upstream session failed before answering.
	errUpstreamLost = errors.New("upstream session lost")
	// errNoSession: no session could be had for the account (the
	// account layer gave no reason).
	errNoSession = errors.New("no upstream session")
	// errNotSent: an earlier command of the batch failed, so this one
	// was not sent (as a real server answers RCPT without a MAIL).
	errNotSent = errors.New("sender not accepted")
)

// tooManyRcpts: the message reached the account's recipients_per_message.
type tooManyRcpts struct{ max int }

func (e tooManyRcpts) Error() string {
	return fmt.Sprintf("more than %d recipients for one message", e.max)
}

// The replies that are the same for everyone, made once: the envelope path
// uses them for every command of a broken transaction.
var (
	errLost = reply.New(451, "4.4.2", "Upstream connection lost, try again later")
	// mailAccepted answers a MAIL kept for the first RCPT (txn.deferMail).
	mailAccepted = reply.New(250, "2.1.0", "Sender OK")
	// dataGoAhead answers a DATA whose body goes as BDAT (txn.finishData).
	dataGoAhead  = reply.New(354, "", "Go ahead")
	errNoSender  = reply.New(503, "5.5.1", "Sender not accepted")
	errAmbiguous = reply.New(451, "4.4.2", "Upstream connection lost after the message was sent; it may or may not have been delivered")
)

// refusal is the client's reply for err, a refusal of account email's
// transaction; ref (the connection ID) names a local failure the client
// cannot be told more about. Errors that carry a reply for the client
// (account.OpenError, a client-side reply.Reply) give it; any other error
// becomes reply.FromError's generic 4xx, so no internal text leaks.
func refusal(email string, err error, ref string) reply.Reply {
	var tm tooManyRcpts
	var d *quota.Denial
	var oe *account.OpenError
	var ue *upstream.Error
	switch {
	case errors.Is(err, errAccountGone):
		return reply.New(451, "4.7.1", email+": account removed or disabled, authenticate again")
	case errors.Is(err, errInFlight):
		return reply.New(451, "4.7.0", email+": too many messages in flight for this account, try again later")
	case errors.As(err, &tm):
		return reply.New(452, "4.5.3", "Too many recipients for "+email+" (at most "+strconv.Itoa(tm.max)+" per message)")
	case errors.As(err, &d) && d.Cooldown():
		return reply.New(451, "4.7.0", email+": cooling down until "+d.Until.UTC().Format(time.RFC3339)+
			" after the provider said: "+d.Cause)
	case d != nil:
		return reply.New(451, "4.7.0", email+": "+d.Limit+" exhausted, resets in "+quota.Human(d.ResetIn))
	case errors.Is(err, errNoSMTPUTF8):
		return reply.New(553, "5.6.7", "Upstream does not support SMTPUTF8")
	case errors.Is(err, errNoRecipients):
		return reply.New(554, "5.5.1", "No valid recipients")
	case errors.Is(err, errNotSent):
		return errNoSender
	case errors.Is(err, errNoSession):
		return reply.New(451, "4.4.1", "Cannot connect to upstream, try again later")
	case errors.As(err, &oe):
		return oe.Reply
	case upstream.Ambiguous(err):
		return errAmbiguous
	case errors.As(err, &ue):
		// The upstream refused the body with a reply: relay it, except a
		// 421 (clientReply explains why); without one the session is lost.
		if ue.Reply != nil && ue.Reply.Code != 421 {
			return *ue.Reply
		}
		return errLost
	case errors.Is(err, errUpstreamLost):
		return errLost
	}
	return reply.FromError(err, ref)
}
