// Package token obtains and keeps fresh the OAuth2 access tokens of the
// proxy's accounts, one Source per account, and persists what must survive
// a restart through package tokenstore.
//
// Three grants are supported (Config.AuthType; PROVIDERS.md: OAuth2 token
// endpoints and grants): refresh_token (Google, Microsoft v2 and
// login.live.com, any custom endpoint), google_service_account (domain-wide
// delegation: an RS256 JWT assertion and the jwt-bearer grant, RFC 7523) and
// client_credentials (Microsoft app-only, with a client secret or a
// certificate-signed client assertion carrying the x5t thumbprint). All go
// through one HTTP path with one response parser, so every grant gets the
// same error classification, Retry-After handling, secret masking and
// per-request deadline. golang.org/x/oauth2 was considered and not used: its
// jwt and clientcredentials packages offer no certificate assertion, no
// injectable clock, no Retry-After, and no way to keep a rotated refresh
// token from a response it cannot use; what would remain of it is the part
// this package already has.
//
// The credentials the assertions are signed with are parsed here:
// ServiceAccountKey (ParseServiceAccountKey, LoadServiceAccountKey) and
// ClientCertificate (LoadClientCertificate), each a crypto.Signer that
// never prints its private key. Package config names the files and calls
// these; Config.Signer takes either.
//
// Use NewSource for each account, then Token before each upstream AUTH and
// Refresh(stale) when the upstream rejected the token it got (PROVIDERS.md:
// "How authentication failures look"). Status reports the account's state
// (ok, refreshing, retrying, needs_consent, disabled) for the admin API;
// Reset, Disable and Enable are the operator's levers. A Refresher renews
// tokens in the background and warms them at start-up.
//
// # Freshness
//
// A token is handed out while more than RefreshBuffer (default 600 s) of
// its life is left; after that Token makes a request and waits for it. Well
// before that, the Refresher renews the tokens of accounts used within the
// last hour: at the earlier of expiry − RefreshBuffer and 80% of the
// lifetime, minus a random tenth of the lifetime, so that tokens fetched
// together do not expire together, and with at most a fixed number of
// requests at once. Idle accounts cost nothing; their next client fetches.
// Concurrent needs of one account share one request (single flight).
//
// # Failures
//
// Failures are *Error values. A transient failure (5xx, 429, timeout,
// connection error, a bad response) puts the account in retrying: the
// Refresher retries after an exponential, jittered backoff (Config.Retry),
// or the endpoint's Retry-After when that is later. Until a Retry-After has
// passed, or while the account's circuit breaker is open (Config.Breaker:
// after Threshold consecutive failures, for Recovery), callers get the last
// error at once without a request. Otherwise a client's need makes one
// request and gets its outcome: it is never made to wait for retries, and
// never longer than Config.Timeout.
//
// A Final error (errors.Is(err, ErrFinal): invalid_grant and the other
// verdicts listed in finalCodes and aadstsFinal) puts the account in
// needs_consent: from then on every caller gets that error at once and the
// endpoint is not asked again until an operator calls Reset or the
// credential in accounts.json changes (a new Source with a different
// fingerprint). A valid token cached before the verdict is still handed
// out until it expires. The verdict persists across restarts.
//
// # Rotation and persistence
//
// When a response carries a new refresh token (Microsoft rotates on every
// refresh), it is saved with Store.PutSync, which returns once it is on
// disk, before the new access token is handed out; until it is saved, the
// new refresh token is not sent anywhere (a failed save is retried before
// the next request). The one window no client can close is between the
// provider issuing the new token and the fsync: a crash there leaves the
// previous token on disk. Access tokens, the needs_consent verdict and the
// last use go to Store.Put and are written in batches. NewSource adopts the
// persisted state when its fingerprints match the configuration: a rotated
// refresh token as long as the client id and configured refresh token are
// unchanged, the access token and verdict only if no grant setting changed.
//
// # Cluster mode
//
// With Config.Shared (package clustertoken: Redis) the proxies of a
// cluster share each account's token state (shared.go). A request first
// reads the committed record: a valid access token other than its own, a
// newer rotated refresh token or a needs_consent verdict there is taken
// without a request. Otherwise the Source takes the cluster's lock for the
// account, reads the record again, makes the request and commits the
// outcome with a compare-and-set on the record's version; a Source that
// lost the race takes the committed result. A rotated refresh token is
// committed to Redis with its version, then saved to the Store (PutSync),
// before the new access token is handed out. The Store keeps the newest
// refresh token seen with its version (tokenstore.Entry.RefreshVersion),
// and a record that is missing or older is re-seeded from it (Seed;
// clustertoken.Reseeder does it for every account when Redis comes back
// empty). When Redis does not answer, the Source renews on its own as
// outside a cluster and re-seeds Redis later.
//
// Concurrency: a Source is safe for concurrent use. Each request runs in a
// short-lived goroutine that ends within Config.Timeout (plus the time a
// rotation takes to save), so a caller whose context ends can stop waiting
// while the request carries on for the others, and so a response that
// rotates the refresh token is never thrown away. A Source has no
// long-lived goroutine and nothing to close; a Refresher runs until its
// context ends.
//
// Access tokens, refresh tokens, client secrets and assertions are held as
// secret.String and never appear in errors or log lines; text taken from the
// token endpoint is sanitized and has those secrets masked out. Keys are
// crypto.Signer values the caller owns (package config parses each key
// once, however many accounts share it).
package token
