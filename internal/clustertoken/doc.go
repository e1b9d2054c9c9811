// Package clustertoken keeps each account's OAuth2 token state in Redis
// for a cluster of proxies (docs/CLUSTER.md: Tokens and the account set),
// so that the cluster holds one access token per account, renews it once
// per renewal time whatever the number of proxies, and never loses a
// rotated refresh token (PROVIDERS.md: Microsoft rotates on every
// refresh, and a lost rotation fails silently weeks later).
//
// Shared implements token.Shared: package token keeps the token logic
// (single flight, backoff, verdicts) and asks Shared for the committed
// record, the lock and the commit. The record of an account is the hash
// xp:{account_id}:token (Version, fingerprints, refresh token and the
// version that committed it, access token, verdict); the lock is
// xp:{account_id}:token:lock, taken with SET NX PX and carrying a fencing
// number from xp:{account_id}:token:fence. Correctness does not rest on
// the lock: every result is committed by a compare-and-set on Version in
// one Lua script, and a proxy whose result lost takes the committed one.
// Redis holds refresh tokens in these values (never in key names): it
// must be protected (ACL, TLS; docs/CLUSTER.md).
//
// Sync re-seeds an emptied Redis (restarted without persistence, or
// flushed) from the newest refresh token any proxy holds in its state
// file: it notices the loss by a marker key and asks every token source
// to Seed, a compare-and-set that only writes a missing or older version.
// It also writes a rotation a proxy made on its own while Redis did not
// answer, as soon as Redis answers, and lifts a needs_consent verdict
// that another proxy's reset and successful request cleared.
//
// All types are safe for concurrent use; every call is bounded by the
// cluster client's timeout.
package clustertoken
