package onboarding

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/oauthflow"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/webui"
)

// authTTL is how long the owner has at the provider before the callback.
const authTTL = 30 * time.Minute

// outcome is what a flow page tells the owner.
type outcome struct {
	Kind    string // "ok" or "error": the page's id, for tests and styles
	Heading string
	Detail  string
}

var page = webui.Parse("onboarding", `{{define "body"}}<section class="onboarding" id="{{.Kind}}">
<h1 id="heading">{{.Heading}}</h1>
<p id="detail">{{.Detail}}</p>
</section>{{end}}`, nil)

// Handler is the public onboarding listener's whole handler: the link
// (/i/TOKEN), the provider's callback (/callback) and /assets/, under
// webui's security headers. Anything else is 404.
func (m *Manager) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /i/{token}", m.open)
	mux.HandleFunc("GET /callback", m.callback)
	mux.Handle("GET "+webui.AssetPrefix, webui.Assets())
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		webui.Render(w, m.log, http.StatusNotFound, page, webui.Page{Title: "Not found", Body: outcome{"error", "Not found", "This page does not exist."}})
	})
	return webui.Secure(mux)
}

// render shows an outcome. The flow's pages are answered 200 whatever
// they say: they are read by a person, and a browser reports a 4xx page
// as a failed load; the state of the invitation is the record.
func (m *Manager) render(w http.ResponseWriter, o outcome) {
	webui.Render(w, m.log, http.StatusOK, page, webui.Page{Title: o.Heading, Body: o})
}

var (
	pageUnknown = outcome{"error", "This link is not valid", "Check that you opened the whole link from your invitation, or ask for a new one."}
	pageExpired = outcome{"error", "This link has expired", "Ask whoever sent it for a new invitation."}
	pageUsed    = outcome{"error", "This link was already used", "An invitation works once. If access still needs to be given, ask for a new invitation."}
	pageBadBack = outcome{"error", "This sign-in answer does not belong to an open invitation", "It may have been altered, already used, or be too old. Open your invitation link again."}
)

// open starts the flow for an invitation link: it sends the browser to
// the provider with PKCE and a fresh state.
func (m *Manager) open(w http.ResponseWriter, r *http.Request) {
	now := m.o.Now()
	m.mu.Lock()
	s := m.byTokenLocked(r.PathValue("token"))
	var o *outcome
	switch {
	case s == nil:
		o = &pageUnknown
	case m.view(s, now).State == StateExpired:
		o = &pageExpired
	case s.State != StatePending && s.State != StateOpened:
		o = &pageUsed
	}
	if o != nil {
		m.mu.Unlock()
		m.render(w, *o)
		return
	}
	id, accountID := s.ID, s.AccountID
	m.mu.Unlock()

	a := m.account(accountID)
	var app oauthflow.App
	var req oauthflow.Request
	err := errors.New("the account was removed")
	if a != nil {
		if app, err = AppFor(a); err == nil {
			app.HTTPClient = m.o.HTTPClient
			req, err = app.Start(m.o.PublicURL+"/callback", a.Email)
		}
	}
	if err != nil {
		m.log.Error("invitation cannot start", "invitation", id, "account", accountID, "err", err)
		m.render(w, outcome{"error", "This invitation cannot be used right now", "The proxy's OAuth app is not set up for this account. The operator has been told."})
		return
	}
	m.mu.Lock()
	s = m.byIDLocked(id)
	if s == nil || (s.State != StatePending && s.State != StateOpened) {
		m.mu.Unlock()
		m.render(w, pageUsed)
		return
	}
	m.pruneAuthsLocked(now)
	m.auths[req.State.Reveal()] = &pendingAuth{id: id, req: req, app: app, expires: now.Add(authTTL)}
	if s.State == StatePending {
		m.setLocked(s, StateOpened, "")
	}
	m.mu.Unlock()
	m.log.Info("invitation opened", "invitation", id, "account", accountID)
	http.Redirect(w, r, req.URL, http.StatusSeeOther)
}

// pruneAuthsLocked drops authorizations past their time, and the oldest
// beyond the cap. Callers hold m.mu.
func (m *Manager) pruneAuthsLocked(now time.Time) {
	for k, p := range m.auths {
		if now.After(p.expires) || len(m.auths) >= m.maxAuths {
			delete(m.auths, k)
		}
	}
}

// callback finishes the flow: state, consent, the signed-in address, the
// grant stored, the reload.
func (m *Manager) callback(w http.ResponseWriter, r *http.Request) {
	cb, err := oauthflow.CallbackFromQuery(r.URL.Query())
	if err != nil {
		m.render(w, pageBadBack)
		return
	}
	now := m.o.Now()
	m.mu.Lock()
	p := m.auths[cb.State]
	delete(m.auths, cb.State) // one answer per authorization
	var s *stored
	if p != nil && now.Before(p.expires) {
		s = m.byIDLocked(p.id)
	}
	if s == nil || s.State != StateOpened {
		m.mu.Unlock()
		m.render(w, pageBadBack)
		return
	}
	if m.view(s, now).State == StateExpired {
		m.mu.Unlock()
		m.render(w, pageExpired)
		return
	}
	id, accountID, email := s.ID, s.AccountID, s.Email
	m.mu.Unlock()

	fail := func(reason string, o outcome) {
		m.finish(id, StateFailed, reason)
		m.log.Warn("invitation failed", "invitation", id, "account", accountID, "reason", reason)
		m.render(w, o)
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	g, err := p.app.Finish(ctx, p.req, cb)
	switch {
	case errors.Is(err, oauthflow.ErrDenied):
		fail("consent refused at the provider", outcome{"error", "Access was not given",
			"You chose not to allow access, so nothing was changed. If this was a mistake, ask for a new invitation."})
		return
	case err != nil:
		fail(err.Error(), outcome{"error", "Sign-in could not be completed",
			"The provider did not confirm the sign-in. Ask for a new invitation and try again."})
		return
	}
	a := m.account(accountID)
	if a == nil {
		fail("the account was removed", pageUnknown)
		return
	}
	c, err := Check(a, p.app, g)
	c.At = m.o.Now()
	if err != nil {
		fail(err.Error(), outcome{"error", "You signed in with a different address",
			"You signed in as " + g.Email + ", but this invitation is for " + email + ". Nothing was changed. Ask for a new invitation and sign in as " + email + "."})
		return
	}
	if err := m.o.Grants.SaveGrant(ctx, c); err != nil {
		m.log.Error("consented grant not stored", "invitation", id, "account", accountID, "err", err)
		fail("the grant could not be stored", outcome{"error", "Access could not be saved",
			"The proxy could not store the access you gave. The operator has been told; ask for a new invitation."})
		return
	}
	m.finish(id, StateConsented, "")
	m.log.Info("invitation consented", "invitation", id, "account", accountID)
	if m.o.AfterGrant != nil {
		if err := m.o.AfterGrant(ctx); err != nil {
			m.log.Error("reload after consent", "account", accountID, "err", err)
		}
	}
	m.render(w, outcome{"ok", "Access given: thank you", email + " can now send through the proxy. You can close this page."})
}

func (m *Manager) finish(id string, st InvitationState, reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.byIDLocked(id); s != nil {
		m.setLocked(s, st, reason)
	}
}
