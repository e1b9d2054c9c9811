// Package interop proves xoauth2-proxy against real mail software we did
// not write: Postfix as the upstream's SMTP server with Dovecot checking
// every XOAUTH2/OAUTHBEARER token by RFC 7662 introspection, Dovecot's own
// submission service as a second upstream, an OAuth2 issuer built on
// github.com/ory/fosite (./issuer, a separate module), and swaks, Python's
// smtplib, smtp-source and a Postfix relaying through the proxy as clients,
// in plain text from loopback, with STARTTLS and with implicit TLS against
// the proxy's listener certificate from the suite's private CA.
//
// The tests sit behind the "interop" build tag and expect the peers that
// run.sh starts; the INTEROP_* environment variables carry their addresses
// and paths. Each test starts the proxy binary it needs, with its own
// config.json and seed-format accounts.json, and stops it by PID. Run the
// whole suite with test/interop/run.sh; docs/TESTING.md says what each
// scenario proves.
package interop
