// Package onboarding gets the OAuth consent of an account's mailbox owner
// and stores the grant: `accounts authorize` on this machine (through
// oauthflow), and invitation links that the owner opens on the public
// onboarding listener (Manager, Handler).
//
// An invitation is bound to one account, expires (7 days by default), and
// is used once: its link holds 256 random bits, of which only the SHA-256
// is kept, in a state file written through safefile. The flow checks that
// the address that signed in is the account's email before it stores the
// refresh token (GrantStore: accounts.json today through
// config.EditAccounts; a cluster store can implement the same interface),
// then calls AfterGrant (the service's reload), which gives the account a
// new token source and so lifts needs_consent.
//
// The pages are the flow's own, on webui's layout and headers; the public
// handler serves nothing else but /assets/.
package onboarding
