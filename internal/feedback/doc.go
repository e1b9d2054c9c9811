// Package feedback closes the bounce loop: the Collector reads each
// opted-in account's mailbox over IMAP with the account's own OAuth token
// (package imap), finds the delivery status notifications there (package
// dsn), and hands each bounced recipient to the outputs: a JSON lines
// file, PowerMTA-shaped accounting CSV (csv.go) and a signed webhook with
// an on-disk queue (webhook.go). It also keeps each account's hard
// bounces of the last 24 h and cools an account down when its bounce rate
// passes the threshold (protect.go), until the operator resumes it.
//
// Each report is read once: per account the collector persists the
// mailbox's UIDVALIDITY and the last UID it processed (state.go, through
// safefile), after the report's bounces are written to every output; a
// new UIDVALIDITY starts over. Every bounce carries an id made of the
// account, UIDVALIDITY, UID and recipient, so a receiver can drop the one
// duplicate a crash between the two writes could cause.
//
// Polling is gentle and apart from sending: one goroutine (Run, owned by
// the service) schedules each mailbox every Interval ±20 %, reads at most
// MaxConcurrent at once, and never touches the SMTP path; an account whose
// mailbox cannot be read (token refused, IMAP off, scope missing) gets the
// error in its Status and is retried at the next interval, nothing else.
// Safe for concurrent use.
package feedback
