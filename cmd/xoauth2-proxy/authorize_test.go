package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
)

// TestAccountsAuthorize drives `accounts authorize` end to end against the
// fake provider: the address is read from the command's output, the
// consent page answered over plain HTTP, and the address the browser ended
// on pasted on stdin; the refresh token must land in accounts.json.
func TestAccountsAuthorize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		signIn   string
		allow    bool
		extra    []string
		wantErr  string
		wantRT   bool
		provider string
	}{
		{name: "gmail consent stored", allow: true, wantRT: true, provider: "gmail"},
		{name: "outlook consent stored", allow: true, wantRT: true, provider: "outlook"},
		{name: "another address refused", allow: true, signIn: "other@example.org", wantErr: "not the account's", provider: "gmail"},
		{name: "denied", wantErr: "consent was refused", provider: "gmail"},
		{name: "outlook --device", extra: []string{"--device"}, allow: true, wantRT: true, provider: "outlook"},
		{name: "google refuses --device", extra: []string{"--device"}, wantErr: "device flow", provider: "gmail"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake, err := fakeprovider.Start(fakeprovider.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer fake.Close()
			fake.SetSignInAs(tc.signIn)
			dir := t.TempDir()
			cfg, accounts := filepath.Join(dir, "config.json"), filepath.Join(dir, "accounts.json")
			writeFile(t, cfg, fmt.Sprintf(`{"providers": {%q: {"oauth_token_url": %q, "oauth_app": {"client_id": "desktop", "client_secret": "dsecret", "auth_url": %q, "device_url": %q}}}}`,
				tc.provider, fake.TokenURL(), fake.AuthURL(), fake.DeviceURL()))
			writeFile(t, accounts, fmt.Sprintf(`[{"account_id": "a1", "email": "owner@example.com", "provider": %q, "refresh_token": "old"}]`, tc.provider))

			inR, inW := io.Pipe()
			outR, outW := io.Pipe()
			var stderr bytes.Buffer
			done := make(chan error, 1)
			go func() {
				code := run(append([]string{"accounts", "authorize", "--config", cfg, "--accounts", accounts, "owner@example.com"}, tc.extra...), inR, outW, &stderr)
				outW.Close()
				done <- fmt.Errorf("exit %d", code)
			}()
			var out strings.Builder
			sc := bufio.NewScanner(outR)
			link := regexp.MustCompile(`^\s+(http://127\.0\.0\.1:\d+/authorize\?\S+)$`)
			code := regexp.MustCompile(`enter the code (\S+),`)
			for sc.Scan() {
				out.WriteString(sc.Text() + "\n")
				if m := code.FindStringSubmatch(sc.Text()); m != nil && !fake.ApproveDevice(m[1], "owner@example.com") {
					t.Errorf("device code %q unknown to the provider", m[1])
				}
				if m := link.FindStringSubmatch(sc.Text()); m != nil {
					go func() {
						loc, err := fakeprovider.Consent(t.Context(), m[1], tc.allow, "")
						if err != nil {
							loc = "consent failed: " + err.Error()
						}
						io.WriteString(inW, loc+"\n")
					}()
				}
			}
			exit := <-done
			inW.Close()
			b, _ := os.ReadFile(accounts)
			rt := fake.RefreshToken("owner@example.com")
			if tc.wantErr != "" {
				if exit.Error() != "exit 1" || !strings.Contains(stderr.String(), tc.wantErr) {
					t.Fatalf("%v, stderr %q, want %q", exit, stderr.String(), tc.wantErr)
				}
				if !strings.Contains(string(b), `"old"`) {
					t.Errorf("accounts.json changed:\n%s", b)
				}
				return
			}
			if exit.Error() != "exit 0" || rt == "" || !strings.Contains(string(b), rt) {
				t.Fatalf("%v; stdout:\n%s\nstderr: %s\naccounts.json:\n%s", exit, out.String(), stderr.String(), b)
			}
			if strings.Contains(out.String()+stderr.String(), rt) {
				t.Error("the refresh token was printed")
			}
		})
	}
}
