package fakeprovider_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
)

var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// signJWT makes a compact RS256 JWT, as a client would.
func signJWT(t testing.TB, key *rsa.PrivateKey, header, claims map[string]any) string {
	t.Helper()
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	in := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	sum := sha256.Sum256([]byte(in))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return in + "." + enc.EncodeToString(sig)
}

func TestJWTBearer_serviceAccount(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{})
	p.AddAccount(fakeprovider.Account{Email: "user@example.com"})
	p.AddAccount(fakeprovider.Account{Email: "gone@example.com"})
	p.Revoke("gone@example.com")
	p.AddServiceAccount(fakeprovider.ServiceAccount{ClientEmail: "svc@proj.iam.gserviceaccount.com", KeyID: "k1", PublicKey: &rsaKey().PublicKey})
	other, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tc := newTokenClient(t, p)
	now := time.Now().Unix()
	claims := func(edit func(map[string]any)) map[string]any {
		c := map[string]any{"iss": "svc@proj.iam.gserviceaccount.com", "sub": "user@example.com",
			"scope": "https://mail.google.com/", "aud": p.TokenURL(), "iat": now, "exp": now + 3600}
		if edit != nil {
			edit(c)
		}
		return c
	}
	header := map[string]any{"alg": "RS256", "typ": "JWT", "kid": "k1"}
	form := func(jwt string) url.Values {
		return url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {jwt}}
	}
	tests := []struct {
		name       string
		jwt        string
		wantStatus int
		wantError  string
	}{
		{"valid", signJWT(t, rsaKey(), header, claims(nil)), 200, ""},
		{"other key", signJWT(t, other, header, claims(nil)), 400, "invalid_grant"},
		{"wrong kid", signJWT(t, rsaKey(), map[string]any{"alg": "RS256", "kid": "k2"}, claims(nil)), 400, "invalid_grant"},
		{"unknown issuer", signJWT(t, rsaKey(), header, claims(func(c map[string]any) { c["iss"] = "x@y" })), 401, "invalid_client"},
		{"wrong audience", signJWT(t, rsaKey(), header, claims(func(c map[string]any) { c["aud"] = "https://oauth2.googleapis.com/token" })), 400, "invalid_grant"},
		{"longer than an hour", signJWT(t, rsaKey(), header, claims(func(c map[string]any) { c["exp"] = now + 3601 })), 400, "invalid_grant"},
		{"expired", signJWT(t, rsaKey(), header, claims(func(c map[string]any) { c["iat"], c["exp"] = now-7200, now-3600 })), 400, "invalid_grant"},
		{"no mail scope", signJWT(t, rsaKey(), header, claims(func(c map[string]any) { c["scope"] = "email" })), 401, "unauthorized_client"},
		{"unknown mailbox", signJWT(t, rsaKey(), header, claims(func(c map[string]any) { c["sub"] = "nobody@example.com" })), 400, "invalid_grant"},
		{"revoked mailbox", signJWT(t, rsaKey(), header, claims(func(c map[string]any) { c["sub"] = "gone@example.com" })), 400, "invalid_grant"},
		{"HS256", signJWT(t, rsaKey(), map[string]any{"alg": "HS256"}, claims(nil)), 400, "invalid_grant"},
		{"garbage", "a.b.c", 400, "invalid_grant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, body := tc.post(form(tt.jwt))
			if status != tt.wantStatus || (tt.wantError != "" && body["error"] != tt.wantError) {
				t.Fatalf("got %d %v, want %d %s", status, body, tt.wantStatus, tt.wantError)
			}
			if status == 200 {
				c := dial(t, p)
				c.login("user@example.com", body["access_token"].(string))
			}
		})
	}
}

