package config

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Summary describes the snapshot in a few lines for the start-up log and
// check-config: the files, the accounts by provider and the main limits. It
// holds no secret.
func (s *Snapshot) Summary() string {
	var b strings.Builder
	if s.ConfigPath == "" {
		b.WriteString("config: built-in defaults\n")
	} else {
		fmt.Fprintf(&b, "config: %s\n", s.ConfigPath)
	}

	byProvider := map[string]int{}
	noPassword, plain := 0, 0
	for _, a := range s.Accounts {
		byProvider[a.Provider]++
		switch {
		case a.SMTPPassword.Empty():
			noPassword++
		case !a.PasswordHashed:
			plain++
		}
	}
	var parts []string
	for _, p := range slices.Sorted(maps.Keys(byProvider)) {
		parts = append(parts, fmt.Sprintf("%s %d", p, byProvider[p]))
	}
	fmt.Fprintf(&b, "accounts: %s: %d", s.AccountsPath, len(s.Accounts))
	if len(parts) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(parts, ", "))
	}
	b.WriteString("\n")
	if noPassword > 0 {
		fmt.Fprintf(&b, "accounts without smtp_password (trusted networks only): %d\n", noPassword)
	}
	if plain > 0 {
		fmt.Fprintf(&b, "accounts with a plain-text smtp_password: %d\n", plain)
	}

	smtp := s.Global.SMTP
	nets := make([]string, len(smtp.TrustedNetworks))
	for i, p := range smtp.TrustedNetworks {
		nets[i] = p.String()
	}
	fmt.Fprintf(&b, "smtp: hostname %s, max message %d bytes, max recipients %d, max line %d bytes\n",
		smtp.ServerHostname, smtp.MaxMessageBytes, smtp.MaxRecipients, smtp.MaxLineBytes)
	fmt.Fprintf(&b, "trusted networks: %s\n", cmp.Or(strings.Join(nets, ", "), "none"))
	b.WriteString(s.Global.Listener.summary())
	fmt.Fprintf(&b, "source IP binding: %t, validate source IP: %t", smtp.UseSourceIPBinding, smtp.ValidateSourceIP)
	return b.String()
}
