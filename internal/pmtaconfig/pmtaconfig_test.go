package pmtaconfig_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/pmtaconfig"
)

// TestWrite_golden: the accounts of testdata/accounts.json (a gmail and an
// outlook account with built-in session caps, one with its own
// connection_settings and vmta_name, a disabled one) behind two proxies,
// with one password from the file and one placeholder. To accept a
// change: XP_UPDATE_GOLDEN=1 go test ./internal/pmtaconfig.
func TestWrite_golden(t *testing.T) {
	t.Parallel()
	snap, _, err := config.Load(config.LoadOptions{AccountsPath: "testdata/accounts.json", SearchDirs: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	pw, err := pmtaconfig.ParsePasswords(strings.NewReader("# clear-text AUTH passwords\nSales@Example.com  S3cret-for-sales\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := pmtaconfig.Write(&out, snap.Accounts, pmtaconfig.Options{Proxies: []string{"10.0.0.5:2525", "[2001:db8::5]:2525"}, Passwords: pw, Pool: "senders"}); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "pmta.golden")
	if os.Getenv("XP_UPDATE_GOLDEN") == "1" {
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != string(want) {
		t.Errorf("output differs from %s:\n%s", golden, out.String())
	}
}

func TestParsePasswords(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		bad      bool
		want     map[string]string
	}{
		{name: "lines", in: "a@x.com pw1\n\tB@Y.com\t pw2 \n# c@z.com x\n", want: map[string]string{"a@x.com": "pw1", "b@y.com": "pw2"}},
		{name: "no password", in: "a@x.com\n", bad: true},
		{name: "not an email", in: "alice pw\n", bad: true},
		{name: "space inside", in: "a@x.com two words\n", bad: true},
		{name: "hash", in: "a@x.com p#w\n", bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := pmtaconfig.ParsePasswords(strings.NewReader(tc.in))
			if (err != nil) != tc.bad {
				t.Fatalf("err = %v", err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d entries, want %d", len(got), len(tc.want))
			}
			for k, v := range tc.want {
				if got[k].Reveal() != v {
					t.Errorf("%s = %q, want %q", k, got[k].Reveal(), v)
				}
			}
		})
	}
}

func TestWrite_badProxy(t *testing.T) {
	t.Parallel()
	for _, p := range [][]string{nil, {"10.0.0.5"}, {":25"}} {
		if err := pmtaconfig.Write(&bytes.Buffer{}, nil, pmtaconfig.Options{Proxies: p}); err == nil {
			t.Errorf("proxies %q accepted", p)
		}
	}
}

func FuzzParsePasswords(f *testing.F) {
	f.Add("a@x.com pw\n# c\n")
	f.Add("a@x.com\tp w\n")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := pmtaconfig.ParsePasswords(strings.NewReader(s))
		if err != nil {
			return
		}
		for k, v := range m {
			if !strings.Contains(k, "@") || v.Empty() || strings.ContainsAny(v.Reveal(), " \t\r\n#") {
				t.Fatalf("%q gave %q → %q", s, k, v.Reveal())
			}
		}
	})
}
