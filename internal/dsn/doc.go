// Package dsn reads delivery status notifications: the non-delivery
// reports that Gmail, Microsoft 365 and other MTAs send back to the
// envelope sender, which for this proxy is the account's own mailbox.
//
// Parse takes one whole message (RFC 5322) and returns the failed
// recipients it reports, each with its status code, diagnostic text,
// reporting and remote MTA, arrival date and the Message-ID of the
// message that bounced, and a Class (hard, soft, policy) that the
// bounce-rate protection and the outputs read. It understands RFC 3464
// (multipart/report; report-type=delivery-status with a
// message/delivery-status part, the original as message/rfc822 or
// text/rfc822-headers, RFC 6522), wherever the report sits in a MIME tree,
// which covers the shapes Gmail ("Mail Delivery Subsystem"
// <mailer-daemon@googlemail.com>, X-Failed-Recipients) and Exchange
// Online (postmaster@…, "Undeliverable:", X-MS-Exchange-Message-Is-Ndr)
// actually send. A message without a delivery-status part is not a
// report (ErrNotReport), whatever its subject says: an auto-reply or a
// person writing "undeliverable" is not a bounce. A delayed-delivery
// notice (Action: delayed) is a report with no failed recipient.
//
// We parse the delivery-status fields ourselves (fields.go) rather than
// with net/textproto: per RFC 3464 §2.1 the body is several header-like
// groups separated by blank lines, and textproto refuses lines real
// reports contain (a leading blank, a colon-less line in a diagnostic).
// The MIME structure is read with the standard library's net/mail, mime
// and mime/multipart. The parser is fuzzed (FuzzParse). Pure functions:
// safe for concurrent use.
package dsn
