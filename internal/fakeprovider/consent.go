package fakeprovider

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Consent: the authorization endpoint with its consent page (GET and POST
// /authorize), the authorization_code grant with PKCE S256 (RFC 7636), the
// device authorization grant (RFC 8628: POST /devicecode, then the
// device_code grant answering authorization_pending, slow_down,
// expired_token or access_denied), and an id_token naming the address that
// signed in. Accounts that consent are created (or replaced) as if added
// with AddAccount, with the client of the request and a new refresh token.

const grantDeviceCode = "urn:ietf:params:oauth:grant-type:device_code"

// codeTTL is how long an authorization code is valid (RFC 6749 §4.1.2
// recommends at most 10 minutes).
const codeTTL = 10 * time.Minute

// authCode is one issued authorization code.
type authCode struct {
	clientID, redirectURI, challenge, email, scope string
	expires                                        time.Time
}

// deviceCode is one device authorization in progress.
type deviceCode struct {
	clientID, scope, userCode string
	email                     string // set by ApproveDevice
	denied                    bool
	expires, lastPoll         time.Time
	interval                  time.Duration
}

// consentState lives in Provider.grants' neighbour, guarded by p.mu.
type consentState struct {
	codes    map[string]*authCode   // by code
	devices  map[string]*deviceCode // by device_code
	signInAs string                 // SetSignInAs
}

// AuthURL is the authorization endpoint, "http://127.0.0.1:N/authorize".
func (p *Provider) AuthURL() string { return "http://" + p.tokenLn.Addr().String() + "/authorize" }

// DeviceURL is the device authorization endpoint.
func (p *Provider) DeviceURL() string {
	return "http://" + p.tokenLn.Addr().String() + "/devicecode"
}

// SetSignInAs makes the consent page propose this address instead of the
// request's login_hint: the user signed in with another account. "" goes
// back to the login_hint.
func (p *Provider) SetSignInAs(email string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.consent.signInAs = email
}

// ApproveDevice consents to the device authorization with this user code
// as email; DenyDevice refuses it. Both report whether the code was known.
func (p *Provider) ApproveDevice(userCode, email string) bool {
	return p.decideDevice(userCode, email, false)
}

// DenyDevice refuses the device authorization with this user code.
func (p *Provider) DenyDevice(userCode string) bool { return p.decideDevice(userCode, "", true) }

// ExpireDeviceCodes makes every pending device code expired.
func (p *Provider) ExpireDeviceCodes() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range p.consent.devices {
		d.expires = time.Now().Add(-time.Second)
	}
}

func (p *Provider) decideDevice(userCode, email string, deny bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range p.consent.devices {
		if d.userCode == userCode {
			d.email, d.denied = email, deny
			return true
		}
	}
	return false
}

func (p *Provider) consentRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /authorize", p.handleAuthorize)
	mux.HandleFunc("POST /authorize", p.handleConsent)
	mux.HandleFunc("POST /devicecode", p.handleDeviceCode)
}

