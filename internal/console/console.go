package console

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/admin"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/traffic"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/webui"
)

// Backend is what the console needs from the running proxy: the admin
// API's Backend, and the message outcomes.
type Backend interface {
	admin.Backend
	// MessageTotals are the messages_total counters (sent, deferred,
	// rejected) now: the same numbers /metrics shows.
	MessageTotals() traffic.Totals
	// Traffic is the outcomes per minute over the hour ending at now.
	Traffic(now time.Time) []traffic.Minute
	// SendTest sends a short test message from the account to rcpt
	// through the relay, as a client's message goes, and returns the
	// final reply or the first refusal; an error when it never reached
	// the relay (a bad address, dry-run).
	SendTest(ctx context.Context, a *account.Account, rcpt string) (reply.Reply, error)
}

// Options configure a Console.
type Options struct {
	// API is the admin API the console stands beside: requests for
	// other paths go to it, and it checks the sign-in token. Required.
	API *admin.API
	// Backend is the running proxy. Required.
	Backend Backend
	// Onboarding creates consent invitations; nil: the page says how to
	// configure it.
	Onboarding Onboarding
	// Cluster describes the proxies of a cluster; nil hides the page.
	Cluster Cluster
	Logger  *slog.Logger
	// Now is the clock of sessions and pages; default time.Now.
	Now func() time.Time
	// SessionTTL is how long a sign-in lasts; default 8h.
	SessionTTL time.Duration
	// MaxSessions bounds the session store; default 1000.
	MaxSessions int
	// InviteTTL is the lifetime of the invitations the console creates;
	// default 7 days.
	InviteTTL time.Duration
}

// Console is the handler of the admin listener: the console's pages, and
// the admin API for everything else.
type Console struct {
	o    Options
	b    Backend
	log  *slog.Logger
	mux  *http.ServeMux
	sess *sessions
}

// cookieName is the session cookie.
const cookieName = "xp_console"

// New returns the console in front of o.API, and registers GET
// /admin/overview on it: one Console per API.
func New(o Options) *Console {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = 8 * time.Hour
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = 1000
	}
	if o.InviteTTL <= 0 {
		o.InviteTTL = 7 * 24 * time.Hour
	}
	c := &Console{o: o, b: o.Backend, log: o.Logger, mux: http.NewServeMux(),
		sess: newSessions(o.Now, o.SessionTTL, o.MaxSessions)}
	pages := http.NewServeMux()
	pages.Handle(webui.AssetPrefix, webui.Assets())
	pages.HandleFunc("GET /signin", c.signinPage)
	pages.HandleFunc("POST /signin", c.signin)
	pages.HandleFunc("POST /signout", c.need(c.signout))
	pages.HandleFunc("GET /{$}", c.need(c.overview))
	pages.HandleFunc("GET /live", c.need(c.live))
	pages.HandleFunc("GET /accounts", c.need(c.accounts))
	pages.HandleFunc("GET /accounts/{id}", c.need(c.accountPage))
	pages.HandleFunc("POST /accounts/{id}/{action}", c.need(c.accountAction))
	pages.HandleFunc("GET /onboarding", c.need(c.onboardingPage))
	pages.HandleFunc("POST /onboarding", c.need(c.invite))
	if o.Cluster != nil {
		pages.HandleFunc("GET /cluster", c.need(c.clusterPage))
	}
	sec := webui.Secure(pages)
	for _, p := range []string{webui.AssetPrefix, "/signin", "/signout", "/{$}", "/live", "/accounts", "/accounts/",
		"/onboarding", "/cluster"} {
		c.mux.Handle(p, sec)
	}
	c.mux.Handle("/", o.API)
	// The same overview for scripts and `xoauth2-proxy status`, with the
	// API's bearer token.
	o.API.Handle("GET /admin/overview", c.live)
	return c
}

// ServeHTTP implements http.Handler.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.mux.ServeHTTP(w, r) }

// ctxKey carries the request's session.
type ctxKey struct{}

// need wraps a handler that needs a signed-in session; a state-changing
// request also needs the session's CSRF token (form field "csrf" or
// header "X-CSRF-Token"). Pages redirect to the sign-in; /live and POSTs
// are refused.
func (c *Console) need(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var sess session
		ok := false
		if ck, err := r.Cookie(cookieName); err == nil {
			sess, ok = c.sess.get(ck.Value)
		}
		if !ok {
			if r.Method == http.MethodGet && r.URL.Path != "/live" {
				http.Redirect(w, r, "/signin", http.StatusSeeOther)
				return
			}
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
			tok := r.Header.Get("X-CSRF-Token")
			if tok == "" {
				tok = r.PostFormValue("csrf")
			}
			if !csrfOK(sess, tok) {
				c.log.Warn("console: request without a valid CSRF token refused", "route", r.Pattern)
				http.Error(w, "missing or wrong CSRF token: reload the page", http.StatusForbidden)
				return
			}
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, sess)))
	}
}

// maxFormBytes bounds a form: a pasted list of invitations fits.
const maxFormBytes = 1 << 20

func sessionOf(r *http.Request) session {
	s, _ := r.Context().Value(ctxKey{}).(session)
	return s
}

// nav is the navigation bar with current marked.
func (c *Console) nav(current string) []webui.NavLink {
	links := []webui.NavLink{{Href: "/", Label: "Overview"}, {Href: "/accounts", Label: "Accounts"},
		{Href: "/onboarding", Label: "Onboarding"}}
	if c.o.Cluster != nil {
		links = append(links, webui.NavLink{Href: "/cluster", Label: "Cluster"})
	}
	for i := range links {
		links[i].Current = links[i].Href == current
	}
	return links
}
