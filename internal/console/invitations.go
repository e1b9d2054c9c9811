package console

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/webui"
)

// maxInvites bounds one request's invitations.
const maxInvites = 1000

// parseInviteList reads the accounts to invite from a pasted list or a
// CSV file: one account (email or account_id) per line, or the first
// column of a CSV whose header may name an "email" or "account_id" column.
// Blank lines and "#" comments are skipped, duplicates dropped.
func parseInviteList(text string) ([]string, error) {
	r := csv.NewReader(strings.NewReader(text))
	r.FieldsPerRecord = -1
	r.Comment = '#'
	r.TrimLeadingSpace = true
	r.LazyQuotes = true
	col := 0
	var out []string
	seen := map[string]bool{}
	for line := 0; ; line++ {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line+1, err)
		}
		if line == 0 {
			if i := headerColumn(rec); i >= 0 {
				col = i
				continue
			}
		}
		if col >= len(rec) {
			continue
		}
		v := strings.TrimSpace(rec[col])
		if v == "" || seen[strings.ToLower(v)] {
			continue
		}
		if len(out) == maxInvites {
			return nil, fmt.Errorf("more than %d accounts in one request", maxInvites)
		}
		seen[strings.ToLower(v)] = true
		out = append(out, v)
	}
	return out, nil
}

// headerColumn is the index of the "email" or "account_id" column of a
// header line; -1 when rec is not a header.
func headerColumn(rec []string) int {
	for _, want := range []string{"account_id", "email"} {
		if i := slices.IndexFunc(rec, func(s string) bool { return strings.EqualFold(strings.TrimSpace(s), want) }); i >= 0 {
			return i
		}
	}
	return -1
}

var onboardingTmpl = webui.Parse("onboarding", signoutForm+`{{define "body"}}{{template "signout" .}}
<h1>Onboarding</h1>
{{if not .On}}<div class="notice" id="not-configured"><p>Onboarding is not configured, so no consent invitation can be made.</p>
<p>Add an <code>onboarding</code> block to <code>config.json</code> (the public address of the consent pages and the OAuth app) and reload: see <code>docs/config.md</code>, “onboarding”.</p></div>
{{else}}
{{if .Error}}<p class="notice bad" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="/onboarding" enctype="multipart/form-data">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<label for="accounts">Accounts to invite (email or account_id, one per line)</label>
<textarea id="accounts" name="accounts" rows="6" cols="50"></textarea>
<label for="csv">Or a CSV file (first column, or the column headed email or account_id)</label>
<input id="csv" name="csv" type="file" accept=".csv,text/csv,text/plain">
<p class="muted">The invitation links are secret: they are handed over once, as a CSV download, and never shown here.</p>
<button type="submit" id="create">Create invitations</button>
</form>
<h2>Invitations</h2>
{{if .List}}<div class="table-wrap"><table id="invitations">
<thead><tr><th scope="col">Account</th><th scope="col">State</th><th scope="col">Reason</th><th scope="col">Created</th><th scope="col">Updated</th><th scope="col">Expires</th></tr></thead>
<tbody>{{range .List}}<tr><th scope="row">{{.Email}}<div class="muted">{{.AccountID}}</div></th><td>{{.State}}</td><td>{{.Reason}}</td><td>{{when .CreatedAt}}</td><td>{{when .UpdatedAt}}</td><td>{{when .ExpiresAt}}</td></tr>
{{end}}</tbody></table></div>{{else}}<p class="muted">No invitation yet.</p>{{end}}
{{end}}
{{end}}`, funcs)

func (c *Console) renderOnboarding(w http.ResponseWriter, r *http.Request, status int, errText string) {
	body := struct {
		CSRF  string
		On    bool
		Error string
		List  []InvitationView
	}{CSRF: sessionOf(r).csrf, On: c.o.Onboarding != nil, Error: errText}
	if body.On {
		body.List = c.o.Onboarding.Invitations()
		slices.SortStableFunc(body.List, func(a, b InvitationView) int { return b.CreatedAt.Compare(a.CreatedAt) })
	}
	webui.Render(w, c.log, status, onboardingTmpl, webui.Page{Title: "Onboarding", Nav: c.nav("/onboarding"), Body: body})
}

func (c *Console) onboardingPage(w http.ResponseWriter, r *http.Request) {
	c.renderOnboarding(w, r, http.StatusOK, "")
}

// invite creates the invitations of a pasted list or CSV file and answers
// with their links as a CSV download, the only time they are shown.
func (c *Console) invite(w http.ResponseWriter, r *http.Request) {
	if c.o.Onboarding == nil {
		c.renderOnboarding(w, r, http.StatusConflict, "")
		return
	}
	text := r.PostFormValue("accounts")
	if f, _, err := r.FormFile("csv"); err == nil {
		b, err := io.ReadAll(io.LimitReader(f, maxFormBytes))
		f.Close()
		if err == nil {
			text += "\n" + string(b)
		}
	}
	names, err := parseInviteList(text)
	if err == nil && len(names) == 0 {
		err = fmt.Errorf("no account given")
	}
	if err != nil {
		c.renderOnboarding(w, r, http.StatusBadRequest, "Nothing created: "+err.Error())
		return
	}
	var problems []string
	var buf bytes.Buffer
	out := csv.NewWriter(&buf)
	_ = out.Write([]string{"account_id", "email", "expires_at", "link"})
	for _, n := range names {
		a := c.b.Registry().Find(n)
		if a == nil {
			problems = append(problems, n+": no such account")
			continue
		}
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		v, link, err := c.o.Onboarding.Invite(ctx, a.Cfg.ID, c.o.InviteTTL)
		cancel()
		if err != nil {
			problems = append(problems, n+": "+err.Error())
			continue
		}
		_ = out.Write([]string{v.AccountID, v.Email, v.ExpiresAt.UTC().Format(time.RFC3339), link.Reveal()})
	}
	if len(problems) == len(names) {
		c.renderOnboarding(w, r, http.StatusBadRequest, "Nothing created: "+strings.Join(problems, "; "))
		return
	}
	out.Flush()
	c.log.Info("console: invitations created", "count", len(names)-len(problems), "failed", len(problems))
	for _, p := range problems {
		_ = out.Write([]string{"", "", "", "not created: " + p})
	}
	out.Flush()
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="invitations-`+c.o.Now().UTC().Format("20060102-150405")+`.csv"`)
	h.Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}

var clusterTmpl = webui.Parse("cluster", signoutForm+`{{define "body"}}{{template "signout" .}}
<h1>Cluster</h1>
<p>Shared store: <span id="store">{{.Store}}</span></p>
<div class="table-wrap"><table>
<thead><tr><th scope="col">Proxy</th><th scope="col">Address</th><th scope="col" class="num">Upstream leases</th><th scope="col">Last seen</th></tr></thead>
<tbody>{{range .Proxies}}<tr><th scope="row">{{.ID}}</th><td>{{.Addr}}</td><td class="num">{{.Leases}}</td><td>{{when .LastSeen}}</td></tr>
{{end}}</tbody></table></div>
{{end}}`, funcs)

func (c *Console) clusterPage(w http.ResponseWriter, r *http.Request) {
	body := struct {
		CSRF    string
		Store   string
		Proxies []ProxyView
	}{sessionOf(r).csrf, c.o.Cluster.StoreState(), c.o.Cluster.Proxies()}
	webui.Render(w, c.log, http.StatusOK, clusterTmpl, webui.Page{Title: "Cluster", Nav: c.nav("/cluster"), Body: body})
}
