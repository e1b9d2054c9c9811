// Package cluster lets several proxies serve the same accounts by sharing
// their state through Redis (docs/CLUSTER.md): the Client (Open), the key
// scheme (Key: every key of one account carries the hash tag
// {account_id}, so each per-account script runs on one Redis Cluster
// shard), the start-up checks of the server (CheckServer), the heartbeat
// that counts the live proxies, the cluster-wide session cap (Sessions,
// wrapping the local account.Sessions pool with one slot lease in Redis
// per open session) and the cluster-wide budgets (Budget, a quota.Budget
// whose windows, reservations and cool-downs live in Redis).
//
// The client library is github.com/redis/rueidis: it pipelines concurrent
// calls onto shared connections by itself (auto-pipelining), so a
// thousand transactions admitting at once cost a few writes, not a
// thousand round trips on a connection pool; it speaks Sentinel and Redis
// Cluster behind the same Client interface, and its Lua helper sends
// EVALSHA and falls back to EVAL when a restarted Redis lost the script.
//
// Everything shared is computed by Lua scripts from Redis's own clock
// (TIME), never from the hosts' clocks. When Redis does not answer within
// the configured timeout the proxy goes on with its local share (the cap
// or budget divided by the proxies last seen alive) and reconciles when
// Redis answers again; nothing waits on Redis longer than the timeout.
// All types are safe for concurrent use; Client.Close stops the
// goroutines the package started.
package cluster
