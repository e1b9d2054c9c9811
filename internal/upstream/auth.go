package upstream

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/saslmech"
)

// maxAuthLine is RFC 4954 §4's limit for an AUTH command with an initial
// response: 512 octets with CRLF, the RFC 5321 §4.5.3.1.4 command line.
// Gmail rejects longer ones (PROVIDERS.md: long initial responses).
const maxAuthLine = 512

// Auth authenticates with an OAuth2 access token: SASL XOAUTH2 (also when
// mech is empty) or OAUTHBEARER (RFC 7628, with Addr's host and port). user
// is the mailbox the token belongs to. The initial response goes on the
// AUTH line when the line fits in 512 octets, else after a 334 prompt.
//
// A 235 reply returns nil. A refusal returns an *AuthError and leaves the
// session usable, so the caller may refresh the token and call Auth again;
// AuthError.TokenRejected says whether that can help. I/O and protocol
// failures return an *Error and break the session. The token never appears
// in an error.
func (c *Client) Auth(ctx context.Context, mech Mechanism, user, token string) error {
	name := strings.ToUpper(string(mech)) // Office 365 rejects lower case (PROVIDERS.md)
	var raw []byte
	switch Mechanism(name) {
	case "", MechXOAUTH2:
		name = string(MechXOAUTH2)
		raw = saslmech.XOAUTH2(user, token)
	case MechOAUTHBEARER:
		raw = saslmech.OAuthBearer(user, c.host, c.port, token)
	default:
		return &Error{Stage: "auth", Err: fmt.Errorf("%w: mechanism %q", ErrUsage, mech)}
	}
	// ^A separates the fields of both mechanisms; one in the user or the
	// token would forge a field.
	if strings.ContainsAny(user, "\x01\r\n") || strings.ContainsAny(token, "\x01\r\n") {
		clear(raw)
		return &Error{Stage: "auth", Err: fmt.Errorf("%w: control character in user or token", ErrUsage)}
	}
	if c.dataOpen {
		clear(raw)
		c.broken.Store(true)
		return &Error{Stage: "auth", Err: fmt.Errorf("%w: AUTH while DATA is open", ErrUsage)}
	}

	// One buffer holds "AUTH NAME " and the base64 response, so the line
	// can go out whole or be split at the space.
	prefix := len("AUTH ") + len(name)
	line := make([]byte, 0, prefix+1+base64.StdEncoding.EncodedLen(len(raw))+2)
	line = append(line, "AUTH "...)
	line = append(line, name...)
	line = append(line, ' ')
	line = base64.StdEncoding.AppendEncode(line, raw)
	line = append(line, '\r', '\n')
	clear(raw)
	defer clear(line) // the token should not linger in memory longer than needed

	k, err := c.begin(ctx, "auth")
	if err != nil {
		return err
	}
	defer k.end()

	var r reply.Reply
	if len(line) <= maxAuthLine {
		r, err = k.send(line)
	} else {
		r, err = k.cmd("AUTH", name)
		if err == nil && r.Code != 334 {
			return c.authFailed(r, nil)
		}
		if err == nil {
			r, err = k.send(line[prefix+1:])
		}
	}
	if err != nil {
		return k.fail("auth", err)
	}
	switch r.Code {
	case 235:
		return nil
	case 334:
		return c.authChallenge(&k, name, r)
	}
	return c.authFailed(r, nil)
}

// authChallenge answers a 334 that came after our response. XOAUTH2 and
// OAUTHBEARER challenge only to report a failure, as base64 JSON (Gmail):
// the client then sends an empty line (XOAUTH2, Google's description) or
// a single ^A (OAUTHBEARER, RFC 7628 §3.2.3), and reads the final reply.
// A challenge that is not such JSON is cancelled with "*" (RFC 4954 §4).
func (c *Client) authChallenge(k *call, name string, r reply.Reply) error {
	var text string
	if len(r.Lines) > 0 {
		text = r.Lines[0]
	}
	var ch *saslmech.Challenge
	answer := "*"
	if dc, err := saslmech.DecodeChallenge(text); err == nil {
		ch = &dc
		answer = ""
		if name == string(MechOAUTHBEARER) {
			answer = "AQ==" // base64 of ^A
		}
	}
	final, err := k.cmd(answer, "")
	if err != nil {
		return k.fail("auth", err)
	}
	if final.Code == 235 {
		return nil
	}
	return c.authFailed(final, ch)
}

// authFailed builds the AuthError. A server still in the middle of the
// exchange (3xx) leaves the session unusable.
func (c *Client) authFailed(r reply.Reply, ch *saslmech.Challenge) error {
	if r.Intermediate() {
		c.broken.Store(true)
	}
	return &AuthError{Reply: r, Challenge: ch}
}

// send writes one prepared line (with CRLF) and reads the reply.
func (k *call) send(line []byte) (reply.Reply, error) {
	if err := k.arm(k.c.commandTimeout); err != nil {
		return reply.Reply{}, err
	}
	k.c.bw.Write(line) // errors are sticky and come back from Flush
	return k.await()
}
