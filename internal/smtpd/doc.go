// Package smtpd is the client-facing SMTP server: listeners (plain with
// STARTTLS, and implicit TLS), the PROXY protocol header from load
// balancers, connection caps, the command loop, AUTH PLAIN/LOGIN and the
// DATA reader.
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
// Use it in this order: New with a Config (limits, timeouts, trusted and
// load-balancer networks, and a TLS config from LoadKeyPair's
// KeyPair.TLSConfig), then Serve on the plain listener and ServeTLS on the
// implicit TLS one, Shutdown at the end. KeyPair.Reload swaps the
// certificate for later handshakes. Stats has the counters.
//
// What it defends (issue "Hostile input, faults and overload"; the files):
//
//   - server.go: the total connection cap at accept; tls.go: TLS 1.2+,
//     STARTTLS with the plaintext pipelined after it discarded (RFC 3207
//     §4.2); conn.go: the PROXY header, read only from Config.ProxyProtocol
//     networks, whose client address then counts everywhere.
//   - limits.go: connections per client address (IPv6 per /64), failed AUTH
//     per address and per username per minute (then 421 4.7.0 before any
//     password check); conn.go and data.go: RFC 5321 §4.5.3 timeouts (a
//     whole command line, each body read, the whole DATA phase, every
//     write), line and message limits, bad-command count, NUL and 8-bit
//     data in commands (501; UTF-8 only in MAIL/RCPT, RFC 6531).
//   - auth.go: AUTH only under TLS or from Config.Trusted.
//
// Rules come from RFC 5321 (commands, limits, §4.5.3 timeouts), RFC 2920
// (pipelining), RFC 3207 (STARTTLS), RFC 4954 (AUTH), RFC 4616 (PLAIN),
// RFC 6152 (8BITMIME), RFC 6531 (SMTPUTF8), RFC 1870 (SIZE), RFC 2034
// (enhanced codes), RFC 8314 (implicit TLS) and HAProxy's PROXY protocol.
// Bare LF and bare CR in message bodies are normalised to CRLF; only
// <CR><LF>.<CR><LF> ends a message (docs/quirks.md).
//
// Server is safe for concurrent use; each connection is served by one
// goroutine that the Server owns and waits for in Shutdown. A panic in one
// connection is recovered, logged and counted, and ends only that
// connection.
package smtpd
