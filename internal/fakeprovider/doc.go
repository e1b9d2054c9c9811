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
// and AUTH XOAUTH2 OAUTHBEARER; MAIL before AUTH gets 530 5.7.0; at most
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
//
// The transaction-wide ones (faildata, faildatacmd, drop-at-data,
// drop-in-body, drop-after-dot, slow) also work in the sender's local part.
// When several apply, the first accepted address wins for each kind.
// Enhanced codes with a provider's real text: 5.1.1, 4.2.2, 5.7.1, 4.3.0,
// 5.4.5 (Gmail daily limit), 5.2.0 (Microsoft quota), 5.2.252 (SendAsDenied),
// 4.3.2 (Microsoft concurrency), 4.7.0.
//
// # Token endpoint
//
// POST /token, form-encoded, grant_type=refresh_token with client_id,
// client_secret (or HTTP Basic) and refresh_token. Errors use the OAuth2
// JSON shape: 400 invalid_grant for an unknown, revoked or rotated-away
// refresh token; 401 invalid_client for a wrong client id or secret; 503
// temporarily_unavailable while SetTokenEndpointDown(true). Revoke kills
// only the refresh token; access tokens already issued stay valid until
// they expire or ExpireAccessTokens is called.
package fakeprovider
