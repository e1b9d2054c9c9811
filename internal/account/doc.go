// Package account is the registry of configured accounts: it maps an AUTH
// username (the email, case-insensitive, or the account_id) to an Account
// and checks the password.
//
// An Account pairs its configuration with its runtime state: the token
// source, the pool of upstream sessions and the in-flight message count.
//
// Authenticate gives the same answer (ErrBadCredentials, 535 5.7.8) after
// the same delay for an unknown user, a wrong password and a password-less
// account used from outside the trusted networks, so AUTH reveals nothing
// about which accounts exist. bcrypt verification is slow by design; a
// password that verified once is remembered as an HMAC under a per-process
// random key, so a bulk sender's thousands of AUTHs do not each cost a
// bcrypt run. Registry is safe for concurrent use.
package account
