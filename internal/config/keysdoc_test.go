package config

import (
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDocs_everyKeyIsDocumented holds docs/config.md against the loader:
// every key the walker asks for (recorded by diag.keys) must be in the
// reference, and every key the reference's tables list must be one the
// loader accepts. The walker is the only list of keys; this test is what
// ties the reference to it.
func TestDocs_everyKeyIsDocumented(t *testing.T) {
	t.Parallel()
	accepted := acceptedKeys(t)
	doc := readDocKeys(t, filepath.Join("..", "..", "docs", "config.md"))

	for _, o := range doc.old {
		named := func(k string) bool { return namesKey(o, k) }
		if !slices.ContainsFunc(slices.Collect(maps.Keys(accepted.config)), named) &&
			!slices.ContainsFunc(slices.Collect(maps.Keys(accepted.accounts)), named) {
			t.Errorf("config.md lists old key %q, which the loader does not accept", o)
		}
	}
	for _, f := range []struct {
		name       string
		accepted   map[string]keyUse
		documented func(string) bool
		listed     map[string]bool
	}{
		{"config.json", accepted.config, doc.configKey, doc.config},
		{"accounts.json", accepted.accounts, doc.accountKey, doc.accounts},
	} {
		for _, k := range slices.Sorted(maps.Keys(f.accepted)) {
			switch {
			case f.accepted[k] == keyIgnored && !doc.oldKey(k):
				t.Errorf("%s key %q is accepted and ignored, but config.md's \"Old keys with no effect\" does not list it", f.name, k)
			case f.accepted[k] == keyRead && !f.documented(k):
				t.Errorf("%s key %q is read by the loader, but config.md does not document it", f.name, k)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(f.listed)) {
			if !acceptedOrBlock(f.accepted, k) {
				t.Errorf("config.md documents %s key %q, which the loader does not accept", f.name, k)
			}
		}
	}
}

// TestAccountRecord_keysAreAccountKeys: the record the tools write holds
// only keys the loader reads.
func TestAccountRecord_keysAreAccountKeys(t *testing.T) {
	t.Parallel()
	accepted := acceptedKeys(t)
	for _, k := range recordKeys {
		if accepted.accounts[k] != keyRead {
			t.Errorf("AccountRecord writes %q, which the loader does not read", k)
		}
	}
}

// acceptedKeys walks config.json and account records that open every
// block (empty blocks are enough: the walker asks for each key whether
// it is there or not), one record per auth_type, and the example files.
func acceptedKeys(t *testing.T) *keyLog {
	t.Helper()
	const skeleton = `{"global": {"concurrency": {}, "timeouts": {}, "oauth2": {}, "http_pool": {}, "smtp": {}, "logging": {}, "cluster": {"sentinel": {}}},
	  "providers": {"gmail": {"connection_pool": {}, "rate_limiting": {"cooldowns": {}, "warmup": {}}, "retry": {}, "circuit_breaker": {}, "oauth_app": {}},
	    "outlook": {}, "default": {}},
	  "powermta_relay": {}, "features": {}, "monitoring": {}, "feedback": {"imap_servers": {}}, "onboarding": {}}`
	const blocks = `"connection_settings": {}, "rate_limiting": {"cooldowns": {}, "warmup": {}}, "retry": {}, "circuit_breaker": {}, "oauth_app": {}`
	accounts := `[{"account_id": "r", "email": "r@example.com", "provider": "gmail", ` + blocks + `},
	  {"account_id": "s", "email": "s@example.com", "provider": "gmail", "auth_type": "google_service_account", ` + blocks + `},
	  {"account_id": "c", "email": "c@example.com", "provider": "outlook", "auth_type": "client_credentials",
	   "certificate_file": "app.crt", ` + blocks + `}]`

	dir := t.TempDir()
	log := newKeyLog()
	configs := []string{skeleton}
	for _, p := range []string{"../../examples/config.json", "testdata/seed/config.json", "testdata/seed/example_config.json"} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		configs = append(configs, string(b))
	}
	for _, c := range configs {
		d := &diag{keys: log}
		doc, err := decodeJSON([]byte(c))
		if err != nil {
			t.Fatal(err)
		}
		g, provs := defaultGlobal(), builtinProviders()
		parseConfig(d, filepath.Join(dir, "config.json"), doc, &g, provs)
	}
	d := &diag{keys: log}
	doc, err := decodeJSON([]byte(accounts))
	if err != nil {
		t.Fatal(err)
	}
	parseAccounts(d, filepath.Join(dir, "accounts.json"), doc, builtinProviders())
	// The provider blocks are alike: document them once, as "providers.*".
	for k, use := range log.config {
		for _, name := range []string{ProviderGmail, ProviderOutlook, ProviderDefault} {
			if rest, ok := strings.CutPrefix(k, "providers."+name); ok && (rest == "" || rest[0] == '.') {
				delete(log.config, k)
				if star := "providers.*" + rest; log.config[star] != keyRead {
					log.config[star] = use
				}
			}
		}
	}
	return log
}

// docKeys is what docs/config.md documents.
type docKeys struct {
	config   map[string]bool // keys in the tables of "## config.json", dotted from the section's heading
	accounts map[string]bool // keys in the table of "## accounts.json"
	old      []string        // what the "Old keys with no effect" list names, patterns included
}

var backticked = regexp.MustCompile("`([^`]+)`")

// readDocKeys reads the key tables (those whose first column is "key")
// and the list of old keys.
func readDocKeys(t *testing.T, path string) docKeys {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := docKeys{config: map[string]bool{}, accounts: map[string]bool{}}
	var section map[string]bool // where table keys go; nil outside the two sections
	var prefixes []string       // the dotted prefixes of the current heading
	inTable, inOld := false, false
	for line := range strings.Lines(string(b)) {
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "## "):
			section, prefixes = nil, []string{""}
			switch strings.TrimPrefix(line, "## ") {
			case "config.json":
				section = doc.config
			case "accounts.json":
				section = doc.accounts
			}
		case strings.HasPrefix(line, "### "):
			prefixes = nil
			for _, m := range backticked.FindAllStringSubmatch(line, -1) {
				p := m[1]
				if strings.HasPrefix(p, "providers.") {
					p = "providers.*"
				}
				if !slices.Contains(prefixes, p) {
					prefixes = append(prefixes, p)
				}
			}
			if len(prefixes) == 0 {
				prefixes = []string{""}
			}
		case strings.HasPrefix(line, "| key |"):
			inTable = true
		case inTable && strings.HasPrefix(line, "|"):
			cells := strings.Split(line, "|")
			if section == nil || len(cells) < 2 {
				continue
			}
			for _, m := range backticked.FindAllStringSubmatch(cells[1], -1) {
				for _, p := range prefixes {
					section[strings.TrimPrefix(p+"."+m[1], ".")] = true
				}
			}
		case strings.HasPrefix(line, "- **Old keys with no effect**"):
			inOld = true
		case inOld && strings.HasPrefix(line, " "):
			for _, m := range backticked.FindAllStringSubmatch(line, -1) {
				doc.old = append(doc.old, m[1])
			}
		default:
			inTable, inOld = false, false
		}
	}
	if len(doc.config) == 0 || len(doc.accounts) == 0 || len(doc.old) == 0 {
		t.Fatalf("%s: found %d config.json keys, %d accounts.json keys, %d old keys: has its layout changed?",
			path, len(doc.config), len(doc.accounts), len(doc.old))
	}
	return doc
}

