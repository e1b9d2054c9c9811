package main

import (
	"html/template"
	"net/http"
	"net/url"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"
)

// strategy is the suite's HMAC strategy (padded access tokens) with
// OpenID Connect's id_token strategy, for the authorization code flow.
type strategy struct {
	*paddedStrategy
	*openid.DefaultStrategy
}

var _ oauth2.CoreStrategy = (*strategy)(nil)

// newSession is the session of every grant: an OpenID Connect session, so
// that the authorization code flow can issue an id_token; Username is the
// mailbox (Dovecot reads it from introspection).
func newSession(email string) *openid.DefaultSession {
	return &openid.DefaultSession{
		Claims: &jwt.IDTokenClaims{Subject: email, Extra: map[string]interface{}{"email": email},
			RequestedAt: time.Now().UTC(), AuthTime: time.Now().UTC()},
		Headers:  &jwt.Headers{},
		Subject:  email,
		Username: email,
	}
}

var signInForm = template.Must(template.New("signin").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>interop issuer: sign in</title></head><body>
<form method="post" action="/authorize">
{{range $k, $vs := .}}{{range $vs}}<input type="hidden" name="{{$k}}" value="{{.}}">{{end}}{{end}}
<input name="username"> <input name="password" type="password"> <button>Allow</button>
</form></body></html>`))

// authorizeForm checks the authorization request and shows the sign-in
// form; the form posts the request's parameters back with the mailbox's
// email and password.
func (s *issuer) authorizeForm(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ar, err := s.provider.NewAuthorizeRequest(ctx, r)
	if err != nil {
		s.log.Printf("authorize refused: %s", describe(err))
		s.provider.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	signInForm.Execute(w, r.URL.Query())
}

// authorize signs the mailbox in with its password and consents to every
// scope asked for, then redirects back with the code.
func (s *issuer) authorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ar, err := s.provider.NewAuthorizeRequest(ctx, r)
	if err != nil {
		s.log.Printf("authorize refused: %s", describe(err))
		s.provider.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	email := r.PostFormValue("username")
	if _, err := s.store.Authenticate(ctx, email, r.PostFormValue("password")); err != nil {
		s.log.Printf("authorize user=%s refused: bad password", email)
		s.provider.WriteAuthorizeError(ctx, w, ar, fosite.ErrAccessDenied.WithHint("Wrong email or password."))
		return
	}
	for _, sc := range ar.GetRequestedScopes() {
		ar.GrantScope(sc)
	}
	if r.PostFormValue("access_type") == "offline" {
		// Google's way of asking for a refresh token (Microsoft's is the
		// offline_access scope, granted above when asked for).
		ar.GrantScope("offline_access")
	}
	resp, err := s.provider.NewAuthorizeResponse(ctx, ar, newSession(email))
	if err != nil {
		s.log.Printf("authorize user=%s refused: %s", email, describe(err))
		s.provider.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	s.store.count(email, "authorize_ok")
	s.log.Printf("authorize user=%s ok redirect=%s", email, redact(ar.GetRedirectURI()))
	s.provider.WriteAuthorizeResponse(ctx, w, ar, resp)
}

func redact(u *url.URL) string {
	c := *u
	c.RawQuery = ""
	return c.String()
}