// selfSignedCert makes the certificate an app registration holds.
func selfSignedCert(t testing.TB, key *rsa.PrivateKey) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "app"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestClientCredentials_secretAndCertificate(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{})
	for _, m := range []string{"box1@contoso.com", "box2@contoso.com", "other@contoso.com"} {
		p.AddAccount(fakeprovider.Account{Email: m})
	}
	cert := selfSignedCert(t, rsaKey())
	thumb := sha1.Sum(cert.Raw)
	x5t := base64.RawURLEncoding.EncodeToString(thumb[:])
	p.AddApp(fakeprovider.App{ClientID: "app-1", ClientSecret: "s3", Certificate: cert, Mailboxes: []string{"box1@contoso.com", "BOX2@contoso.com"}})
	tc := newTokenClient(t, p)
	const scope = "https://outlook.office365.com/.default"
	now := time.Now().Unix()
	assertion := func(edit func(h, c map[string]any)) string {
		h := map[string]any{"alg": "RS256", "typ": "JWT", "x5t": x5t}
		c := map[string]any{"iss": "app-1", "sub": "app-1", "aud": p.TokenURL(), "jti": strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + t.Name(),
			"iat": now, "nbf": now, "exp": now + 600}
		if edit != nil {
			edit(h, c)
		}
		return signJWT(t, rsaKey(), h, c)
	}
	ccForm := func(kv ...string) url.Values {
		f := url.Values{"grant_type": {"client_credentials"}, "client_id": {"app-1"}, "scope": {scope}}
		for i := 0; i < len(kv); i += 2 {
			f.Set(kv[i], kv[i+1])
		}
		return f
	}
	withAssertion := func(jwt string) url.Values {
		return ccForm("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", "client_assertion", jwt)
	}
	replayed := assertion(nil)
	if status, body := tc.post(withAssertion(replayed)); status != 200 {
		t.Fatalf("first use of an assertion: %d %v", status, body)
	}
	tests := []struct {
		name       string
		form       url.Values
		wantStatus int
		wantError  string
	}{
		{"secret", ccForm("client_secret", "s3"), 200, ""},
		{"certificate", withAssertion(assertion(nil)), 200, ""},
		{"wrong secret", ccForm("client_secret", "nope"), 401, "invalid_client"},
		{"no credential", ccForm(), 401, "invalid_client"},
		{"unknown app", url.Values{"grant_type": {"client_credentials"}, "client_id": {"app-2"}, "client_secret": {"s3"}, "scope": {scope}}, 400, "unauthorized_client"},
		{"delegated scope", ccForm("client_secret", "s3", "scope", "https://outlook.office.com/SMTP.Send"), 400, "invalid_scope"},
		{"wrong thumbprint", withAssertion(assertion(func(h, _ map[string]any) { h["x5t"] = "AAAA" })), 401, "invalid_client"},
		{"wrong audience", withAssertion(assertion(func(_, c map[string]any) { c["aud"] = "https://login.microsoftonline.com/x/oauth2/v2.0/token" })), 401, "invalid_client"},
		{"issuer not the client", withAssertion(assertion(func(_, c map[string]any) { c["iss"] = "someone" })), 401, "invalid_client"},
		{"expired", withAssertion(assertion(func(_, c map[string]any) { c["exp"] = now - 1 })), 401, "invalid_client"},
		{"replayed jti", withAssertion(replayed), 401, "invalid_client"},
		{"wrong assertion type", ccForm("client_assertion_type", "x", "client_assertion", assertion(nil)), 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, body := tc.post(tt.form)
			if status != tt.wantStatus || (tt.wantError != "" && body["error"] != tt.wantError) {
				t.Fatalf("got %d %v, want %d %s", status, body, tt.wantStatus, tt.wantError)
			}
			if status != 200 {
				return
			}
			if _, ok := body["refresh_token"]; ok {
				t.Error("app-only response carries a refresh token")
			}
			tok := body["access_token"].(string)
			c := dial(t, p)
			c.login("Box2@contoso.com", tok) // any mailbox of the app
			c2 := dial(t, p)
			c2.ehlo()
			c2.do("AUTH XOAUTH2 "+xoauth2("other@contoso.com", tok), 334, "")
		})
	}
}

