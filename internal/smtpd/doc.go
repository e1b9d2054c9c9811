// Package smtpd is the client-facing SMTP server: listener, connection cap,
// command loop, AUTH PLAIN/LOGIN and the DATA reader.
//
// It is an engine of our own rather than github.com/emersion/go-smtp because
// the proxy must see a pipelined batch (MAIL, RCPTs and DATA that a client
// wrote at once, RFC 2920) as a batch, so that the relay can forward it
// upstream in one write and answer each command with the upstream's own
// reply: two upstream round trips per message instead of four. go-smtp
// answers one command at a time and hides what is buffered.
//
// smtpd knows nothing about accounts, tokens or providers. It talks to the
// relay through the small interfaces in backend.go (Backend, Sender, Txn),
// and every reply the client sees is a reply.Reply: one made here for local
// decisions (syntax, sequence, limits) or one the Txn returned.
//
// Rules come from RFC 5321 (commands, limits, §4.5.3 timeouts), RFC 2920
// (pipelining), RFC 4954 (AUTH), RFC 4616 (PLAIN), RFC 6152 (8BITMIME),
// RFC 6531 (SMTPUTF8), RFC 1870 (SIZE) and RFC 2034 (enhanced codes).
// Bare LF and bare CR in message bodies are normalised to CRLF; only
// <CR><LF>.<CR><LF> ends a message (docs/quirks.md).
//
// Server is safe for concurrent use; each connection is served by one
// goroutine that the Server owns and waits for in Shutdown.
package smtpd
