// Package config reads config.json and accounts.json and turns them into one
// immutable Snapshot: global settings, the three provider blocks ("gmail",
// "outlook", "default") and the accounts, each with its provider defaults
// and per-account overrides already applied. It owns the file formats, their
// defaults and their validation; it does not open sockets, refresh tokens or
// check that an account's ip_address exists on this host (that is done where
// the address is used). Key and certificate files are named here and
// parsed by package token; the enums it reads into (upstream.TLSMode,
// upstream.Mechanism, token.AuthType) belong to the packages that use them.
// AccountRecord and AccountsFile are the write side: the record tools add
// and the in-place editing of accounts.json (EditAccounts).
//
// Call Load with a LoadOptions. It finds the files (see LoadOptions for the
// search order), parses them, applies defaults and validates everything,
// collecting every problem: it returns either a complete Snapshot or an
// error joining all problems, never a half-configured Snapshot. Each problem
// names the file, the account and the field (a *FieldError). Things that
// work but deserve attention, such as unknown keys or plain-text passwords,
// come back as Warnings. A reload calls Load again and swaps the Snapshot.
//
// The formats are those of the earlier Python proxy, which operators' files
// must keep loading unchanged, plus the new keys; docs/config.md is the
// reference for every key and default. Load has no package-level
// state and may be called from several goroutines; a Snapshot must not be
// modified once returned and is then safe for concurrent reads.
package config
