// Package tokenstore keeps the OAuth2 token state of every account in one
// file, so that a rotated refresh token is never lost and a restart does not
// fetch every access token again (PROVIDERS.md: Microsoft rotates the
// refresh token on every refresh; COMPAT.md defect 6).
//
// The file overlays accounts.json, which stays the operator's: the proxy
// never rewrites it. Each entry is keyed by account_id and carries the
// fingerprint of the credential accounts.json configured when the entry was
// written (Entry.Credential); package token ignores an entry whose
// fingerprint no longer matches, so an operator who pastes a new refresh
// token into accounts.json is obeyed.
//
// Use Open, then Get while building token sources, Put for state that may be
// lost in a crash (access tokens, needs_consent), PutSync for state that
// must not (a rotated refresh token), Run to write buffered Puts in the
// background, and Close to write what is left.
//
// # Durability
//
// Every write replaces the whole file: a temporary file in the same
// directory is written, fsynced and renamed over the old one, then the
// directory is fsynced. A crash at any point leaves the old file or the new
// one, never a mix (rename(2) is atomic), and the new one is on disk when
// PutSync returns. Files are created with mode 0600 in a directory created
// with mode 0700. A state file that is a symlink is read and written where
// it points, the link staying, if only this user can write that file;
// otherwise Open refuses (package safefile has the rules, and the lock).
//
// Writes are coalesced. Put only marks an entry dirty; Run writes all dirty
// entries every FlushInterval, so a start-up that fetches 10,000 tokens
// costs a handful of writes, not 10,000 fsyncs. PutSync writes at once, but
// concurrent PutSync calls share one write (group commit): each caller waits
// for the first write that started after its entry was recorded.
//
// Several processes may share a state file. Each write holds an exclusive
// flock(2) on a sibling ".lock" file, re-reads the file, and merges entry by
// entry, the more recently updated entry winning, so that one process never
// drops what another wrote. Fresh sees another process's writes without
// writing: it re-reads the file only when its version (inode, size, mtime)
// differs from the one this Store last wrote or read.
//
// All methods are safe for concurrent use. Secrets are secret.String in
// memory and appear only in the file itself, never in errors or logs.
package tokenstore
