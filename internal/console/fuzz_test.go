package console

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseQuery(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want listQuery
	}{
		{"", listQuery{Sort: "email", Page: 1, Per: 50}},
		{"q=+Sender7+&provider=gmail&state=cooling_down&sort=budget&dir=desc&page=3&per=200",
			listQuery{Q: "Sender7", Provider: "gmail", State: "cooling_down", Sort: "budget", Desc: true, Page: 3, Per: 200}},
		{"state=bogus&sort=password&page=0&per=7", listQuery{Sort: "email", Page: 1, Per: 50}},
		{"page=-4&per=100000", listQuery{Sort: "email", Page: 1, Per: 50}},
		{"q=" + strings.Repeat("x", 300), listQuery{Q: strings.Repeat("x", maxQueryChars), Sort: "email", Page: 1, Per: 50}},
	}
	for _, tc := range tests {
		v, _ := url.ParseQuery(tc.in)
		if got := parseQuery(v); got != tc.want {
			t.Errorf("parseQuery(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// FuzzParseQuery: any query string gives a valid listQuery whose links
// read back the same.
func FuzzParseQuery(f *testing.F) {
	f.Add("q=a&provider=gmail&state=ok&sort=state&dir=desc&page=2&per=100")
	f.Add("q=%ff%fe&page=99999999999")
	f.Fuzz(func(t *testing.T, raw string) {
		v, _ := url.ParseQuery(raw)
		q := parseQuery(v)
		if q.Page < 1 || !slices.Contains(perPage, q.Per) || !slices.Contains(sortKeys, q.Sort) ||
			(q.State != "" && !slices.Contains(States, q.State)) || len(q.Q) > maxQueryChars || !utf8.ValidString(q.Q) {
			t.Fatalf("invalid %+v from %q", q, raw)
		}
		back := parseQuery(q.values())
		if back != q {
			t.Fatalf("round trip %+v → %+v", q, back)
		}
	})
}

func TestParseInviteList(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		want     []string
		err      bool
	}{
		{"pasted", "a@example.com\n b@example.com \n\n# comment\nA@example.com\n", []string{"a@example.com", "b@example.com"}, false},
		{"csv with header", "name,email\nAnn,a@example.com\nBob,b@example.com\n", []string{"a@example.com", "b@example.com"}, false},
		{"csv account_id column", "email,account_id\nx@example.com,acct1\n", []string{"acct1"}, false},
		{"csv no header", "acct1,whatever\nacct2\n", []string{"acct1", "acct2"}, false},
		{"crlf", "a@example.com\r\nb@example.com\r\n", []string{"a@example.com", "b@example.com"}, false},
		{"too many", manyLines(maxInvites + 1), nil, true},
		{"empty", "", nil, false},
	}
	for _, tc := range tests {
		got, err := parseInviteList(tc.in)
		if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, %v; want %q (error %v)", tc.name, got, err, tc.want, tc.err)
		}
	}
}

func manyLines(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "acct%d\n", i)
	}
	return b.String()
}

// FuzzParseInviteList: never panics, never more than maxInvites, no
// blank or duplicate entry.
func FuzzParseInviteList(f *testing.F) {
	f.Add("email,name\na@example.com,Ann\n\"b@example.com\",Bob\n")
	f.Add("a\n#c\n\"unterminated\n")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := parseInviteList(in)
		if err != nil {
			return
		}
		if len(got) > maxInvites {
			t.Fatalf("%d entries", len(got))
		}
		seen := map[string]bool{}
		for _, s := range got {
			k := strings.ToLower(s)
			if strings.TrimSpace(s) == "" || seen[k] {
				t.Fatalf("blank or duplicate %q in %q", s, got)
			}
			seen[k] = true
		}
	})
}
