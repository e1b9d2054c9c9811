// Package fakeprovider is an in-process stand-in for Gmail and Microsoft 365,
// used by tests, the demo command and the benchmark. It owns two loopback
// servers: an OAuth2 token endpoint (HTTP, refresh_token grant) and an SMTP
// submission server that really verifies the XOAUTH2 and OAUTHBEARER access
// tokens the endpoint issued. It knows nothing about the proxy; the proxy
// is pointed at TokenURL and SMTPAddr like at a real provider.
//
// Use it in this order: Start with Options, AddAccount for each mailbox,
// then hand the account's refresh token and TokenURL to the code under test.
// Revoke, ExpireAccessTokens and SetTokenEndpointDown change the provider's
// behaviour while it runs. Messages, Stats and WaitMessages show what was
// delivered. Close stops both servers, closes every open connection and
// waits for all goroutines. All methods are safe for concurrent use.
//
// # Behaviour
//
// The SMTP dialogue follows Gmail (PROVIDERS.md): greeting
// "220 fake.provider ESMTP"; EHLO advertises SIZE, 8BITMIME,
// ENHANCEDSTATUSCODES, PIPELINING, SMTPUTF8, STARTTLS (with a TLS config)
// and AUTH XOAUTH2 OAUTHBEARER (Options.NoPipelining, No8BITMIME and
// NoSMTPUTF8 leave those out, and MAIL FROM with BODY= or SMTPUTF8 that
// was not offered gets 555 5.5.4); MAIL before AUTH gets 530 5.7.0; at most
// 100 recipients per message; a bad or expired token gets the base64 JSON
// 334 challenge and, after the client's next line, a two-line 535 5.7.8.
// An AUTH command line longer than Options.MaxAuthLineBytes (CRLF not
// counted) gets "555 5.5.2 Syntax error, command line too long"; the
// response to a bare "AUTH XOAUTH2" / "334 " may be up to 16 KiB. Options
// switch on the Microsoft traits: rotating refresh tokens, AUTH only after
// STARTTLS, and the 432 4.3.2 per-mailbox session cap.
//
// Message.Data is the content exactly as received after dot-unstuffing,
// with CRLF line ends, without the final CRLF "." CRLF. Only CRLF ends a
// line: a bare LF is an ordinary byte, so "\n.\n" is not the end of data.
//
// # Failure injection
//
// Failures are chosen by the local part of an address (case-insensitive),
// so a test case reads as data. NNN is a 4xx or 5xx reply code and may be
// followed by "-X.Y.Z" to pick the enhanced code; anything after that (for
// example "+tag") is ignored. Without an enhanced code the reply uses the
// one listed, or N.0.0. A 421 reply is always followed by closing the
// connection.
//
//	recipient reject-NNN@        that RCPT gets NNN; 550 is "5.1.1 The email
//	                             account that you tried to reach does not
//	                             exist.", 452 is "4.2.2 mailbox full"
//	sender    failmail-NNN@      MAIL FROM gets NNN
//	recipient faildata-NNN@      the reply after the final dot is NNN (550
//	                             5.7.1, 451 4.3.0, 554 5.2.0 ...) and the
//	                             message is not stored
//	recipient faildatacmd-NNN@   the DATA command gets NNN; the transaction
//	                             is reset
//	recipient drop-at-rcpt@      the connection is closed, without a reply,
//	                             when this RCPT arrives
//	recipient drop-at-data@      closed when the DATA command arrives
//	recipient drop-in-body@      closed after about 1 KiB of the body
//	recipient drop-after-dot@    the message is stored (and counted) but the
//	                             connection is closed before the 250: the
//	                             ambiguous case a relay must not retry
//	recipient slow-MS@           the reply after the final dot is delayed by
//	                             MS milliseconds
//	sender    drop-at-mail@      closed, without a reply, at MAIL FROM
//	sender    stall-at-mail@     no reply to MAIL FROM, ever: the server
//	                             reads and discards until the client closes
//	recipient stall-at-rcpt@     no reply to this RCPT, ever
//	recipient stall-at-data@     no reply to the DATA command
//	recipient stall-in-body@     stops reading after about 1 KiB of the body
//	                             (with the smallest receive buffer) and
//	                             hangs up after a minute or at Close
//	recipient reset-in-body@     TCP RST after about 1 KiB of the body
//	recipient stall-after-dot@   no reply after the final dot, and the
//	                             message is not stored: the other ambiguous
//	                             case
//	any       trickle@           this reply and every later one go out one
//	                             byte per Options.TrickleInterval (1s)
//
// The transaction-wide ones (faildata, faildatacmd, drop-at-data,
// drop-in-body, drop-after-dot, slow, and the stall-at-data, stall-in-body,
// reset-in-body and stall-after-dot ones) also work in the sender's local
// part. When several apply, the first accepted address wins for each kind.
//
// # Session faults
//
// Failures before any address is known come from Options.SessionFault,
// which picks a Fault for each new connection: a Stage (the greeting, the
// TLS handshake, the reply to EHLO, STARTTLS or AUTH, or the first command
// after the session delivered a message, as an idle timeout meets a pooled
// session) and an Action (close, TCP RST, stall, another reply such as 421
// or 454, trickle one byte per TrickleInterval, or bytes that are neither
// SMTP nor TLS). A fault strikes once per session, or every time with
// Fault.Repeat; Stats.SessionFaults counts the strikes. A test gives each
// account its own provider to fail one account alone.
// Enhanced codes with a provider's real text: 5.1.1, 4.2.2, 5.7.1, 4.3.0,
// 5.4.5 (Gmail daily limit), 5.2.0 (Microsoft quota), 5.2.252 (SendAsDenied),
// 4.3.2 (Microsoft concurrency), 4.7.0.
//
// # Token endpoint
//
// POST /token, form-encoded, three grants:
//
//   - refresh_token, with client_id, client_secret (or HTTP Basic) and
//     refresh_token. With Options.RotateRefreshTokens each success returns a
//     new refresh token and retires the old one (Microsoft); with
//     SetRevokeOnReuse a retired token presented again revokes the grant.
//   - urn:ietf:params:oauth:grant-type:jwt-bearer (Google domain-wide
//     delegation): the RS256 assertion must verify with a key registered by
//     AddServiceAccount, have aud = TokenURL, live at most an hour, carry the
//     https://mail.google.com/ scope and name as sub a mailbox added with
//     AddAccount.
//   - client_credentials (Microsoft app-only) for an app registered with
//     AddApp, with scope https://outlook.office365.com/.default and either
//     the app's client secret or a client assertion whose x5t is the
//     certificate's SHA-1 thumbprint, signed by its key, with aud =
//     TokenURL, iss = sub = client id and an unused jti. The access token is
//     good for every mailbox in App.Mailboxes.
//
// Errors use the OAuth2 JSON shape (with Microsoft's AADSTS codes for the
// app-only grant): 400 invalid_grant for an unknown, revoked or rotated-away
// refresh token or a bad assertion; 401 invalid_client for a wrong client id
// or secret; 503 temporarily_unavailable while SetTokenEndpointDown(true).
// SetTokenFault injects 429 (with Retry-After), 5xx, another status with
// an error code and description of the test's choosing, or a hang, for one
// mailbox or client id or for every request; TokenRequestsFor counts the
// requests made for one. Revoke kills only the refresh token; access tokens
// already issued stay valid until they expire or ExpireAccessTokens is
// called.
package fakeprovider
