// Package reply is the SMTP reply value used on both sides of the proxy:
// what the upstream said (relayed intact) and what the proxy itself says.
// A Reply is an error, so a failed step can return the exact reply the
// client must see; FromError is the one place where any other error becomes
// a reply. Values are immutable and safe for concurrent use.
package reply
