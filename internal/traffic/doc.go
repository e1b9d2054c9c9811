// Package traffic keeps the proxy's message outcomes per minute over the
// last hour, for the console's chart: a Ring of 60 one-minute slots fed
// with cumulative totals (the messages_total counters) by the service's
// own periodic loop, which owns it. No goroutine, no clock of its own: the
// caller passes the time. Safe for concurrent use.
package traffic
