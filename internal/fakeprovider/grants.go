package fakeprovider

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Grant and assertion types (RFC 7523).
const (
	grantJWTBearer     = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	clientAssertionJWT = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// outlookAppScope is the only scope an app-only SMTP token may have
	// (PROVIDERS.md: Microsoft app-only).
	outlookAppScope = "https://outlook.office365.com/.default"
	// clockSkew is the slack allowed on an assertion's iat and nbf.
	clockSkew = time.Minute
)

// ServiceAccount is a Google service account with domain-wide delegation:
// its jwt-bearer assertions are accepted for any mailbox added with
// AddAccount.
type ServiceAccount struct {
	ClientEmail string         // the assertion's "iss"
	KeyID       string         // the header's "kid" must match when set
	PublicKey   *rsa.PublicKey // verifies the RS256 signature
}

// App is a Microsoft app registration for app-only (client_credentials)
// access.
type App struct {
	ClientID string
	// ClientSecret is accepted when non-empty.
	ClientSecret string
	// Certificate, when set, verifies client assertions; their "x5t"
	// must be its SHA-1 thumbprint.
	Certificate *x509.Certificate
	// Mailboxes the app's tokens may authenticate as (SMTP.SendAsApp plus
	// a mailbox permission). Each must also be added with AddAccount.
	Mailboxes []string
}

// TokenFault makes the token endpoint misbehave; see SetTokenFault.
type TokenFault struct {
	// Status answers with this HTTP status (429, 500, 503 ...) and an
	// OAuth2 error body.
	Status int
	// RetryAfter, with Status, adds a Retry-After header in whole seconds.
	RetryAfter time.Duration
	// Code and Description, with Status, replace the body's "error" and
	// "error_description" (for example "invalid_grant" and a Microsoft
	// "AADSTS700082: ..." text); "" keeps the usual one for Status.
	Code, Description string
	// Hang never answers: the request ends when the client gives up or
	// the provider closes.
	Hang bool
	// Times is how many requests the fault applies to; 0 means until it is
	// cleared.
	Times int
}

// grantState is the token endpoint's state beyond refresh tokens. Guarded
// by Provider.mu; the maps are made on first use.
type grantState struct {
	serviceAccounts map[string]ServiceAccount // by client email
	apps            map[string]*App           // by client id
	jtis            map[string]time.Time      // client-assertion ids seen, until they expire
	faults          map[string]*TokenFault    // by requester; "" for every request
	requests        map[string]int64          // by requester
	revokeOnReuse   bool
}

// AddServiceAccount registers a service account's public key.
func (p *Provider) AddServiceAccount(sa ServiceAccount) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.grants.serviceAccounts == nil {
		p.grants.serviceAccounts = map[string]ServiceAccount{}
	}
	p.grants.serviceAccounts[strings.ToLower(sa.ClientEmail)] = sa
}

// AddApp registers an app for the client_credentials grant.
func (p *Provider) AddApp(a App) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.grants.apps == nil {
		p.grants.apps = map[string]*App{}
	}
	p.grants.apps[a.ClientID] = &a
}

// SetTokenFault makes the token endpoint misbehave for who: a mailbox (the
// refresh_token and jwt-bearer grants), a client id (client_credentials),
// or "" for every request. A fault for who wins over the one for "". The
// zero TokenFault clears it.
func (p *Provider) SetTokenFault(who string, f TokenFault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.grants.faults == nil {
		p.grants.faults = map[string]*TokenFault{}
	}
	who = strings.ToLower(who)
	if f.Status == 0 && !f.Hang {
		delete(p.grants.faults, who)
		return
	}
	p.grants.faults[who] = &f
}

// TokenRequestsFor counts the token requests made for who (as for
// SetTokenFault), whatever their outcome.
func (p *Provider) TokenRequestsFor(who string) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.grants.requests[strings.ToLower(who)]
}

