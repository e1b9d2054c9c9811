package fakeprovider

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// scope is what the token endpoint reports; Google's, as PROVIDERS.md lists.
const scope = "https://mail.google.com/"

// tokenResponse is the RFC 6749 §5.1 success body.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

// tokenError is the RFC 6749 §5.2 error body.
type tokenError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func (p *Provider) newTokenServer() *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", p.handleToken)
	p.consentRoutes(mux)
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		// Count connections so Close can wait for their goroutines;
		// http.Server.Close alone does not.
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				p.httpWG.Add(1)
			case http.StateClosed, http.StateHijacked:
				p.httpWG.Done()
			}
		},
	}
}

// handleToken serves the token endpoint: the refresh_token grant (RFC 6749
// §6), Google's jwt-bearer grant for service accounts (RFC 7523 §2.1) and
// Microsoft's client_credentials grant with a secret or a certificate
// assertion, with the providers' error shapes (PROVIDERS.md). A fault set
// with SetTokenFault is applied first.
func (p *Provider) handleToken(w http.ResponseWriter, r *http.Request) {
	p.tokenRequests.Add(1)
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, tokenError{Error: "invalid_request", Description: "malformed form body"})
		return
	}
	clientID, secret, basic := r.BasicAuth()
	if !basic {
		clientID, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	grant := r.PostForm.Get("grant_type")
	if f, ok := p.takeFault(p.requester(grant, clientID, r.PostForm)); ok {
		p.serveFault(w, r, f)
		return
	}
	var status int
	var body any
	switch grant {
	case grantJWTBearer:
		status, body = p.jwtBearer(r.PostForm.Get("assertion"))
	case "client_credentials":
		status, body = p.clientCredentials(clientID, secret, r.PostForm)
	case "authorization_code":
		status, body = p.codeGrant(clientID, secret, r.PostForm)
	case grantDeviceCode:
		status, body = p.deviceGrant(clientID, secret, r.PostForm)
	default:
		status, body = p.refresh(grant, clientID, secret, r.PostForm.Get("refresh_token"))
	}
	writeJSON(w, status, body)
}

// refresh decides one token request; it returns the HTTP status and the
// JSON body.
func (p *Provider) refresh(grant, clientID, secret, refreshToken string) (int, any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tokenDown {
		return http.StatusServiceUnavailable, tokenError{Error: "temporarily_unavailable", Description: "The service is temporarily unavailable."}
	}
	if grant != "refresh_token" {
		return http.StatusBadRequest, tokenError{Error: "unsupported_grant_type", Description: "Invalid grant_type: " + grant}
	}
	if refreshToken == "" {
		return http.StatusBadRequest, tokenError{Error: "invalid_request", Description: "Missing required parameter: refresh_token"}
	}
	key, known := p.refreshOwner[refreshToken]
	a := p.accounts[key]
	if !known || a == nil {
		return http.StatusBadRequest, invalidGrant()
	}
	if (a.ClientID != "" && !equal(clientID, a.ClientID)) || (a.ClientSecret != "" && !equal(secret, a.ClientSecret)) {
		p.log.Info("token refused", "account", a.Email, "err", "invalid_client")
		return http.StatusUnauthorized, tokenError{Error: "invalid_client", Description: "Unauthorized"}
	}
	if !a.revoked && a.RefreshToken != refreshToken && p.grants.revokeOnReuse {
		// OAuth 2.1 §4.3.1 reuse detection: a rotated-away refresh token
		// coming back means two holders; the whole grant is revoked.
		a.revoked = true
		p.log.Info("rotated refresh token reused; grant revoked", "account", a.Email)
	}
	if a.revoked || a.RefreshToken != refreshToken {
		p.log.Info("token refused", "account", a.Email, "err", "invalid_grant")
		return http.StatusBadRequest, invalidGrant()
	}
	resp := p.issueLocked(accessToken{key: key}, a.Email, scope)
	if p.opts.RotateRefreshTokens {
		// Microsoft: the new refresh token replaces the old one, which is
		// now rejected with invalid_grant (PROVIDERS.md).
		resp.RefreshToken = newToken("M.fake-")
		a.RefreshToken = resp.RefreshToken
		p.refreshOwner[resp.RefreshToken] = key
		p.log.Info("refresh token rotated", "account", a.Email)
	}
	return http.StatusOK, resp
}

// pruneAccess drops expired access tokens once the map grows, so a long
// benchmark does not accumulate them. Callers hold p.mu.
func (p *Provider) pruneAccess() {
	if len(p.access) < 1024 {
		return
	}
	now := time.Now()
	for tok, at := range p.access {
		if !now.Before(at.expires) {
			delete(p.access, tok)
		}
	}
}

func invalidGrant() tokenError {
	return tokenError{Error: "invalid_grant", Description: "Token has been expired or revoked."}
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	// The client may be gone; nothing to do about a failed write.
	_ = json.NewEncoder(w).Encode(v)
}

// newToken returns prefix followed by 32 random bytes in base64url.
func newToken(prefix string) string {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand documentation)
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// trackedListener registers the token endpoint's connections with the
// provider, so Close closes them like the SMTP ones.
type trackedListener struct {
	net.Listener
	p *Provider
}

func (l trackedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, p: l.p}
	if !l.p.track(tc) {
		// Closed meanwhile: hand over a dead connection; its serve
		// goroutine ends at the first read.
		c.Close()
	}
	return tc, nil
}

type trackedConn struct {
	net.Conn
	p    *Provider
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.p.untrack(c) })
	return c.Conn.Close()
}
