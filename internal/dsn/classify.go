package dsn

import "strings"

// policyWords mark a refusal of the message or the sender rather than
// of the address, in diagnostics whose status code does not say so
// (Gmail's 550-5.7.1 and 421-4.7.0 texts, Exchange's 5.7.x and
// "Access denied, banned sender").
var policyWords = []string{"spam", "policy", "reputation", "blocked", "blacklist", "blocklist", "banned sender", "dmarc", "unauthenticated"}

// classify maps a status code (RFC 3463) and diagnostic to a Class.
func classify(status, diagnostic string) Class {
	parts := strings.Split(status, ".")
	if len(parts) == 3 && parts[1] == "7" {
		return Policy
	}
	d := strings.ToLower(diagnostic)
	for _, w := range policyWords {
		if strings.Contains(d, w) {
			return Policy
		}
	}
	switch {
	case strings.HasPrefix(status, "4."):
		return Soft
	case status == "5.2.2" || status == "5.3.4" || status == "5.2.3":
		return Soft
	case strings.HasPrefix(status, "5."):
		return Hard
	}
	// No usable status: the diagnostic's reply code decides.
	if _, code, ok := strings.Cut(d, "smtp;"); ok && strings.HasPrefix(strings.TrimSpace(code), "5") {
		return Hard
	}
	return Soft
}