// SetRevokeOnReuse makes a rotated-away refresh token, presented again,
// revoke the account's grant altogether (OAuth 2.1 reuse detection), so a
// client that loses a rotation dies loudly. Off by default.
func (p *Provider) SetRevokeOnReuse(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.grants.revokeOnReuse = on
}

// requester names who a token request is for, without verifying anything:
// the mailbox owning the refresh token, the assertion's subject, or the
// client id. It also counts the request.
func (p *Provider) requester(grant, clientID string, form url.Values) string {
	var who string
	switch grant {
	case grantJWTBearer:
		var c jwtClaims
		if _, err := decodeJWT(form.Get("assertion"), nil, &c); err == nil || errors.Is(err, errSignature) {
			who = c.Sub
		}
	case "client_credentials":
		who = clientID
	default:
		p.mu.Lock()
		who = p.refreshOwner[form.Get("refresh_token")]
		p.mu.Unlock()
	}
	who = strings.ToLower(who)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.grants.requests == nil {
		p.grants.requests = map[string]int64{}
	}
	p.grants.requests[who]++
	return who
}

// takeFault returns the fault to apply to a request for who, counting it.
func (p *Provider) takeFault(who string) (TokenFault, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range []string{who, ""} {
		f, ok := p.grants.faults[k]
		if !ok {
			continue
		}
		out := *f
		if f.Times > 0 {
			if f.Times--; f.Times == 0 {
				delete(p.grants.faults, k)
			}
		}
		return out, true
	}
	return TokenFault{}, false
}

func (p *Provider) serveFault(w http.ResponseWriter, r *http.Request, f TokenFault) {
	if f.Hang {
		select {
		case <-r.Context().Done():
		case <-p.done:
		}
		return
	}
	if f.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((f.RetryAfter+time.Second-1)/time.Second)))
	}
	body := tokenError{Error: "server_error", Description: "Internal error"}
	switch {
	case f.Status == http.StatusTooManyRequests:
		body = tokenError{Error: "temporarily_unavailable", Description: "Too many requests; slow down."}
	case f.Status == http.StatusServiceUnavailable:
		body = tokenError{Error: "temporarily_unavailable", Description: "The service is temporarily unavailable."}
	case f.Status < 500:
		body = tokenError{Error: "invalid_request", Description: "Injected failure"}
	}
	if f.Code != "" {
		body.Error = f.Code
	}
	if f.Description != "" {
		body.Description = f.Description
	}
	writeJSON(w, f.Status, body)
}

