// Package redistest starts private Redis servers for tests: a standalone
// server (Start), a 3-master Redis Cluster (StartCluster) and a master with
// a replica watched by a Sentinel (StartSentinel), each on free loopback
// ports with its own temporary directory, stopped and waited for in
// t.Cleanup. Tests never share a server, so parallel packages and parallel
// CI runs do not collide.
//
// It runs the real redis-server (Debian's redis-server and redis-tools
// packages) rather than an in-process fake: the Lua scripts, TIME, key
// expiry, cluster slots and Sentinel failover are what the cluster code
// relies on, and a fake would only test itself. Without redis-server a
// test is skipped with the package to install, except when CI=true, where
// it fails: CI must run these tests.
package redistest
