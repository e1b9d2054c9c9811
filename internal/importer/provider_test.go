package importer_test

import (
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/importer"
)

func TestGuess(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		domain, provider, url string
	}{
		{"gmail.com", "gmail", ""},
		{"GoogleMail.com", "gmail", ""},
		{"outlook.com", "outlook", importer.LiveTokenURL},
		{"hotmail.com", "outlook", importer.LiveTokenURL},
		{"live.com", "outlook", importer.LiveTokenURL},
		{"msn.com", "outlook", importer.LiveTokenURL},
		{"hotmail.co.uk", "outlook", importer.LiveTokenURL},
		{"outlook.fr", "outlook", importer.LiveTokenURL},
		{"live.com.au", "outlook", importer.LiveTokenURL},
		{"hotmail.de.", "outlook", importer.LiveTokenURL},
		{"example.com", "", ""},
		{"live.example.com", "", ""},      // a subdomain of someone else's domain
		{"deliverlive.com", "", ""},       // the old importer's substring match said outlook
		{"outlook.office365.com", "", ""}, // not a mailbox domain
		{"mail.hotmail.com", "", ""},      // not a mailbox domain either
		{"gmail.com.example.net", "", ""}, // look-alike
		{"", "", ""},
	} {
		t.Run(tc.domain, func(t *testing.T) {
			t.Parallel()
			p, url, ok := importer.Guess(tc.domain)
			if p != tc.provider || url != tc.url || ok != (tc.provider != "") {
				t.Errorf("Guess(%q) = %q, %q, %v; want %q, %q", tc.domain, p, url, ok, tc.provider, tc.url)
			}
		})
	}
}
