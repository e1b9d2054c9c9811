// Package fakeimap is an in-process IMAP server for tests of the bounce
// collector: mailboxes in memory by user, AUTHENTICATE XOAUTH2 checked by
// a function the test gives (fakeprovider.Provider.ValidAccess, so the
// tokens are the proxy's real ones), and the commands package imap sends:
// CAPABILITY, AUTHENTICATE, SELECT, UID SEARCH, UID FETCH BODY.PEEK[],
// CREATE, UID MOVE (or UID COPY, UID STORE, UID EXPUNGE when MOVE is
// off), NOOP, LOGOUT. It counts fetches so tests can prove each report is
// read once. Loopback only; safe for concurrent use.
package fakeimap
