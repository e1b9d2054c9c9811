// Package adminclient calls a running proxy's admin API (package admin;
// COMPAT.md "Admin HTTP API"): list, add, batch-add and delete accounts,
// with the bearer token. It is what the accounts command uses with
// --admin-url. A Client is safe for concurrent use.
package adminclient