// configKey reports whether config.json key k is documented: in a table,
// as a block whose keys are, or in the list of old keys by its full path.
func (d docKeys) configKey(k string) bool {
	return d.config[k] || isBlock(d.config, k) || slices.Contains(d.old, k)
}

// accountBlocks are the blocks of an account that override the provider's,
// key by key, and the provider block each one overrides.
var accountBlocks = map[string]string{
	"connection_settings": "connection_pool", "rate_limiting": "rate_limiting",
	"retry": "retry", "circuit_breaker": "circuit_breaker",
}

// accountKey reports whether accounts.json key k is documented: in the
// table, or inside an override block documented there whose key the
// provider table documents.
func (d docKeys) accountKey(k string) bool {
	if d.accounts[k] || isBlock(d.accounts, k) {
		return true
	}
	block, rest, ok := strings.Cut(k, ".")
	return ok && d.accounts[block] && accountBlocks[block] != "" &&
		d.configKey("providers.*."+accountBlocks[block]+"."+rest)
}

// oldKey reports whether the list of old keys names k: by its path, a
// tail of it, an enclosing block, or a pattern such as "prewarm_*".
func (d docKeys) oldKey(k string) bool {
	return slices.ContainsFunc(d.old, func(o string) bool { return namesKey(o, k) })
}

// namesKey reports whether o, an entry of the list of old keys, names key k.
func namesKey(o, k string) bool {
	last := k[strings.LastIndexByte(k, '.')+1:]
	switch {
	case o == k, strings.HasSuffix(k, "."+o), strings.HasPrefix(k, o+"."):
		return true
	case strings.HasSuffix(o, "*"):
		return strings.HasPrefix(last, strings.TrimSuffix(o, "*"))
	}
	return false
}

// isBlock reports whether some key of set lies inside block k.
func isBlock(set map[string]bool, k string) bool {
	for s := range set {
		if strings.HasPrefix(s, k+".") {
			return true
		}
	}
	return false
}

// acceptedOrBlock reports whether the loader accepts k, or keys inside it.
func acceptedOrBlock(accepted map[string]keyUse, k string) bool {
	if accepted[k] != 0 {
		return true
	}
	for a := range accepted {
		if strings.HasPrefix(a, k+".") {
			return true
		}
	}
	return false
}
