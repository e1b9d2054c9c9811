// Package logthrottle keeps events that an overloaded or attacked proxy
// repeats at a high rate (every upstream session busy, a connection over
// a cap, a broken upstream) from filling the disk with log lines: per key,
// an account and a reason, the first event is logged in full and the
// following ones only counted, with one summary line ("repeated=N",
// first, last) at most every Interval. An event of a key that was quiet for
// an Interval is logged in full again, so a rare event is never delayed.
// Metrics, not logs, keep the exact counts (penetration test item 9: a
// 20 s overload wrote 48 MB of identical warnings).
//
// New makes a Throttle; its callers log through Warn, Error or Log instead
// of the slog.Logger method of the same name, with a Key naming the event's
// kind. A summary is written by the next event of its key once the
// interval has passed, or by Flush, which the owner calls periodically
// (service: its sweeper); FlushAll writes every summary still owed, at
// shutdown. The Throttle starts no goroutine. Memory is bounded: at most
// MaxKeys keys are tracked, quiet ones are forgotten, and while the table is
// full new keys share one catch-all key. All methods are safe for
// concurrent use.
//
// It is not part of logbuf: logbuf batches bytes below log/slog, for every
// line alike; this package decides above log/slog, per event and key,
// whether there is to be a line at all.
package logthrottle
