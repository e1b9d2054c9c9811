package importer_test

import (
	"os"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/importer"
)

func TestParseLine(t *testing.T) {
	t.Parallel()
	type want struct {
		email, id, rt, cid, secret, ip string
	}
	for _, tc := range []struct {
		name, line string
		want       want
		err        string // substring of the error; "" for none
	}{
		{name: "four fields", line: "a@example.com,id1,rt1,cid1",
			want: want{"a@example.com", "id1", "rt1", "cid1", "", ""}},
		{name: "five fields, secret", line: "a@example.com,,rt1,cid1,GOCSPX-s",
			want: want{"a@example.com", "", "rt1", "cid1", "GOCSPX-s", ""}},
		{name: "five fields, the fifth an IPv4 address", line: "a@example.com,,rt1,cid1,203.0.113.5",
			want: want{"a@example.com", "", "rt1", "cid1", "", "203.0.113.5"}},
		{name: "five fields, the fifth an IPv6 address", line: "a@example.com,,rt1,cid1,2001:db8::5",
			want: want{"a@example.com", "", "rt1", "cid1", "", "2001:db8::5"}},
		{name: "six fields", line: "a@example.com,id,rt1,cid1,sec,2001:db8::5",
			want: want{"a@example.com", "id", "rt1", "cid1", "sec", "2001:db8::5"}},
		{name: "six fields, empty secret", line: "a@example.com,id,rt1,cid1,,192.0.2.1",
			want: want{"a@example.com", "id", "rt1", "cid1", "", "192.0.2.1"}},
		{name: "trailing comma", line: "a@example.com,id,rt1,cid1,",
			want: want{"a@example.com", "id", "rt1", "cid1", "", ""}},
		{name: "spaces around fields", line: " a@example.com , id ,\trt1 , cid1 , sec ",
			want: want{"a@example.com", "id", "rt1", "cid1", "sec", ""}},
		{name: "quoted fields", line: `"a@example.com","id","rt,with,commas","cid ""x"""`,
			want: want{"a@example.com", "id", "rt,with,commas", `cid "x"`, "", ""}},
		{name: "three fields", line: "a@example.com,id,rt1", err: "3 fields, want 4 to 6"},
		{name: "seven fields", line: "a@example.com,id,rt,cid,s,1.2.3.4,x", err: "7 fields"},
		{name: "no at", line: "a.example.com,id,rt,cid", err: "email: not an address"},
		{name: "two ats", line: "a@b@example.com,id,rt,cid", err: "email: not an address"},
		{name: "empty email", line: ",id,rt,cid", err: "email: empty"},
		{name: "space in email", line: "a b@example.com,id,rt,cid", err: "email: not an address"},
		{name: "empty refresh token", line: "a@example.com,id,,cid", err: "refresh_token: empty"},
		{name: "empty client id", line: "a@example.com,id,rt,", err: "client_id: empty"},
		{name: "bad ip", line: "a@example.com,id,rt,cid,sec,300.1.1.1", err: "ip_address: not an IP address"},
		{name: "unterminated quote", line: `a@example.com,"id,rt,cid`, err: "field 2: unterminated quote"},
		{name: "text after quote", line: `a@example.com,"id"x,rt,cid`, err: "field 2: text after the closing quote"},
		{name: "stray quote", line: `a@example.com,i"d,rt,cid`, err: "field 2: stray quote"},
		{name: "control character", line: "a@example.com,id,rt\x00,cid", err: "field 3: control character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := importer.ParseLine(tc.line)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := want{r.Email, r.AccountID, r.RefreshToken.Reveal(), r.ClientID, r.ClientSecret.Reveal(), r.IPAddress}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestParseLine_errorsNeverCarryValues: a line holds a refresh token; no
// error may repeat any field of it.
func TestParseLine_errorsNeverCarryValues(t *testing.T) {
	t.Parallel()
	for _, line := range []string{
		"x@y,id,SECRET-RT,cid,SECRET-CS,not-an-ip",
		"x@y,id,SECRET-RT with space,cid",
		"x@y,id,SECRET-RT,cid,SECRET-CS with space",
		"x@y,id,SECRET-RT",
		`x@y,id,SECRET-RT,"SECRET-CS`,
	} {
		_, err := importer.ParseLine(line)
		if err == nil {
			t.Fatalf("%q accepted", line)
		}
		if strings.Contains(err.Error(), "SECRET") {
			t.Errorf("%q: error %q carries a value", line, err)
		}
	}
}

func TestParse_sampleFile(t *testing.T) {
	t.Parallel()
	f, err := os.Open("testdata/import.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines, err := importer.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range lines {
		s := l.Record.Email
		if l.Err != nil {
			s += " ERR " + l.Err.Error()
		}
		got = append(got, s)
	}
	want := []string{"sales@gmail.com", "news@outlook.com", "promo@hotmail.co.uk", "team@example.com",
		"broken@example.com ERR 3 fields, want 4 to 6: " + importer.Format}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if lines[0].N != 4 || lines[4].N != 11 {
		t.Errorf("line numbers %d, %d; want 4, 11 (comments, header and blank lines count)", lines[0].N, lines[4].N)
	}
}

func TestParse_formats(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		emails   []string
	}{
		{"no header", "a@x.com,,rt,cid,s\nb@x.com,,rt,cid,s\n", []string{"a@x.com", "b@x.com"}},
		{"header", "Email,Account ID,Refresh Token,Client ID\na@x.com,,rt,cid,s\n", []string{"a@x.com"}},
		{"quoted header", "\"email_address\",\"account_id\",\"refresh_token\",\"client_id\"\na@x.com,,rt,cid,s\n", []string{"a@x.com"}},
		{"BOM and CRLF", "\xef\xbb\xbfemail,id,rt,cid\r\na@x.com,,rt,cid,s\r\n\r\nb@x.com,,rt,cid,s", []string{"a@x.com", "b@x.com"}},
		{"comments anywhere", "# c\n  # indented\na@x.com,,rt,cid,s\n#b@x.com,,rt,cid,s\n", []string{"a@x.com"}},
		{"a bad first line is not a header", "nonsense@example.com\na@x.com,,rt,cid,s\n", []string{"nonsense@example.com", "a@x.com"}},
		{"a field that is not an address is not echoed", "1//0g-token-pasted-alone\n", []string{""}},
		{"only the first line can be a header", "a@x.com,,rt,cid,s\nemail,id,rt,cid\n", []string{"a@x.com", ""}},
		{"empty", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lines, err := importer.Parse(strings.NewReader(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range lines {
				got = append(got, l.Record.Email)
			}
			if strings.Join(got, ",") != strings.Join(tc.emails, ",") {
				t.Errorf("emails %q, want %q", got, tc.emails)
			}
		})
	}
}

func TestParse_overlongLineFailsTheFile(t *testing.T) {
	t.Parallel()
	in := "a@x.com,,rt,cid,s\n" + strings.Repeat("x", importer.MaxLineBytes+1) + "\n"
	if _, err := importer.Parse(strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("err = %v", err)
	}
}
