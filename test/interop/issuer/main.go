// Command issuer is the OAuth2 authorization server of the interop suite: a
// small program around github.com/ory/fosite (the OAuth2 engine inside Ory
// Hydra), so that the token endpoint the proxy talks to and the
// introspection endpoint Dovecot asks are real OAuth2 code we did not write.
//
// It serves, on one loopback address:
//
//	POST /token        RFC 6749: grant_type=password (to mint an account's first
//	                   refresh token) and grant_type=refresh_token, which ROTATES
//	                   the refresh token: the old one is then refused, and using
//	                   it again revokes the whole family (fosite's reuse detection)
//	GET  /authorize    RFC 6749 §4.1 with PKCE S256 (RFC 7636, required) and
//	                   OpenID Connect: a sign-in form for the mailbox's email
//	                   and password (POST /authorize), then the redirect with
//	                   the code; the token endpoint's authorization_code grant
//	                   answers with an id_token whose "email" is the mailbox.
//	                   Loopback redirect URIs match on any port (RFC 8252).
//	POST /introspect   RFC 7662, HTTP Basic client auth (Dovecot's passdb oauth2
//	                   with introspection_mode = post); "username" is the mailbox
//	POST /revoke       RFC 7009
//	POST /admin/accounts     {"email","password","client_id","client_secret",
//	                          "access_token_bytes","access_token_ttl_seconds"}: register
//	                          a mailbox and its client; access_token_bytes > 0 pads its
//	                          access tokens to that length, access_token_ttl_seconds > 0
//	                          overrides -access-ttl for it
//	POST /admin/revoke       {"email"}: revoke every token of the mailbox, refuse new ones
//	POST /admin/expire-access {"email"}: invalidate the mailbox's current access
//	                          tokens only (its refresh token keeps working)
//	GET  /admin/stats        per-mailbox counts of grants and introspections
//
// Access tokens live -access-ttl (a few seconds in the suite, so they expire
// during a run). One log line per request goes to stderr. The program is a
// test peer: it keeps everything in memory and listens on loopback only.
package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/openid"
	"golang.org/x/crypto/bcrypt"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to serve on")
	accessTTL := flag.Duration("access-ttl", 4*time.Second, "access token lifetime")
	refreshTTL := flag.Duration("refresh-ttl", time.Hour, "refresh token lifetime")
	rsID := flag.String("resource-server-id", "dovecot", "client id the introspecting resource server uses (HTTP Basic)")
	rsSecret := flag.String("resource-server-secret", "dovecot-secret", "that client's secret")
	addrFile := flag.String("addr-file", "", "write the listening address to this file once serving")
	flag.Parse()

	logger := log.New(os.Stderr, "issuer ", log.LstdFlags|log.Lmicroseconds)
	iss, err := newIssuer(*accessTTL, *refreshTTL, logger)
	if err != nil {
		logger.Fatal(err)
	}
	if err := iss.addClient(*rsID, *rsSecret, 0, 0); err != nil {
		logger.Fatal(err)
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		logger.Fatal(err)
	}
	if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		logger.Fatalf("refusing to serve on non-loopback %s", ip)
	}
	srv := &http.Server{Handler: iss.routes(), ReadHeaderTimeout: 10 * time.Second}
	logger.Printf("serving on %s access_ttl=%s refresh_ttl=%s", ln.Addr(), *accessTTL, *refreshTTL)
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			logger.Fatal(err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Fatal(err)
	}
	logger.Printf("stopped")
}

// issuer is the fosite provider with its store and counters.
type issuer struct {
	provider fosite.OAuth2Provider
	store    *store
	log      *log.Logger
}