// jwtBearer decides a Google service-account request: the assertion must
// be signed by a registered key, be for this endpoint, live at most an hour,
// ask for mail, and name a known, unrevoked mailbox.
func (p *Provider) jwtBearer(assertion string) (int, any) {
	var c jwtClaims
	h, err := decodeJWT(assertion, nil, &c)
	if err != nil && !errors.Is(err, errSignature) {
		return http.StatusBadRequest, tokenError{Error: "invalid_grant", Description: "Invalid JWT: " + err.Error()}
	}
	p.mu.Lock()
	sa, ok := p.grants.serviceAccounts[strings.ToLower(c.Iss)]
	down := p.tokenDown
	p.mu.Unlock()
	switch {
	case down:
		return http.StatusServiceUnavailable, tokenError{Error: "temporarily_unavailable", Description: "The service is temporarily unavailable."}
	case !ok:
		return http.StatusUnauthorized, tokenError{Error: "invalid_client", Description: "The OAuth client was not found."}
	case sa.KeyID != "" && h.Kid != sa.KeyID:
		return http.StatusBadRequest, tokenError{Error: "invalid_grant", Description: "Invalid JWT Signature."}
	}
	if _, err := decodeJWT(assertion, sa.PublicKey, &c); err != nil {
		return http.StatusBadRequest, tokenError{Error: "invalid_grant", Description: "Invalid JWT Signature."}
	}
	now := time.Now()
	switch {
	case c.Aud != p.TokenURL():
		return http.StatusBadRequest, tokenError{Error: "invalid_grant", Description: "Invalid JWT: Failed audience check."}
	case time.Unix(c.Iat, 0).After(now.Add(clockSkew)) || !time.Unix(c.Exp, 0).After(now) || c.Exp-c.Iat > 3600:
		return http.StatusBadRequest, tokenError{Error: "invalid_grant", Description: "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim."}
	case !hasScope(c.Scope, scope):
		return http.StatusUnauthorized, tokenError{Error: "unauthorized_client", Description: "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested."}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	key := strings.ToLower(c.Sub)
	a := p.accounts[key]
	if a == nil || a.revoked {
		return http.StatusBadRequest, tokenError{Error: "invalid_grant", Description: "Invalid email or User ID"}
	}
	return http.StatusOK, p.issueLocked(accessToken{key: key}, a.Email, scope)
}

// clientCredentials decides a Microsoft app-only request: a known app, the
// .default scope, and its secret or a certificate assertion that verifies.
func (p *Provider) clientCredentials(clientID, secret string, form url.Values) (int, any) {
	p.mu.Lock()
	app := p.grants.apps[clientID]
	down := p.tokenDown
	p.mu.Unlock()
	switch {
	case down:
		return http.StatusServiceUnavailable, tokenError{Error: "temporarily_unavailable", Description: "The service is temporarily unavailable."}
	case app == nil:
		return http.StatusBadRequest, tokenError{Error: "unauthorized_client", Description: "AADSTS700016: Application with identifier '" + clientID + "' was not found in the directory."}
	case form.Get("scope") != outlookAppScope:
		return http.StatusBadRequest, tokenError{Error: "invalid_scope", Description: "AADSTS70011: The provided value for the input parameter 'scope' is not valid."}
	}
	if assertion := form.Get("client_assertion"); assertion != "" {
		if st, body := p.checkClientAssertion(app, form.Get("client_assertion_type"), assertion); st != 0 {
			return st, body
		}
	} else if app.ClientSecret == "" || !equal(secret, app.ClientSecret) {
		return http.StatusUnauthorized, tokenError{Error: "invalid_client", Description: "AADSTS7000215: Invalid client secret provided."}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return http.StatusOK, p.issueLocked(accessToken{app: clientID}, clientID, outlookAppScope)
}

// checkClientAssertion verifies a certificate assertion (RFC 7523 §3):
// x5t names the app's certificate, the signature verifies with its key,
// aud is this endpoint, iss and sub are the client id, it is current, and
// its jti was not seen before. It returns 0 when all holds.
func (p *Provider) checkClientAssertion(app *App, typ, assertion string) (int, any) {
	bad := func(desc string) (int, any) {
		return http.StatusUnauthorized, tokenError{Error: "invalid_client", Description: desc}
	}
	if typ != clientAssertionJWT {
		return http.StatusBadRequest, tokenError{Error: "invalid_request", Description: "AADSTS90014: client_assertion_type is missing or wrong."}
	}
	if app.Certificate == nil {
		return bad("AADSTS700027: No certificate registered for the application.")
	}
	pub, ok := app.Certificate.PublicKey.(*rsa.PublicKey)
	if !ok {
		return bad("AADSTS700027: Certificate key is not RSA.")
	}
	var c jwtClaims
	h, err := decodeJWT(assertion, pub, &c)
	thumb := sha1.Sum(app.Certificate.Raw)
	now := time.Now()
	switch {
	case err != nil:
		return bad("AADSTS700027: Client assertion failed signature validation.")
	case h.X5t != base64.RawURLEncoding.EncodeToString(thumb[:]):
		return bad("AADSTS700027: Client assertion contains an invalid signature. [Reason - The key was not found.]")
	case c.Aud != p.TokenURL():
		return bad("AADSTS700212: No matching federated identity record found for presented assertion audience.")
	case c.Iss != app.ClientID || c.Sub != app.ClientID:
		return bad("AADSTS700023: Client assertion issuer and subject must be the client id.")
	case !time.Unix(c.Exp, 0).After(now) || time.Unix(c.Nbf, 0).After(now.Add(clockSkew)):
		return bad("AADSTS700024: Client assertion is not within its valid time range.")
	case c.Jti == "":
		return bad("AADSTS700023: Client assertion has no jti.")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.grants.jtis == nil {
		p.grants.jtis = map[string]time.Time{}
	}
	for id, exp := range p.grants.jtis {
		if now.After(exp) {
			delete(p.grants.jtis, id)
		}
	}
	if _, seen := p.grants.jtis[c.Jti]; seen {
		return bad("AADSTS700024: Client assertion was already used (replayed jti).")
	}
	p.grants.jtis[c.Jti] = time.Unix(c.Exp, 0)
	return 0, nil
}

// issueLocked records and returns a new access token. Callers hold p.mu.
func (p *Provider) issueLocked(at accessToken, who, sc string) tokenResponse {
	ttl := p.opts.AccessTokenTTL
	resp := tokenResponse{AccessToken: newToken("ya29.fake-"), TokenType: "Bearer", ExpiresIn: int64(ttl / time.Second), Scope: sc}
	p.pruneAccess()
	at.expires = time.Now().Add(ttl)
	p.access[resp.AccessToken] = at
	p.issued = append(p.issued, resp.AccessToken)
	p.tokenRefreshes.Add(1)
	p.log.Info("token issued", "account", who)
	return resp
}

// appMailboxLocked returns the mailbox account an app-only token may act
// as. Callers hold p.mu.
func (p *Provider) appMailboxLocked(clientID, user string) (*account, bool) {
	app := p.grants.apps[clientID]
	if app == nil || user == "" {
		return nil, false
	}
	for _, m := range app.Mailboxes {
		if strings.EqualFold(m, user) {
			a := p.accounts[strings.ToLower(m)]
			return a, a != nil
		}
	}
	return nil, false
}

func hasScope(scopes, want string) bool {
	for _, s := range strings.Fields(scopes) {
		if s == want {
			return true
		}
	}
	return false
}

// jwtHeader and jwtClaims hold the fields the fake checks (RFC 7515,
// RFC 7519).
type jwtHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	X5t string `json:"x5t"`
}

type jwtClaims struct {
	Iss   string `json:"iss"`
	Sub   string `json:"sub"`
	Aud   string `json:"aud"`
	Scope string `json:"scope"`
	Jti   string `json:"jti"`
	Iat   int64  `json:"iat"`
	Nbf   int64  `json:"nbf"`
	Exp   int64  `json:"exp"`
}

// errSignature is decodeJWT's error for a well-formed assertion whose
// signature does not verify (or was not checked, with a nil key).
var errSignature = errors.New("signature not verified")

// decodeJWT parses a compact RS256 JWT into claims and verifies it with pub;
// with a nil pub it only parses and returns errSignature.
func decodeJWT(jwt string, pub *rsa.PublicKey, claims *jwtClaims) (jwtHeader, error) {
	var h jwtHeader
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return h, errors.New("not a compact JWT")
	}
	var raw [3][]byte
	for i, part := range parts {
		b, err := base64.RawURLEncoding.DecodeString(part)
		if err != nil {
			return h, errors.New("bad base64url")
		}
		raw[i] = b
	}
	if json.Unmarshal(raw[0], &h) != nil || json.Unmarshal(raw[1], claims) != nil {
		return h, errors.New("bad JSON")
	}
	if h.Alg != "RS256" {
		return h, errors.New("alg must be RS256")
	}
	if pub == nil {
		return h, errSignature
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], raw[2]) != nil {
		return h, errSignature
	}
	return h, nil
}
