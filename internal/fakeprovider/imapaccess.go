package fakeprovider

// ValidAccess reports whether token is a valid, unexpired access token
// for the mailbox user: the check an IMAP fake (fakeimap.Options.Check)
// makes of AUTHENTICATE XOAUTH2, the same as the SMTP side's.
func (p *Provider) ValidAccess(user, token string) bool {
	_, ok := p.checkAccess(user, token, false)
	return ok
}
