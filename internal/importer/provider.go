package importer

import "strings"

// LiveTokenURL is the token endpoint of personal Microsoft accounts
// (hotmail.com, outlook.com, live.com, msn.com and their country domains):
// COMPAT.md, "oauth_token_url". Work and school accounts on their own
// domains use the provider's default (login.microsoftonline.com).
const LiveTokenURL = "https://login.live.com/oauth20_token.srf"

// microsoftBrands are the first labels of Microsoft's consumer mail
// domains: outlook.com, hotmail.co.uk, live.fr, msn.com, ...
var microsoftBrands = map[string]bool{"outlook": true, "hotmail": true, "live": true, "msn": true, "windowslive": true}

// Guess returns the provider of a consumer mail domain and, for Microsoft's
// personal accounts, the token URL they need; ok is false for any other
// domain (Google Workspace, Microsoft 365 or anything else on the
// customer's own domain), which the caller must decide.
//
// The old importer matched the brand names anywhere in the domain, so
// "deliverlive.com" became an Outlook account; here the brand must be the
// whole first label and the rest a country or generic top-level suffix
// ("com", "fr", "co.uk", "com.au"), so "live.example.com" is not Microsoft.
func Guess(domain string) (provider, tokenURL string, ok bool) {
	d := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(domain)), ".")
	switch d {
	case "gmail.com", "googlemail.com":
		return "gmail", "", true
	}
	brand, rest, found := strings.Cut(d, ".")
	if !found || !microsoftBrands[brand] || !topLevelSuffix(rest) {
		return "", "", false
	}
	return "outlook", LiveTokenURL, true
}

// topLevelSuffix reports whether s looks like a public suffix a consumer
// mail brand sits under: "com", "net", a two-letter country code, or a
// country's "co."/"com." second level (co.uk, com.au, co.jp).
func topLevelSuffix(s string) bool {
	second, cc, two := strings.Cut(s, ".")
	if !two {
		return s == "com" || s == "net" || isCountryCode(s)
	}
	return (second == "co" || second == "com") && isCountryCode(cc)
}

func isCountryCode(s string) bool {
	return len(s) == 2 && s[0] >= 'a' && s[0] <= 'z' && s[1] >= 'a' && s[1] <= 'z'
}
