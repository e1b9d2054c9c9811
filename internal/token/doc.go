// Package token obtains OAuth2 access tokens for one account with the
// refresh_token grant (RFC 6749 §6) and keeps the current one in memory.
//
// Build a Source with NewSource from a Config, then call Token before each
// upstream AUTH and Refresh(stale) when the upstream rejected the token it
// got (PROVIDERS.md: "How authentication failures look"). Cached peeks at
// the current token without any I/O. Persisting a rotated refresh token is
// left to the caller's Config.OnRotate (PROVIDERS.md: Microsoft rotates the
// refresh token on every refresh); building the SASL XOAUTH2 string is left
// to package saslmech, and service-account or client-credentials grants to
// other packages.
//
// Concurrency: a Source is safe for concurrent use. At most one token request
// per Source is in flight; concurrent callers share it. Each request runs in a
// short-lived goroutine that ends within Config.Timeout (plus the time
// OnRotate takes), so a caller whose context ends can stop waiting while the
// request carries on for the others, and so a response that rotates the
// refresh token is never thrown away. There are no long-lived goroutines and
// nothing to close.
//
// Failures are *Error values. An Error with Final set (invalid_grant,
// unauthorized_client or invalid_client with HTTP 400/401) means the
// credential is dead and the account needs new consent; errors.Is(err,
// ErrFinal) reports it. After a Final failure the Source answers with that
// same error, without a request, for one minute, so a dead credential is not
// hammered; after that it tries again.
//
// Access tokens, refresh tokens and client secrets are held as
// secret.String and never appear in errors or log lines; text taken from the
// token endpoint is sanitized and has those secrets masked out.
package token
