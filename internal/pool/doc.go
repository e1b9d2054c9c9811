// Package pool keeps a few authenticated upstream sessions per account and
// lends each to one transaction at a time.
//
// Lease waits, up to the context's deadline, while the account is at its
// cap; it reuses the most recently used idle session or dials a new one.
// Release returns a session; one that is broken, has carried its
// MaxMessages or is older than MaxAge is closed instead (with QUIT when it
// is still healthy). Idle sessions are never probed: a dead one is found
// on use, and the caller decides whether the transaction may move to a
// fresh session. Sweep closes sessions idle longer than IdleTimeout; the
// owner of many pools calls it periodically from one goroutine.
//
// The cap counts every open session (leased or idle), so an account never
// has more than Max sessions open upstream (Microsoft allows 3 per mailbox,
// PROVIDERS.md). All methods are safe for concurrent use.
package pool
