package main

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// TestAccountsInvite: invitations through the admin API, from arguments
// and from a CSV, printed as CSV with one link per account; an unknown
// account is named on stderr and makes the exit status 1.
func TestAccountsInvite(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t, envOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	prov := map[string]any{"smtp_endpoint": e.fp.SMTPAddr(), "oauth_token_url": e.fp.TokenURL(), "oauth_app": map[string]any{"auth_url": e.fp.AuthURL()}}
	writeJSONFile(t, e.cfg, map[string]any{
		"global":     map[string]any{"smtp": map[string]any{"server_hostname": "proxy.test"}},
		"providers":  map[string]any{"gmail": prov},
		"onboarding": map[string]any{"listen": fmt.Sprintf("127.0.0.1:%d", port), "public_url": "https://onboard.example.com"},
	})
	e.startProxy(t)
	owners := filepath.Join(e.dir, "owners.csv")
	writeFile(t, owners, "email,name\n"+alice+",Alice\nnobody@example.com,Nobody\n")

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantRows int
		wantErr  string
	}{
		{name: "arguments", args: []string{"alice", alice}, wantCode: 0, wantRows: 2},
		{name: "csv with an unknown account", args: []string{"--csv", owners}, wantCode: 1, wantRows: 1, wantErr: "nobody@example.com: invite nobody@example.com: no such account"},
		{name: "without --admin-url", args: []string{"--admin-url", "", alice}, wantCode: 1, wantErr: "needs --admin-url"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			// The admin listener is open from New on; its requests wait
			// until Run serves them, with the invitation routes.
			code := run(append(append([]string{"accounts", "invite"}, e.admin()...), tc.args...), strings.NewReader(""), &stdout, &stderr)
			if code != tc.wantCode || !strings.Contains(stderr.String(), tc.wantErr) {
				t.Fatalf("exit %d, stderr %q; want %d, %q", code, stderr.String(), tc.wantCode, tc.wantErr)
			}
			if tc.wantRows == 0 {
				return
			}
			rows, err := csv.NewReader(&stdout).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != tc.wantRows+1 || strings.Join(rows[0], ",") != "email,link,expires_at" {
				t.Fatalf("output %q", rows)
			}
			for _, r := range rows[1:] {
				if r[0] != alice || !strings.HasPrefix(r[1], "https://onboard.example.com/i/") || len(r[1]) < len("https://onboard.example.com/i/")+43 {
					t.Errorf("row %q", r)
				}
			}
		})
	}
}
