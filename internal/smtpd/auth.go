package smtpd

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/saslmech"
)

var (
	errAuthCancelled = reply.New(501, "5.0.0", "Authentication cancelled")
	errAuthSyntax    = reply.New(501, "5.5.2", "Invalid base64 or SASL response")
	// RFC 3207 §4: AUTH before STARTTLS where TLS is required.
	errNeedStartTLS = reply.New(530, "5.7.0", "Must issue a STARTTLS command first")
	// RFC 4954 §6: no TLS on offer at all.
	errNeedEncryption = reply.New(538, "5.7.11", "Encryption required for requested authentication mechanism")
	errAuthLimited    = reply.New(421, "4.7.0", "Too many failed authentication attempts, try again later")
	errAuthInvalid    = reply.New(535, "5.7.8", "Authentication credentials invalid")
	errAuthBusy       = reply.New(454, "4.7.0", "Too many authentications in progress, try again later")
)

// auth runs AUTH PLAIN or AUTH LOGIN (RFC 4954), each with and without an
// initial response. Outside Trusted it needs TLS. Failed attempts are
// limited per client address and per user key (Config; Trusted clients
// have their own, larger limits); over a limit the client gets 421 4.7.0
// and is disconnected before any password is checked, so guessing goes
// no further. An attempt holds a place in both budgets while its password
// is checked (authLimiter.reserve), so guesses sent in parallel cannot all
// slip under the limit. The check itself waits for one of the
// MaxAuthChecks slots (authGate), and every 535 is answered
// AuthFailureDelay after the credentials arrived (issue 16, findings 1-3).
func (c *conn) auth(ctx context.Context, arg string) {
	switch {
	case !c.ehlo:
		c.replyBad(reply.New(503, "5.5.1", "Send EHLO first"))
		return
	case c.sender != nil:
		c.replyBad(reply.New(503, "5.5.1", "Already authenticated"))
		return
	case c.txn != nil:
		c.replyBad(reply.New(503, "5.5.1", "AUTH not allowed during a mail transaction"))
		return
	case !c.authOffered() && c.srv.cfg.TLSConfig != nil:
		c.replyBad(errNeedStartTLS)
		return
	case !c.authOffered():
		c.replyBad(errNeedEncryption)
		return
	case c.srv.auth.blockedIP(c.ipKey, c.authLimits()):
		c.refuseAuth("address")
		return
	}
	mech, ir, hasIR := strings.Cut(arg, " ")
	mech = strings.ToUpper(mech)
	var user, pass, authz string
	switch mech {
	case "PLAIN":
		resp, ok := c.authResponse(ir, hasIR, "")
		if !ok {
			return
		}
		p, err := saslmech.DecodePlain(resp)
		if err != nil {
			c.replyBad(errAuthSyntax)
			return
		}
		user, pass, authz = p.User, p.Password, p.AuthzID
	case "LOGIN":
		u, ok := c.authResponse(ir, hasIR, saslmech.LoginUserPrompt)
		if !ok {
			return
		}
		p, ok := c.authResponse("", false, saslmech.LoginPasswordPrompt)
		if !ok {
			return
		}
		user, pass = string(u), string(p)
	case "":
		c.replyBad(reply.New(501, "5.5.4", "Syntax: AUTH mechanism"))
		return
	default:
		c.replyBad(reply.New(504, "5.5.4", "Unrecognized authentication type"))
		return
	}
	if user == "" {
		c.replyBad(errAuthSyntax)
		return
	}
	// The failure's answer is timed from here: everything after depends
	// on who the user is.
	start := time.Now()
	at, err := c.srv.auth.reserve(ctx, c.ipKey, c.srv.authKey(user), c.authLimits())
	switch {
	case errors.Is(err, errAuthOverIP):
		c.refuseAuth("address")
		return
	case errors.Is(err, errAuthOverUser):
		c.refuseAuth("username")
		return
	case err != nil: // the connection is ending
		c.quit = true
		return
	}
	// Deferred, so that a panicking backend frees its place too.
	defer c.srv.auth.done(at)
	// An authorization identity different from the user would mean
	// "send as someone else"; we do not support proxy authorization.
	if authz != "" && authz != user {
		c.srv.auth.fail(at)
		c.authFailed(ctx, start, errAuthInvalid)
		return
	}
	sender, err := c.login(ctx, at, user, pass)
	if err != nil {
		r := c.authReply(err)
		if r.Code == 535 { // login counted the failure
			c.authFailed(ctx, start, r)
			return
		}
		c.reply(r)
		if r.Permanent() {
			c.bad++
		}
		return
	}
	c.sender = sender
	c.log = c.log.With("account", sender.Name())
	c.reply(reply.New(235, "2.7.0", "Authentication successful"))
}

