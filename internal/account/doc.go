// Package account keeps the accounts: their configuration, their runtime
// state, and the registry that finds them by AUTH username (the email,
// case-insensitive, or the account_id) and checks the password.
//
// Configuration and state are apart (caddy's Upstream/Host shape). An
// Account is one immutable *config.Account from a config snapshot paired
// with the account's *State, which the Registry keeps by account_id for as
// long as the account exists, across reloads: its counters (sent, failed,
// last reply), its messages in flight and its Runtime, the token source
// and the session lease. A reload classifies each edit (Classify): one
// that no upstream session depends on (vmta_name, smtp_password, budgets,
// max_concurrent_messages) keeps the warm sessions; one of the endpoint,
// TLS mode, mechanism, source address, pool settings or disabled drains
// the sessions and opens new ones with the same token source; one of the
// credential makes a new token source too. Counters never fall.
//
// The session lease is reached through small interfaces, defined here
// rather than by their consumers because they have several (relay, probe,
// admin) and a second implementation belongs here too (a cluster-wide
// lease): Sessions lends a Lease of a Conn; NewSessions is the local one,
// a pool of sessions that Dialer opens (connect, TLS, EHLO, a token from
// the account's TokenSource, AUTH, refresh-and-retry once). A failure to
// get a session is an *OpenError holding the client's reply, so that the
// relay only runs transactions over leases. An Account's Budget (admit,
// refund through the ticket, cool down, status) is the registry's
// quota.Budget bound to the account and its limits; the quota.Budget keeps
// the counts by account_id, so they outlive reloads by themselves.
//
// Authenticate gives the same answer (ErrBadCredentials, 535 5.7.8) after
// the same delay for an unknown user, a wrong password and a password-less
// account used from outside the trusted networks, so AUTH reveals nothing
// about which accounts exist. bcrypt verification is slow by design; a
// password that verified once is remembered as an HMAC under a per-process
// random key, so a bulk sender's thousands of AUTHs do not each cost a
// bcrypt run. Registry and State are safe for concurrent use.
package account
