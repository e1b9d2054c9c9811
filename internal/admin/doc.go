// Package admin is the operator's HTTP API: the old tool's routes with
// their request and response shapes (COMPAT.md), the new per-account
// status and actions, reload, status, health and /metrics.
//
// Every route except GET /health, /healthz, /readyz and /metrics needs
// "Authorization: Bearer <token>", compared in constant time; with no
// token configured those routes are refused with a message saying how to
// set one. Failures are logged, rate-limited, and an address that keeps
// failing is answered 429 for a growing time (authfail.go). Request bodies
// are limited. Responses never contain refresh tokens, client secrets,
// access tokens or password hashes: account views are built field by field
// from what may be shown. Nor can a write send them anywhere they did not
// already go, unless it gives them itself (redirect.go).
//
// Writes go through config.EditAccounts (validated by the start-up loader,
// atomic, locked), or the Backend's own EditAccounts when it is an
// AccountsEditor (cluster mode: the cluster's account set), then
// Backend.Reload applies them live. The package
// declares the Backend it needs; the service implements it.
package admin
