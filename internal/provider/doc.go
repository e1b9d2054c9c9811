// Package provider holds what the proxy knows about how Gmail and
// Microsoft answer when an account is exhausted, throttled or refused
// (PROVIDERS.md), as one table: Classify turns an upstream reply into a
// Verdict that the relay acts on (cool the account down, shrink its session
// cap, translate a 5xx that will clear by itself into a 4xx), and
// ClassifyAuth says whether a refused AUTH refused the token itself (so a
// refresh can help). All matching on provider codes and reply text lives
// here. Pure and safe for concurrent use.
package provider
