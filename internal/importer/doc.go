// Package importer adds accounts in bulk: it reads the old tool's import
// format (one account per line, "email,account_id,refresh_token,client_id
// [,client_secret][,ip_address]") into config.AccountRecord, completes
// each record the way the old tool and the admin API do (Normalise: the
// provider guessed from the domain, then the record's own Complete, which
// generates account_id and vmta_name), optionally checks each credential with a real
// token request, and saves the records to accounts.json or to a running
// proxy through its admin API.
//
// Use Parse (ParseLine for one line), then Import with a Store: FileStore
// edits accounts.json through config.EditAccounts (validated by the start-up
// loader, atomic, locked against other writers); AdminStore posts to
// /admin/accounts/batch in chunks of 100. Import reports one Result per
// line, saying what failed and why, and never puts a refresh token or client
// secret in an error. Progress draws a bar on a terminal and plain lines
// elsewhere.
//
// The line parser is pure and fuzzed. Import and the stores are safe to
// call from one goroutine at a time; Import runs verifications concurrently
// (Options.Concurrency).
package importer
