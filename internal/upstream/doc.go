// Package upstream is the proxy's SMTP client towards the providers (Gmail,
// Microsoft 365, any submission server): a small client built for one job,
// relaying many messages over one long-lived, already authenticated session.
//
// Use it in this order: Dial (connect, greeting, EHLO, STARTTLS or implicit
// TLS, EHLO again), Auth once (SASL XOAUTH2 or OAUTHBEARER with an access
// token), then per message Batch with MAIL, RCPT... and DATA (sent in one
// write when the server offers PIPELINING, RFC 2920), Body after a 354, and
// Reset between messages when needed; Quit or Close at the end. Deciding
// what a reply means (retry, refresh the token, cool an account down) is
// left to the caller: Batch and Body hand back every reply intact, and
// errors are *Error (a step failed, with the reply when there was one) or
// *AuthError (the server refused the credentials).
//
// A Client serves one transaction at a time and is not safe for concurrent
// use, except Broken and Close, which may be called from any goroutine. Once
// Broken reports true (an I/O or protocol error, a cancelled context, an
// aborted body) the session must be closed, never reused.
//
// Every call takes a context: its deadline bounds the call together with
// Config.CommandTimeout (Config.DataTimeout for the reply after the final
// dot, RFC 5321 §4.5.3.2.6), and cancelling it aborts the connection.
//
// Rules come from RFC 5321 (SMTP), RFC 2920 (PIPELINING), RFC 3207
// (STARTTLS), RFC 4954 (AUTH), RFC 7628 (OAUTHBEARER), Google's XOAUTH2
// description and the provider notes in PROVIDERS.md.
package upstream
