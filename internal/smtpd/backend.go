package smtpd

import (
	"context"
	"io"
	"net/netip"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
)

// ConnInfo describes a client connection to the backend.
type ConnInfo struct {
	ID     string         // short unique id, logged as conn_id
	Remote netip.AddrPort // client address (from the PROXY header behind a load balancer)
	Proxy  netip.AddrPort // the load balancer's address; invalid without a PROXY header
	TLS    bool           // the connection is encrypted
	Helo   string         // the EHLO/HELO name the client gave
}

// Backend authenticates clients.
type Backend interface {
	// Login checks AUTH credentials. An error that is a reply.Reply is sent
	// as is (535 5.7.8 for bad credentials, 454 4.7.0 for a temporary
	// failure); any other error becomes a generic 454.
	Login(ctx context.Context, c *ConnInfo, user, password string) (Sender, error)
}

// AuthKeyer is implemented by a Backend whose users have several names
// (an account's email and its account_id). AuthKey returns the key that
// failed AUTHs for user count under: one per account, so that a second
// name is not a second failure budget, and the name itself for a name
// that is no account, so unknown names are counted too. Without it the
// lower-cased username is the key.
type AuthKeyer interface {
	AuthKey(user string) string
}

// Sender is an authenticated client identity.
type Sender interface {
	// Begin starts a mail transaction when a MAIL command arrives. An error
	// refuses that MAIL with its reply (e.g. 451 4.7.0 over a cap).
	Begin(ctx context.Context, c *ConnInfo) (Txn, error)
	// Name identifies the sender in logs.
	Name() string
}

// Verb names an envelope command handed to a Txn.
type Verb uint8

const (
	VerbMail Verb = iota + 1
	VerbRcpt
	VerbData
)

// Command is one parsed envelope command.
type Command struct {
	Verb   Verb
	Addr   string   // MAIL/RCPT path without the angle brackets; "" for the null sender
	Params []string // ESMTP parameters as KEY or KEY=VALUE, keys upper case
}

// Txn relays one mail transaction.
type Txn interface {
	// Envelope relays a batch of commands, in order, and returns exactly one
	// reply per command. The first batch starts with the MAIL command; DATA
	// can only be last. A 354 reply to DATA means the body follows.
	Envelope(ctx context.Context, cmds []Command) []reply.Reply
	// Data relays the message body read from r (CRLF lines, dot-stuffing
	// undone) and returns the final reply. If reading r fails, the
	// transaction must be abandoned upstream and the returned reply is the
	// one made from r's error.
	Data(ctx context.Context, r io.Reader) reply.Reply
	// Close ends the transaction (after the final reply, RSET, a new EHLO,
	// or the connection's end). It is called exactly once.
	Close()
}