func newIssuer(accessTTL, refreshTTL time.Duration, logger *log.Logger) (*issuer, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	cfg := &fosite.Config{
		AccessTokenLifespan:  accessTTL,
		RefreshTokenLifespan: refreshTTL,
		GlobalSecret:         secret,
		ScopeStrategy:        fosite.ExactScopeStrategy,
		HashCost:             bcrypt.MinCost,
		EnforcePKCE:          true,
		IDTokenIssuer:        "http://issuer.interop.test",
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	keyGetter := func(context.Context) (interface{}, error) { return key, nil }
	st := newStore()
	strat := &strategy{
		paddedStrategy:  &paddedStrategy{HMACSHAStrategy: compose.NewOAuth2HMACStrategy(cfg)},
		DefaultStrategy: compose.NewOpenIDConnectStrategy(keyGetter, cfg),
	}
	provider := compose.Compose(cfg, st, strat,
		compose.OAuth2AuthorizeExplicitFactory,
		compose.OAuth2PKCEFactory,
		compose.OpenIDConnectExplicitFactory,
		compose.OAuth2ResourceOwnerPasswordCredentialsFactory,
		compose.OAuth2RefreshTokenGrantFactory,
		compose.OAuth2TokenIntrospectionFactory,
		compose.OAuth2TokenRevocationFactory,
	)
	return &issuer{provider: provider, store: st, log: logger}, nil
}

// Scopes a mailbox client may hold: offline_access makes fosite issue a
// refresh token; the others are the providers' mail scopes.
var mailScopes = []string{"offline_access", "https://mail.google.com/", "https://outlook.office.com/SMTP.Send", "openid", "email", "profile"}

func (s *issuer) addClient(id, secret string, tokenBytes int, accessTTL time.Duration) error {
	hash, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.MinCost)
	if err != nil {
		return err
	}
	s.store.putClient(&client{
		DefaultClient: &fosite.DefaultClient{
			ID:            id,
			Secret:        hash,
			GrantTypes:    []string{"password", "refresh_token", "authorization_code"},
			ResponseTypes: []string{"code"},
			Scopes:        mailScopes,
			// Any port (fosite matches loopback URIs as RFC 8252 §7.3 asks).
			RedirectURIs: []string{"http://127.0.0.1/callback"},
		},
		TokenBytes: tokenBytes,
		AccessTTL:  accessTTL,
	})
	return nil
}

func (s *issuer) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /authorize", s.authorizeForm)
	mux.HandleFunc("POST /authorize", s.authorize)
	mux.HandleFunc("POST /token", s.token)
	mux.HandleFunc("POST /introspect", s.introspect)
	mux.HandleFunc("POST /revoke", s.revoke)
	mux.HandleFunc("POST /admin/accounts", s.adminAccounts)
	mux.HandleFunc("POST /admin/revoke", s.adminRevoke)
	mux.HandleFunc("POST /admin/expire-access", s.adminExpireAccess)
	mux.HandleFunc("GET /admin/stats", s.adminStats)
	return mux
}

// token is the token endpoint (RFC 6749 §3.2), fosite doing the work.
func (s *issuer) token(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess := newSession("")
	ar, err := s.provider.NewAccessRequest(ctx, r, sess)
	grant := r.PostFormValue("grant_type")
	if err != nil {
		who := s.store.userOfForm(ctx, r)
		s.store.count(who, "grant_"+grant+"_refused")
		s.log.Printf("token grant=%s user=%s client=%s refused: %s", grant, who, r.PostFormValue("client_id"), describe(err))
		s.provider.WriteAccessError(ctx, w, ar, err)
		return
	}
	if ar.GetGrantTypes().ExactOne("password") {
		for _, sc := range ar.GetRequestedScopes() {
			ar.GrantScope(sc)
		}
		// The mailbox is the subject (set by Authenticate); Dovecot reads it
		// from the introspection answer's "username".
		if ds, ok := ar.GetSession().(*openid.DefaultSession); ok {
			ds.Username = ds.Subject
		}
	}
	user := ar.GetSession().GetUsername()
	resp, err := s.provider.NewAccessResponse(ctx, ar)
	if err != nil {
		s.store.count(user, "grant_"+grant+"_refused")
		s.log.Printf("token grant=%s user=%s refused: %s", grant, user, describe(err))
		s.provider.WriteAccessError(ctx, w, ar, err)
		return
	}
	s.store.count(user, "grant_"+grant+"_ok")
	s.log.Printf("token grant=%s user=%s ok access_token_bytes=%d expires_in=%v new_refresh_token=%t",
		grant, user, len(resp.GetAccessToken()), resp.GetExtra("expires_in"), resp.GetExtra("refresh_token") != nil)
	s.provider.WriteAccessResponse(ctx, w, ar, resp)
}

