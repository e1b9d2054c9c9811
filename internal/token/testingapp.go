package token

import "time"

// A Google OAuth app left in "Testing" issues refresh tokens that die 7
// days after consent (PROVIDERS.md). The grant then fails with a bare
// invalid_grant, the same as a revocation; only its age tells them apart.
const (
	testingAppLife  = 7 * 24 * time.Hour
	testingAppSlack = 24 * time.Hour
	testingAppHint  = ` (the grant died about 7 days after consent: a Google OAuth app in "Testing" issues refresh tokens that expire after 7 days; publish the app ("In production") and consent again)`
)

// testingAppLocked returns te with the "Testing" app's hint added to its
// description when the pattern fits: Google, invalid_grant, and the
// consent 7 days (± 1) before now. te itself is not changed (it may be
// shared).
func (s *Source) testingAppLocked(te *Error, now time.Time) *Error {
	c := s.cfg
	if !c.Google || c.ConsentedAt.IsZero() || te.Code != "invalid_grant" {
		return te
	}
	if age := now.Sub(c.ConsentedAt); age < testingAppLife-testingAppSlack || age > testingAppLife+testingAppSlack {
		return te
	}
	hinted := *te
	hinted.Description += testingAppHint
	return &hinted
}
