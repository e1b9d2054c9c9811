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

// Defaults returns the built-in global settings and provider blocks that
// config.json is applied on top of.
func Defaults() (Global, map[string]Provider) { return defaultGlobal(), builtinProviders() }

// ApplyConfig applies a config.json held in memory, named dir/config.json,
// on top of g and provs, as Load would.
func ApplyConfig(data []byte, dir string, g *Global, provs map[string]Provider) ([]Warning, error) {
	d := &diag{}
	at := where{file: dir + "/config.json"}
	doc, err := decodeJSON(data)
	if err != nil {
		d.errorf(at, "", "%v", err)
		return d.warns, errors.Join(d.errs...)
	}
	parseConfig(d, at.file, doc, g, provs)
	return d.warns, errors.Join(d.errs...)
}