var consentPage = template.Must(template.New("consent").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>Fake provider: consent</title></head>
<body><h1 id="title">Allow access to your mail?</h1>
<form method="post" action="/authorize">
<p>Signed in as <input id="email" name="email" value="{{.Email}}"></p>
<p id="client">The application {{.ClientID}} asks for: {{.Scope}}</p>
{{range $k, $v := .Hidden}}<input type="hidden" name="{{$k}}" value="{{$v}}">
{{end}}<button id="allow" name="action" value="allow">Allow</button>
<button id="deny" name="action" value="deny">Deny</button>
</form></body></html>`))

// handleAuthorize shows the consent page for a valid request, or a plain
// error page (never a redirect) for a bad one (RFC 6749 §4.1.2.1).
func (p *Provider) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if msg := checkAuthorize(q); msg != "" {
		http.Error(w, "invalid_request: "+msg, http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	email := p.consent.signInAs
	p.mu.Unlock()
	if email == "" {
		email = q.Get("login_hint")
	}
	hidden := map[string]string{}
	for _, k := range []string{"client_id", "redirect_uri", "state", "code_challenge", "scope"} {
		hidden[k] = q.Get(k)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = consentPage.Execute(w, map[string]any{"Email": email, "ClientID": q.Get("client_id"), "Scope": q.Get("scope"), "Hidden": hidden})
}

func checkAuthorize(q url.Values) string {
	switch {
	case q.Get("response_type") != "code":
		return "response_type must be code"
	case q.Get("client_id") == "":
		return "client_id missing"
	case q.Get("code_challenge") == "" || q.Get("code_challenge_method") != "S256":
		return "PKCE with code_challenge_method S256 is required"
	case q.Get("state") == "":
		return "state missing"
	}
	u, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "redirect_uri must be an absolute http(s) URL"
	}
	return ""
}

// handleConsent takes the Allow or Deny of the consent form and sends the
// browser back to the client with a code or access_denied, and the state.
func (p *Provider) handleConsent(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	f := r.PostForm
	f.Set("response_type", "code")
	f.Set("code_challenge_method", "S256")
	if msg := checkAuthorize(f); msg != "" {
		http.Error(w, "invalid_request: "+msg, http.StatusBadRequest)
		return
	}
	back, _ := url.Parse(f.Get("redirect_uri"))
	q := back.Query()
	q.Set("state", f.Get("state"))
	if f.Get("action") != "allow" || strings.TrimSpace(f.Get("email")) == "" {
		q.Set("error", "access_denied")
		q.Set("error_description", "The user denied access.")
	} else {
		code := newToken("fakecode-")
		p.mu.Lock()
		p.consentLocked().codes[code] = &authCode{
			clientID: f.Get("client_id"), redirectURI: f.Get("redirect_uri"), challenge: f.Get("code_challenge"),
			email: strings.TrimSpace(f.Get("email")), scope: f.Get("scope"), expires: time.Now().Add(codeTTL),
		}
		p.mu.Unlock()
		q.Set("code", code)
	}
	back.RawQuery = q.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

func (p *Provider) consentLocked() *consentState {
	if p.consent.codes == nil {
		p.consent.codes = make(map[string]*authCode)
		p.consent.devices = make(map[string]*deviceCode)
	}
	return &p.consent
}

// codeGrant is the authorization_code grant: single use, same client and
// redirect_uri, and the PKCE verifier's S256 must be the challenge.
func (p *Provider) codeGrant(clientID, clientSecret string, f url.Values) (int, any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	code := p.consentLocked().codes[f.Get("code")]
	delete(p.consent.codes, f.Get("code")) // single use, whatever follows
	switch {
	case code == nil || time.Now().After(code.expires):
		return http.StatusBadRequest, tokenError{Error: "invalid_grant", Description: "Malformed auth code."}
	case !equal(clientID, code.clientID) || f.Get("redirect_uri") != code.redirectURI:
		return http.StatusBadRequest, tokenError{Error: "invalid_grant", Description: "client_id or redirect_uri does not match the authorization request."}
	case !equal(s256(f.Get("code_verifier")), code.challenge):
		return http.StatusBadRequest, tokenError{Error: "invalid_grant", Description: "Invalid code verifier."}
	}
	return http.StatusOK, p.consentedLocked(clientID, clientSecret, code.email, code.scope)
}

// consentedLocked creates or replaces the account that consented and
// issues its tokens with an id_token. Callers hold p.mu.
func (p *Provider) consentedLocked(clientID, clientSecret, email, sc string) any {
	key := strings.ToLower(email)
	a := &account{Account: Account{Email: email, ClientID: clientID, ClientSecret: clientSecret, RefreshToken: newToken("1//fake-")}}
	p.accounts[key] = a
	p.refreshOwner[a.RefreshToken] = key
	resp := p.issueLocked(accessToken{key: key}, email, scope)
	resp.RefreshToken = a.RefreshToken
	p.log.Info("consent granted", "account", email)
	return struct {
		tokenResponse
		IDToken string `json:"id_token"`
	}{resp, idToken(clientID, email)}
}

// idToken is an unsigned-looking JWT with the claims a client reads.
func idToken(aud, email string) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	now := time.Now().Unix()
	return enc(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." +
		enc(map[string]any{"iss": "https://fake.provider", "aud": aud, "sub": "fake-" + strings.ToLower(email), "email": email,
			"email_verified": true, "iat": now, "exp": now + 3600}) + ".fake-signature"
}

func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// handleDeviceCode starts a device authorization (RFC 8628 §3.1-3.2). The
// user "visits" the verification URI through ApproveDevice or DenyDevice.
func (p *Provider) handleDeviceCode(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil || r.PostForm.Get("client_id") == "" {
		writeJSON(w, http.StatusBadRequest, tokenError{Error: "invalid_request", Description: "client_id missing"})
		return
	}
	dc, uc := newToken("fakedevice-"), strings.ToUpper(newToken("")[:8])
	p.mu.Lock()
	p.consentLocked().devices[dc] = &deviceCode{clientID: r.PostForm.Get("client_id"), scope: r.PostForm.Get("scope"),
		userCode: uc, expires: time.Now().Add(15 * time.Minute), interval: time.Second}
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"device_code": dc, "user_code": uc, "verification_uri": "http://" + p.tokenLn.Addr().String() + "/device",
		"expires_in": 900, "interval": 1,
	})
}

// deviceGrant polls a device authorization (RFC 8628 §3.4-3.5).
func (p *Provider) deviceGrant(clientID, clientSecret string, f url.Values) (int, any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.consentLocked().devices[f.Get("device_code")]
	now := time.Now()
	switch {
	case d == nil || !equal(clientID, d.clientID):
		return http.StatusBadRequest, tokenError{Error: "invalid_grant", Description: "unknown device_code"}
	case now.After(d.expires):
		delete(p.consent.devices, f.Get("device_code"))
		return http.StatusBadRequest, tokenError{Error: "expired_token", Description: "The device code has expired."}
	case d.denied:
		delete(p.consent.devices, f.Get("device_code"))
		return http.StatusBadRequest, tokenError{Error: "access_denied", Description: "The user denied access."}
	case !d.lastPoll.IsZero() && now.Sub(d.lastPoll) < d.interval/2:
		d.lastPoll = now
		d.interval += 5 * time.Second
		return http.StatusBadRequest, tokenError{Error: "slow_down", Description: "Polling too fast."}
	case d.email == "":
		d.lastPoll = now
		return http.StatusBadRequest, tokenError{Error: "authorization_pending", Description: "The user has not yet consented."}
	}
	delete(p.consent.devices, f.Get("device_code"))
	return http.StatusOK, p.consentedLocked(clientID, clientSecret, d.email, d.scope)
}

// Consent plays the user at the consent page over plain HTTP: it opens
// authURL (the link a client built for AuthURL), then presses Allow (as
// email; "" keeps the address the page proposes) or Deny, and returns the
// address the provider sends the browser back to, without following it.
func Consent(ctx context.Context, authURL string, allow bool, email string) (string, error) {
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return "", err
	}
	resp, err := noFollow.Do(req)
	if err != nil {
		return "", err
	}
	page, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("consent page: %s: %s", resp.Status, page)
	}
	u, _ := url.Parse(authURL)
	form := url.Values{}
	for _, k := range []string{"client_id", "redirect_uri", "state", "code_challenge", "scope"} {
		form.Set(k, u.Query().Get(k))
	}
	if email == "" {
		m := regexp.MustCompile(`id="email" name="email" value="([^"]*)"`).FindSubmatch(page)
		if m == nil {
			return "", errors.New("consent page: no email field")
		}
		email = html.UnescapeString(string(m[1]))
	}
	form.Set("email", email)
	form.Set("action", "deny")
	if allow {
		form.Set("action", "allow")
	}
	u.RawQuery = ""
	req, err = http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = noFollow.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || loc == "" {
		return "", fmt.Errorf("consent: %s without a redirect", resp.Status)
	}
	return loc, nil
}
