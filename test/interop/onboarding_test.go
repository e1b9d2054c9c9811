//go:build interop

package interop

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestOnboarding_authorizeAgainstIssuer: `accounts authorize` runs the
// authorization code flow with PKCE against the suite's fosite issuer (a
// real OAuth2 server): the test plays the browser (the issuer's sign-in
// form, then pastes the address the browser ends on), the refresh token
// lands in accounts.json, and a proxy started on that file sends a message
// that Dovecot accepts on the issuer's word.
func TestOnboarding_authorizeAgainstIssuer(t *testing.T) {
	p := getPeers(t)
	id := uniq("consent")
	a := &account{ID: id, Email: id + "@interop.test", Password: uniq("pw-"), clientID: "client-" + id,
		clientSecret: uniq("secret-"), endpoint: p.upStartTLS, tls: "starttls", mech: "xoauth2", refreshToken: "not-consented-yet"}
	a.hash = p.hashPassword(t, a.Password)
	userPass := uniq("user-")
	p.issuerAdmin(t, "/admin/accounts", map[string]any{"email": a.Email, "password": userPass, "client_id": a.clientID, "client_secret": a.clientSecret})

	dir := t.TempDir()
	cfg := p.proxyConfig(nil)
	cfg["providers"].(map[string]any)["gmail"].(map[string]any)["oauth_app"] = map[string]any{"auth_url": p.issuerURL + "/authorize"}
	cfgPath, acctPath := filepath.Join(dir, "config.json"), filepath.Join(dir, "accounts.json")
	writeJSON(t, cfgPath, cfg)
	writeJSON(t, acctPath, []map[string]any{a.seed(p)})

	cmd := exec.Command(p.proxyBin, "accounts", "authorize", "--no-browser", "--timeout", "60s", "--config", cfgPath, "--accounts", acctPath, a.Email)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	link := regexp.MustCompile(`^\s+(http://\S+/authorize\?\S+)$`)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		m := link.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		io.WriteString(stdin, signIn(t, m[1], a.Email, userPass)+"\n")
		break
	}
	go io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("accounts authorize: %v\n%s", err, stderr.String())
	}
	raw, _ := os.ReadFile(acctPath)
	var recs []map[string]any
	if err := json.Unmarshal(raw, &recs); err != nil || len(recs) != 1 {
		t.Fatalf("accounts.json: %v\n%s", err, raw)
	}
	rt, _ := recs[0]["refresh_token"].(string)
	if !strings.HasPrefix(rt, "ory_rt_") {
		t.Fatalf("refresh token %q is not the issuer's", rt)
	}
	if st := p.issuerStats(t, a.Email); st["authorize_ok"] != 1 || st["grant_authorization_code_ok"] != 1 {
		t.Errorf("issuer counters %v, want one authorization and one code grant", st)
	}

	a.refreshToken = rt
	x := p.startProxy(t, "consent", cfg, []*account{a}, 0)
	box := "consent" + uniq("")
	marker := uniq("c")
	msg := testMessage(marker, a.Email, box+"@dest.test")
	s := proxySession(t, x, a)
	if code, text := s.send(a.Email, []string{box + "@dest.test"}, msg); code != 250 {
		t.Fatalf("sending with the consented grant: %d %s", code, text)
	}
	s.quit()
	checkIdentical(t, p.findMessage(t, box, marker, 20*time.Second), msg, marker)
}

// signIn plays the browser at the issuer: it loads the sign-in form of
// authURL, posts it with the mailbox's credentials and returns the address
// the issuer redirects to (the loopback callback with code and state).
func signIn(t *testing.T, authURL, email, password string) string {
	t.Helper()
	resp, err := http.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), `name="password"`) {
		t.Fatalf("issuer sign-in page: %s\n%s", resp.Status, page)
	}
	u, _ := url.Parse(authURL)
	form := u.Query()
	form.Set("username", email)
	form.Set("password", password)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	u.RawQuery = ""
	resp, err = noFollow.PostForm(u.String(), form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound || !strings.Contains(loc, "code=") {
		t.Fatalf("issuer sign-in: %s to %q", resp.Status, loc)
	}
	return loc
}
