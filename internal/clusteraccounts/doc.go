// Package clusteraccounts makes the account set the cluster's, not one
// host's (docs/CLUSTER.md: Tokens and the account set). Redis holds the
// source of truth: the accounts.json document with a version counter, in
// the hash xp:accounts. Each proxy keeps its own accounts.json as the
// export of that document, a local backup, and the import at the first
// start of a cluster (Join).
//
// Set.Edit is how the admin API changes accounts in cluster mode: it
// brings the local file to the cluster's newest version, applies the edit
// with config.EditAccounts (lock, validation, atomic rename), and commits
// the result by a compare-and-set on the version; when another proxy
// committed first, it starts over from that version, so concurrent edits
// on different proxies all land and none is lost. Set.Run polls the
// version (one small HGET every PollEvery) and writes a newer document
// over the local file (config.ReplaceAccounts: validated first) before it
// asks the service to reload; so an edit on any proxy takes effect on
// every proxy within PollEvery plus a reload. Polling rather than pub/sub:
// a missed message after a reconnect or a Redis restart cannot leave a
// proxy behind, and the cost is one tiny command per proxy per interval.
// Publish commits a local edit made by hand and applied with SIGHUP.
//
// The document's version is kept beside the token state
// (cluster-accounts-version), so that a Redis that comes back empty is
// re-seeded from the newest version any proxy holds: a proxy that finds
// the document missing, or older than its own, writes its own with a
// compare-and-set that only replaces an older version.
//
// Redis holds the accounts' secrets (client secrets, refresh tokens,
// password hashes) in this value, never in key names: it must be protected
// (ACL, TLS). All methods are safe for concurrent use.
package clusteraccounts
