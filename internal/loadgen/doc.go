// Package loadgen is the client side used by the demo, the benchmark and
// end-to-end tests. It owns a small SMTP client and a runner; it knows
// nothing about the proxy, so the same code drives the proxy (AUTH PLAIN)
// and a provider directly (STARTTLS, AUTH XOAUTH2 with a token from
// FetchToken).
//
// Client is one connection: Dial (greeting, EHLO), optionally StartTLS,
// Auth or AuthXOAUTH2, then Send per message (MAIL, RCPTs and DATA in one
// write when the server offers PIPELINING, unless DisablePipelining), and
// Quit. Every command is bounded by the Dial timeout; a Client is not safe
// for concurrent use.
//
// Fleet is many connections: Open connects and logs them all in, Run
// drives them until a Load's duration passes or its message cap is
// reached (or the context ends, which closes the sockets), reconnecting a
// connection that fails, and returns a Summary with counts and per-message
// latencies; Close quits them. Run must not be called concurrently.
package loadgen
