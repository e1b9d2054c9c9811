package config

import "errors"

// ParseAccounts reads an accounts file held in memory, named "fuzz.json",
// against the built-in provider blocks, as Load would.
func ParseAccounts(data []byte) ([]*Account, []Warning, error) {
	d := &diag{}
	at := where{file: "fuzz.json"}
	doc, err := decodeJSON(data)
	if err != nil {
		d.errorf(at, "", "%v", err)
		return nil, d.warns, errors.Join(d.errs...)
	}
	accounts := parseAccounts(d, at.file, doc, builtinProviders())
	return accounts, d.warns, errors.Join(d.errs...)
}
