package upstream

import (
	"errors"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/saslmech"
)

var (
	// ErrBroken is returned by a call on a session that an earlier failure
	// left in an unknown state; the session must be closed.
	ErrBroken = errors.New("session is broken")
	// ErrMalformedReply is returned when the server sends something that is
	// not an SMTP reply: a bad code, mixed codes in one reply, a line over
	// 4 KiB or a reply of more than 100 lines.
	ErrMalformedReply = errors.New("malformed reply")
	// ErrNoStartTLS is returned by Dial in starttls mode when the server
	// does not offer STARTTLS; the proxy never falls back to cleartext.
	ErrNoStartTLS = errors.New("server does not offer STARTTLS")
	// ErrCleartext is returned by Dial for TLS mode "none" towards a host
	// that is not loopback: tokens must not cross a network in clear text.
	ErrCleartext = errors.New("tls mode none is allowed only towards loopback hosts")
	// ErrUsage is returned for a call the client refuses before sending
	// anything: DATA not last in a batch, CR or LF in a command, Body without
	// an open DATA, an unknown mechanism. The session stays usable unless
	// the error says otherwise (Broken tells).
	ErrUsage = errors.New("invalid use")
)

// Error is a failed step of an upstream session.
type Error struct {
	// Stage names the step: "connect", "tls", "greeting", "ehlo",
	// "starttls", "auth", "mail", "rcpt", "data", "body", "rset", "quit".
	Stage string
	// Reply is the unexpected reply; nil when none was received (network
	// or protocol failure, cancelled context, local refusal).
	Reply *reply.Reply
	// Err is the underlying error when Reply is nil.
	Err error

	// ambiguous marks a body whose final dot was written but whose reply
	// never came: the server may or may not have taken the message.
	ambiguous bool
}

// Error renders "upstream <stage>: <reply or error>".
func (e *Error) Error() string {
	s := "upstream " + e.Stage + ": "
	switch {
	case e.Reply != nil:
		return s + e.Reply.String()
	case e.Err != nil:
		s += e.Err.Error()
		if e.ambiguous {
			s += " (after the final dot: delivery unknown)"
		}
		return s
	default:
		return s + "failed"
	}
}

// Unwrap returns the underlying error, or the reply when there is one, so
// errors.As(err, &reply.Reply{}) finds the server's reply.
func (e *Error) Unwrap() error {
	if e.Err != nil {
		return e.Err
	}
	if e.Reply != nil {
		return *e.Reply
	}
	return nil
}

// Ambiguous reports whether err says that a message's final dot was sent
// but no reply came back (connection lost, timeout, cancelled context). The
// server may have accepted the message, so sending it again can deliver it
// twice (RFC 5321 §4.5.3.2.6 discusses the same race).
// Any error in err's chain with an Ambiguous() bool method that returns
// true counts, so that a fake session can report the same.
func Ambiguous(err error) bool {
	var e interface{ Ambiguous() bool }
	return errors.As(err, &e) && e.Ambiguous()
}

// Ambiguous reports whether the final dot was sent and no reply came back.
func (e *Error) Ambiguous() bool { return e.ambiguous }

// AuthError is a refused authentication. The session stays usable: the
// caller may refresh the token and call Auth again.
type AuthError struct {
	// Reply is the final failure reply, e.g. 535 5.7.8 (Gmail) or
	// 535 5.7.3 (Microsoft).
	Reply reply.Reply
	// Challenge is Gmail's decoded base64-JSON failure challenge, when the
	// server sent one before the final reply; nil otherwise.
	Challenge *saslmech.Challenge
}

// Error renders the server's reply and the challenge status, never the
// token.
func (e *AuthError) Error() string {
	s := "upstream auth: " + e.Reply.String()
	if e.Challenge != nil {
		s += " (challenge status " + e.Challenge.Status + ")"
	}
	return s
}

// Unwrap returns the reply, so errors.As finds it.
func (e *AuthError) Unwrap() error { return e.Reply }
