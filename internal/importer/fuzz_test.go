package importer_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/importer"
)

// FuzzParseLine: ParseLine never panics; an accepted line yields a record
// with an address, a refresh token and a client id, fields trimmed and
// free of control characters, that survives a round trip through CSV
// quoting; a refused line's error repeats none of its fields.
func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		"a@example.com,id1,rt1,cid1",
		"sales@gmail.com,,1//0g-rt,111.apps.googleusercontent.com,GOCSPX-s,",
		"promo@hotmail.co.uk,,M.C5-rt,00000000-0000-0000-0000-00000000a002,,203.0.113.11",
		"a@example.com,,rt1,cid1,2001:db8::5",
		`"a@example.com","id","rt,with,commas","cid ""x"""`,
		` a@example.com , id ,	rt1 , cid1 , sec `,
		`a@example.com,"id,rt,cid`,
		"a@b@c,,,",
		"\x00,\x7f,\"\",",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r, err := importer.ParseLine(line)
		if err != nil {
			for _, field := range strings.Split(line, ",") {
				field = strings.Trim(field, " \t\"")
				if len(field) >= 12 && !strings.Contains(importer.Format, field) && strings.Contains(err.Error(), field) {
					t.Fatalf("error %q repeats the field %q", err, field)
				}
			}
			if r.RefreshToken.Reveal() != "" || r.ClientSecret.Reveal() != "" || r.ClientID != "" {
				t.Fatalf("a refused line keeps more than the email: %#v", r)
			}
			return
		}
		if strings.Count(r.Email, "@") != 1 || r.RefreshToken.Empty() || r.ClientID == "" {
			t.Fatalf("incomplete record from %q: %#v", line, r)
		}
		fields := []string{r.Email, r.AccountID, r.RefreshToken.Reveal(), r.ClientID, r.ClientSecret.Reveal(), r.IPAddress}
		for _, v := range fields {
			if v != strings.TrimSpace(v) || strings.ContainsFunc(v, func(c rune) bool { return c < 0x20 && c != '\t' || c == 0x7f }) {
				t.Fatalf("field %q of %q is not clean", v, line)
			}
		}
		if r.IPAddress != "" {
			if _, err := netip.ParseAddr(r.IPAddress); err != nil {
				t.Fatalf("ip_address %q accepted", r.IPAddress)
			}
		}
		quoted := make([]string, len(fields))
		for i, v := range fields {
			quoted[i] = `"` + strings.ReplaceAll(v, `"`, `""`) + `"`
		}
		again, err := importer.ParseLine(strings.Join(quoted, ","))
		if err != nil {
			t.Fatalf("round trip of %q: %v", line, err)
		}
		got := []string{again.Email, again.AccountID, again.RefreshToken.Reveal(), again.ClientID, again.ClientSecret.Reveal(), again.IPAddress}
		if strings.Join(got, "\x00") != strings.Join(fields, "\x00") {
			t.Fatalf("round trip of %q: got %q, want %q", line, got, fields)
		}
	})
}
