package config

import "errors"

// Accounts resolves the records as Load would, against the given provider
// blocks (a Snapshot's Providers), without writing anything: one *Account
// per record, in file order. When records do not validate, err joins the
// problems (each a *FieldError naming f.Path) and the fields at fault hold
// what could be read of them. The admin API compares an edit's before
// and after with it.
func (f *AccountsFile) Accounts(providers map[string]Provider) ([]*Account, error) {
	doc, err := decodeJSON(f.Bytes())
	if err != nil {
		return nil, err
	}
	d := &diag{}
	accounts := parseAccounts(d, f.Path, doc, providers)
	return accounts, errors.Join(d.errs...)
}

// CheckTokenURL applies the loader's rule for token endpoints to a URL
// from elsewhere (an admin API request to verify credentials): https://,
// or http:// to a loopback host only, since the request carries secrets.
func CheckTokenURL(raw string) error {
	if msg := tokenURLError(raw); msg != "" {
		return errors.New(msg)
	}
	return nil
}
