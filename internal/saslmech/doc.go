// Package saslmech holds the wire encodings of the SASL mechanisms the proxy
// speaks: PLAIN and LOGIN as a server (RFC 4616, draft-murchison-sasl-login),
// XOAUTH2 and OAUTHBEARER as a client (Google's XOAUTH2 description, RFC
// 7628), and Gmail's base64-JSON failure challenge. Everything here is pure:
// no I/O, no state, safe for concurrent use, and every decoder is fuzzed.
package saslmech
