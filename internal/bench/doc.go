// Package bench is the "xoauth2-proxy bench" command: it measures the proxy
// against the same load sent straight to the provider, in one run, and
// reports both side by side with their ratio (README "Benchmark"; issue
// "Upstream sessions, pipelining and admission").
//
// A run builds, in a temporary directory that it removes: a fake provider
// (fakeprovider, verifying XOAUTH2, discarding bodies), a LatencyRelay in
// front of it that injects a one-way delay and counts upstream round
// trips, generated config.json and accounts.json pointing the accounts'
// oauth_endpoint at the relay, and the proxy. The proxy runs as a child
// process (Subprocess: the same executable with "serve") so that its CPU
// time and peak RSS, read from /proc, are its own; InProcess runs it
// inside this process instead, for tests, and then reports neither. The
// load client (loadgen.Fleet) drives the proxy with AUTH PLAIN, then,
// against a fresh fake provider, drives the provider directly with AUTH
// XOAUTH2. Each mode stops after Options.Duration or Options.Messages.
//
// Use Run with Options, then Report.WriteText or Report.WriteJSON. Run is
// safe to call from one goroutine at a time per process (it uses CPU and
// ports, not shared state). LatencyRelay stands alone and is safe for
// concurrent use.
package bench