// authLimits returns the AUTH failure limits that apply to the client.
func (c *conn) authLimits() authLimits {
	cfg := &c.srv.cfg
	if c.trusted {
		return authLimits{perIP: cfg.TrustedAuthFailuresPerIP, perUser: cfg.TrustedAuthFailuresPerUser, sharedIP: true}
	}
	return authLimits{perIP: cfg.MaxAuthFailuresPerIP, perUser: cfg.MaxAuthFailuresPerUser}
}

// authKey is the key that user's failures count under.
func (s *Server) authKey(user string) string {
	if k, ok := s.backend.(AuthKeyer); ok {
		return k.AuthKey(user)
	}
	return user
}

// login runs the backend's password check in a slot of the authGate,
// waiting at most AuthQueueTimeout for one.
func (c *conn) login(ctx context.Context, at *attempt, user, pass string) (Sender, error) {
	wait, cancel := context.WithTimeout(ctx, c.srv.cfg.AuthQueueTimeout)
	err := c.srv.gate.acquire(wait, at)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		c.srv.stats.authBusy.Add(1)
		c.srv.warn(c.log, "auth_deferred", "AUTH deferred: no password check slot", "wait", c.srv.cfg.AuthQueueTimeout)
		return nil, errAuthBusy
	}
	defer c.srv.gate.release()
	sender, err := c.srv.backend.Login(ctx, &c.info, user, pass)
	if err != nil && c.authReply(err).Code == 535 {
		// Counted before the slot goes on, so that the next waiter is
		// chosen knowing this failure.
		c.srv.auth.fail(at)
	}
	return sender, err
}

// authReply is the client's reply for a failed Login: the error's own
// reply, or for a local failure RFC 4954's temporary one.
func (c *conn) authReply(err error) reply.Reply {
	return reply.FromErrorOr(err, reply.New(454, "4.7.0", "Temporary authentication failure (ref "+c.info.ID+")"))
}

// authFailed answers a failed AUTH with r once AuthFailureDelay has passed
// since start, the moment its credentials arrived.
func (c *conn) authFailed(ctx context.Context, start time.Time, r reply.Reply) {
	c.srv.stats.authFailures.Add(1)
	c.bad++
	if d := c.srv.cfg.AuthFailureDelay; d > 0 {
		t := time.NewTimer(time.Until(start.Add(d)))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	c.reply(r)
}

// refuseAuth ends the session of a client over an AUTH failure limit.
func (c *conn) refuseAuth(which string) {
	c.srv.stats.authRefused.Add(1)
	c.srv.warn(c.log, "auth_limit_per_"+which, "AUTH refused: too many failures", "per", which)
	c.reply(errAuthLimited)
	c.quit = true
}

// authResponse returns the client's decoded response: the initial response
// when one was given, else the answer to a 334 with prompt. A "*" cancels.
func (c *conn) authResponse(ir string, hasIR bool, prompt string) ([]byte, bool) {
	line := ir
	if !hasIR {
		c.reply(reply.Reply{Code: 334, Lines: []string{prompt}})
		var err error
		line, err = c.readLine(c.srv.cfg.MaxAuthBytes)
		if err != nil {
			if err == errLineTooLong {
				c.replyBad(reply.New(500, "5.5.2", "Line too long"))
			} else {
				c.quit = true
			}
			return nil, false
		}
	}
	if strings.TrimSpace(line) == "*" {
		c.replyBad(errAuthCancelled)
		return nil, false
	}
	b, err := saslmech.DecodeBase64(line)
	if err != nil {
		c.replyBad(errAuthSyntax)
		return nil, false
	}
	return b, true
}
