// Package probe checks one account against its real provider from the
// command line, outside a running proxy: a token request (the token
// command) or one test message (the send command).
//
// It does not rebuild the proxy's pieces: Open loads the files with the
// service's own constructor, so the token source (HTTP client, timeouts,
// and whatever else service.New gives it) and the upstream dialer (source address, TLS roots with
// upstream_ca_file, STARTTLS, XOAUTH2/OAUTHBEARER, refresh-and-retry once)
// are the very ones the proxy would use for that account, and a probe that
// works means the proxy's path works. No listener is opened. What a probe
// leaves out is the client-facing side (smtpd, AUTH from PowerMTA, the
// relay's reply mapping): send prints the provider's own replies.
//
// A Probe is meant for one command: Open, Token or Send, Close.
package probe
