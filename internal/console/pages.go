package console

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/admin"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/webui"
)

func (c *Console) signinPage(w http.ResponseWriter, r *http.Request) {
	webui.Render(w, c.log, http.StatusOK, signinTmpl, webui.Page{Title: "Sign in", Body: struct{ Error string }{}})
}

// signin checks the admin token (the API's check, with its hold-back of
// failing addresses) and starts a session.
func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	err := c.o.API.CheckToken(r, r.PostFormValue("token"))
	if err != nil {
		status, msg := http.StatusUnauthorized, "Wrong token."
		var held *admin.HeldError
		switch {
		case errors.As(err, &held):
			status, msg = http.StatusTooManyRequests, "Too many failed sign-ins from this address; try again in "+
				strconv.Itoa(int(held.RetryAfter.Seconds())+1)+" s."
			w.Header().Set("Retry-After", strconv.Itoa(int(held.RetryAfter.Seconds())+1))
		case errors.Is(err, admin.ErrNoToken):
			status, msg = http.StatusForbidden, "No admin token is configured: start the proxy with --admin-token-file FILE or XOAUTH2_PROXY_ADMIN_TOKEN."
		}
		webui.Render(w, c.log, status, signinTmpl, webui.Page{Title: "Sign in", Body: struct{ Error string }{msg}})
		return
	}
	id, _ := c.sess.create()
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: id, Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: int(c.o.SessionTTL.Seconds())})
	c.log.Info("console: signed in")
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (c *Console) signout(w http.ResponseWriter, r *http.Request) {
	if ck, err := r.Cookie(cookieName); err == nil {
		c.sess.end(ck.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

// stateCount is one line of the overview's states table.
type stateCount struct {
	Name  string
	Count int
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request) {
	ov := c.overviewNow()
	states := make([]stateCount, len(States))
	for i, s := range States {
		states[i] = stateCount{s, ov.ByState[s]}
	}
	body := struct {
		CSRF   string
		Ov     Overview
		Chart  chart
		States []stateCount
	}{sessionOf(r).csrf, ov, chartOf(ov.Minutes), states}
	webui.Render(w, c.log, http.StatusOK, overviewTmpl, webui.Page{Title: "Overview", Nav: c.nav("/"),
		Scripts: []string{"console.js"}, Body: body})
}

// live is the overview's numbers for the page's script.
// It also serves GET /admin/overview (bearer token), for scripts and
// `xoauth2-proxy status`.
func (c *Console) live(w http.ResponseWriter, _ *http.Request) { writeJSON(w, c.overviewNow()) }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

// col is a column header of the accounts table.
type col struct {
	Label, Href string
	Sorted      bool
	Dir         string // ascending, descending
}

func (c *Console) accounts(w http.ResponseWriter, r *http.Request) {
	q := parseQuery(r.URL.Query())
	res := c.list(c.b.Registry().All(), q, c.o.Now())
	cols := []col{{Label: "Account", Href: "email"}, {Label: "Provider"}, {Label: "State", Href: "state"},
		{Label: "Sessions in use / cap", Href: "sessions"}, {Label: "Today's budget", Href: "budget"},
		{Label: "Last error", Href: "error"}}
	for i := range cols {
		key := cols[i].Href
		if key == "" {
			continue
		}
		cols[i].Sorted = key == q.Sort
		cols[i].Dir = "ascending"
		if cols[i].Sorted && q.Desc {
			cols[i].Dir = "descending"
		}
		cols[i].Href = q.with(func(n *listQuery) {
			n.Desc = n.Sort == key && !n.Desc
			n.Sort, n.Page = key, 1
		})
	}
	body := struct {
		CSRF       string
		Q          listQuery
		Res        listResult
		States     []string
		Sorts      []string
		Pers       []int
		Cols       []col
		Prev, Next string
	}{CSRF: sessionOf(r).csrf, Q: q, Res: res, States: States, Sorts: sortKeys, Pers: perPage, Cols: cols}
	if q.Page > 1 {
		body.Prev = q.with(func(n *listQuery) { n.Page = min(n.Page-1, res.Pages) })
	}
	if q.Page < res.Pages {
		body.Next = q.with(func(n *listQuery) { n.Page++ })
	}
	webui.Render(w, c.log, http.StatusOK, accountsTmpl, webui.Page{Title: "Accounts", Nav: c.nav("/accounts"), Body: body})
}

// findAccount is the account of the {id} path value (account_id or
// email), disabled ones included.
func (c *Console) findAccount(r *http.Request) *account.Account {
	return c.b.Registry().Find(r.PathValue("id"))
}

// flashes are the outcomes an action redirects with (?done=…): a fixed
// set, so no request text is reflected into the page.
var flashes = map[string]struct {
	text string
	bad  bool
}{
	"disabled":       {"Disabled: new mail for this account is refused.", false},
	"enabled":        {"Enabled.", false},
	"refreshed":      {"Token refreshed.", false},
	"refresh_failed": {"The token request failed: see the token's last error.", true},
	"lifted":         {"Cool-down lifted.", false},
	"no_budget":      {"This account has no budgets (dry-run).", true},
	"confirm":        {"Tick the confirmation first: disabling stops this account's mail.", true},
	"failed":         {"The change failed: see the proxy's log.", true},
}

func (c *Console) accountPage(w http.ResponseWriter, r *http.Request) {
	a := c.findAccount(r)
	if a == nil {
		http.Error(w, "no such account", http.StatusNotFound)
		return
	}
	f := flashes[r.URL.Query().Get("done")]
	c.renderAccount(w, r, http.StatusOK, a, f.text, f.bad)
}

// renderAccount renders an account's page with an outcome line.
func (c *Console) renderAccount(w http.ResponseWriter, r *http.Request, status int, a *account.Account, flash string, bad bool) {
	now := c.o.Now()
	rw := c.rowOf(a, now)
	body := struct {
		CSRF                    string
		R                       row
		Cooling                 bool
		Replies                 []account.LastReply
		Refreshes               []token.Event
		Sent, Failed, Ambiguous int64
		Onboarding              bool
		Flash                   string
		FlashBad                bool
	}{CSRF: sessionOf(r).csrf, R: rw, Cooling: now.Before(rw.Budget.CoolingUntil), Replies: a.Replies(),
		Sent: a.Sent.Load(), Failed: a.Failed.Load(), Ambiguous: a.Ambiguous.Load(),
		Onboarding: c.o.Onboarding != nil, Flash: flash, FlashBad: bad}
	if tk := a.Tokens(); tk != nil {
		body.Refreshes = tk.History()
	}
	webui.Render(w, c.log, status, accountTmpl, webui.Page{Title: rw.Email, Nav: c.nav(""), Body: body})
}

// accountAction runs one action and redirects back to the account's page
// with its outcome (POST, redirect, GET: a reload repeats nothing).
func (c *Console) accountAction(w http.ResponseWriter, r *http.Request) {
	a := c.findAccount(r)
	if a == nil {
		http.Error(w, "no such account", http.StatusNotFound)
		return
	}
	id := a.Cfg.ID
	done := ""
	switch r.PathValue("action") {
	case "disable":
		if r.PostFormValue("confirm") != "yes" {
			done = "confirm"
			break
		}
		done = c.setDisabled(id, true)
	case "enable":
		done = c.setDisabled(id, false)
	case "refresh":
		done = "refreshed"
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		if err := c.b.RefreshToken(ctx, a); err != nil {
			c.log.Warn("console: refresh failed", "account", id, "err", err)
			done = "refresh_failed"
		}
	case "lift":
		done = "lifted"
		if !a.Budget().Lift() {
			done = "no_budget"
		}
		c.log.Info("console: cool-down lifted", "account", id)
	case "test":
		c.sendTest(w, r, a)
		return
	default:
		http.NotFound(w, r)
		return
	}
	http.Redirect(w, r, "/accounts/"+id+"?done="+done, http.StatusSeeOther)
}

func (c *Console) setDisabled(id string, disabled bool) string {
	err := c.o.API.SetDisabled(id, disabled)
	switch {
	case err == nil && disabled:
		return "disabled"
	case err == nil:
		return "enabled"
	case errors.Is(err, config.ErrNoAccount):
		return "failed"
	}
	c.log.Warn("console: enable/disable failed", "account", id, "err", err)
	return "failed"
}

// sendTest sends a test message and shows the account's page with the
// reply (no redirect: the reply is this request's outcome; a reload asks
// the browser to post again).
func (c *Console) sendTest(w http.ResponseWriter, r *http.Request, a *account.Account) {
	rcpt := strings.TrimSpace(r.PostFormValue("rcpt"))
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	rp, err := c.b.SendTest(ctx, a, rcpt)
	if err != nil {
		c.renderAccount(w, r, http.StatusBadRequest, a, "No test message sent: "+err.Error(), true)
		return
	}
	c.log.Info("console: test message", "account", a.Cfg.ID, "reply_code", rp.Code)
	if rp.Positive() {
		c.renderAccount(w, r, http.StatusOK, a, "Test message to "+rcpt+" accepted: "+rp.String(), false)
		return
	}
	c.renderAccount(w, r, http.StatusOK, a, "Test message to "+rcpt+" refused: "+rp.String(), true)
}
