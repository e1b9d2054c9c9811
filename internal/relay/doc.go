// Package relay turns one client transaction into one upstream
// transaction. It implements smtpd.Backend: Login authenticates through the
// account registry; a Txn leases an authenticated session from the
// account's session lease (account.Sessions) at its first envelope batch,
// forwards each envelope batch pipelined, streams
// the body and hands back the upstream's own replies, so the client gets
// 250 only for an upstream 250.
//
// Failure rules (docs/quirks.md):
//   - A stale pooled session found dead on the first batch of a transaction,
//     before any reply was read, is discarded and the batch is sent again
//     on a fresh session: nothing of the transaction reached the upstream.
//   - Any later failure is never retried: unanswered commands get 451 4.4.2,
//     and a body whose final reply was lost gets 451 4.4.2 (the upstream
//     may or may not have the message: the ambiguous case, counted).
//   - A session whose body was aborted (client error, size limit) is closed
//     without the final dot, so the upstream discards the partial message.
//
// Opening sessions (connect, TLS, EHLO, token, AUTH) is the account
// layer's: the relay gets a lease or an *account.OpenError with the
// client's reply, and only runs transactions.
//
// Replies: the upstream's own are relayed (clientReply: a quota or rate
// reply becomes 451 4.7.0, a 421 never reaches the client); everything the
// relay answers itself is a typed error turned into a reply by one
// function, refusal (refusal.go).
package relay
