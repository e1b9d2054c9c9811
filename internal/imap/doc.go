// Package imap is the small IMAP4rev1 client (RFC 3501) the bounce
// collector uses to read an account's mailbox with its own OAuth token:
// Dial (implicit TLS, as imap.gmail.com:993 and outlook.office365.com:993
// serve), AuthXOAUTH2 (AUTHENTICATE XOAUTH2 with the initial response,
// RFC 4959 SASL-IR, or after the continuation without it), Select (with
// UIDVALIDITY), SearchSince (UID SEARCH), FetchRaw (UID FETCH
// BODY.PEEK[], which leaves \Seen alone), Move (UID MOVE, RFC 6851, or
// COPY + STORE \Deleted + UID EXPUNGE / EXPUNGE), Create and Logout.
//
// Why our own rather than a library: github.com/emersion/go-imap v1 is
// unmaintained and v2, its successor, is only published as a beta on
// the module proxy we build from (go-partial.tsv: v2.0.0-beta.x); we need
// seven commands of a client, and a response reader that is ours to
// bound (line and literal sizes) and fuzz (FuzzReadResponse).
//
// Every call takes a context: its deadline becomes the connection's and
// cancelling it closes the connection. A Client is used by one goroutine
// at a time.
package imap