// introspect is RFC 7662's endpoint, as Dovecot calls it.
func (s *issuer) introspect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ir, err := s.provider.NewIntrospectionRequest(ctx, r, &fosite.DefaultSession{})
	if err != nil {
		s.store.count("", "introspect_inactive")
		s.log.Printf("introspect token_bytes=%d inactive: %s", len(r.PostFormValue("token")), describe(err))
		s.provider.WriteIntrospectionError(ctx, w, err)
		return
	}
	user := ir.GetAccessRequester().GetSession().GetUsername()
	if s.store.isRevoked(user) {
		// Belt and braces: a revoked mailbox never introspects active.
		s.store.count(user, "introspect_inactive")
		s.log.Printf("introspect user=%s inactive: mailbox revoked", user)
		s.provider.WriteIntrospectionError(ctx, w, fosite.ErrInactiveToken)
		return
	}
	s.store.count(user, "introspect_active")
	s.log.Printf("introspect user=%s token_bytes=%d active", user, len(r.PostFormValue("token")))
	s.provider.WriteIntrospectionResponse(ctx, w, ir)
}

func (s *issuer) revoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	err := s.provider.NewRevocationRequest(ctx, r)
	s.log.Printf("revoke (RFC 7009) err=%v", err)
	s.provider.WriteRevocationResponse(ctx, w, err)
}

type adminAccount struct {
	Email            string `json:"email"`
	Password         string `json:"password"`
	ClientID         string `json:"client_id"`
	ClientSecret     string `json:"client_secret"`
	AccessTokenBytes int    `json:"access_token_bytes"`
	AccessTokenTTL   int    `json:"access_token_ttl_seconds"`
}

func (s *issuer) adminAccounts(w http.ResponseWriter, r *http.Request) {
	var a adminAccount
	if err := json.NewDecoder(r.Body).Decode(&a); err != nil || a.Email == "" || a.Password == "" || a.ClientID == "" || a.ClientSecret == "" {
		http.Error(w, "want JSON with email, password, client_id, client_secret", http.StatusBadRequest)
		return
	}
	if err := s.addClient(a.ClientID, a.ClientSecret, a.AccessTokenBytes, time.Duration(a.AccessTokenTTL)*time.Second); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.store.putUser(a.Email, a.Password)
	s.log.Printf("admin: account %s client=%s access_token_bytes=%d access_token_ttl_seconds=%d", a.Email, a.ClientID, a.AccessTokenBytes, a.AccessTokenTTL)
	w.WriteHeader(http.StatusCreated)
}

func (s *issuer) adminRevoke(w http.ResponseWriter, r *http.Request) {
	email, ok := adminEmail(w, r)
	if !ok {
		return
	}
	n, err := s.store.revokeUser(r.Context(), email, true)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.log.Printf("admin: revoked %s (%d grants)", email, n)
	fmt.Fprintf(w, "{\"revoked_grants\":%d}\n", n)
}

func (s *issuer) adminExpireAccess(w http.ResponseWriter, r *http.Request) {
	email, ok := adminEmail(w, r)
	if !ok {
		return
	}
	n, err := s.store.revokeUser(r.Context(), email, false)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.log.Printf("admin: access tokens of %s invalidated (%d grants)", email, n)
	fmt.Fprintf(w, "{\"expired_grants\":%d}\n", n)
}

func (s *issuer) adminStats(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(s.store.stats())
}

func adminEmail(w http.ResponseWriter, r *http.Request) (string, bool) {
	var v struct {
		Email string `json:"email"`
	}
	if err := json.NewDecoder(r.Body).Decode(&v); err != nil || v.Email == "" {
		http.Error(w, "want JSON with email", http.StatusBadRequest)
		return "", false
	}
	return v.Email, true
}

// describe is a fosite error's name, hint and debug text for the log.
func describe(err error) string {
	var rfc *fosite.RFC6749Error
	if errors.As(err, &rfc) {
		return fmt.Sprintf("%s (%s; %s)", rfc.ErrorField, rfc.HintField, rfc.DebugField)
	}
	return err.Error()
}