func TestTokenFaults(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{})
	p.AddAccount(fakeprovider.Account{Email: "a@example.com", RefreshToken: "rt-a"})
	p.AddAccount(fakeprovider.Account{Email: "b@example.com", RefreshToken: "rt-b"})
	tc := newTokenClient(t, p)

	p.SetTokenFault("a@example.com", fakeprovider.TokenFault{Status: 429, RetryAfter: 30 * time.Second, Times: 2})
	for i := range 2 {
		resp, err := tc.hc.PostForm(tc.url, refreshForm("", "", "rt-a"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "30" {
			t.Errorf("request %d: %d Retry-After %q", i+1, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
	if status, _ := tc.post(refreshForm("", "", "rt-a")); status != 200 {
		t.Errorf("after Times ran out: %d", status)
	}
	if status, _ := tc.post(refreshForm("", "", "rt-b")); status != 200 {
		t.Errorf("fault for a hit b: %d", status)
	}

	p.SetTokenFault("", fakeprovider.TokenFault{Status: 500})
	if status, body := tc.post(refreshForm("", "", "rt-b")); status != 500 || body["error"] != "server_error" {
		t.Errorf("global 500: %d %v", status, body)
	}
	p.SetTokenFault("", fakeprovider.TokenFault{Status: 400, Code: "invalid_grant", Description: "AADSTS700082: expired"})
	if status, body := tc.post(refreshForm("", "", "rt-b")); status != 400 || body["error"] != "invalid_grant" || body["error_description"] != "AADSTS700082: expired" {
		t.Errorf("fault with code and description: %d %v", status, body)
	}
	p.SetTokenFault("", fakeprovider.TokenFault{})
	if status, _ := tc.post(refreshForm("", "", "rt-b")); status != 200 {
		t.Errorf("after clearing: %d", status)
	}
	if n := p.TokenRequestsFor("A@example.com"); n != 3 {
		t.Errorf("TokenRequestsFor(a) = %d, want 3", n)
	}

	// A hanging request ends when the client gives up.
	p.SetTokenFault("b@example.com", fakeprovider.TokenFault{Hang: true})
	hc := &http.Client{Transport: &http.Transport{}, Timeout: 200 * time.Millisecond}
	defer hc.CloseIdleConnections()
	start := time.Now()
	if _, err := hc.PostForm(tc.url, refreshForm("", "", "rt-b")); err == nil {
		t.Error("hanging request answered")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("hang not ended by the client for %v", d)
	}
}

func TestRevokeOnReuse(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{RotateRefreshTokens: true})
	p.SetRevokeOnReuse(true)
	p.AddAccount(fakeprovider.Account{Email: "m@example.com", RefreshToken: "rt-1"})
	tc := newTokenClient(t, p)
	_, body := tc.post(refreshForm("", "", "rt-1"))
	next := body["refresh_token"].(string)
	if status, _ := tc.post(refreshForm("", "", "rt-1")); status != 400 {
		t.Fatalf("reuse of the rotated-away token: %d", status)
	}
	if status, body := tc.post(refreshForm("", "", next)); status != 400 || body["error"] != "invalid_grant" {
		t.Errorf("after reuse, the current token still works: %d %v", status, body)
	}
}

// TestHangingRequest_closeDoesNotWait: Close ends a hanging request.
func TestHangingRequest_closeDoesNotWait(t *testing.T) {
	t.Parallel()
	p, err := fakeprovider.Start(fakeprovider.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p.SetTokenFault("", fakeprovider.TokenFault{Hang: true})
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := (&http.Client{Transport: tr}).PostForm(p.TokenURL(), refreshForm("", "", "x")); err == nil {
			resp.Body.Close()
		}
	}()
	waitUntil(t, func() bool { return p.Stats().TokenRequests == 1 })
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for a hanging token request")
	}
	<-done
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(time.Millisecond)
	}
}
