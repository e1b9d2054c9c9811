package console

import (
	"fmt"
	"html/template"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/traffic"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/webui"
)

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"words":       stateWords,
	"budgetWords": budgetWords,
}

// stateWords is a state for people.
func stateWords(s string) string {
	switch s {
	case StateNeedsConsent:
		return "needs consent"
	case StateCoolingDown:
		return "cooling down"
	case "budget_used":
		return "budget used"
	}
	return s
}

// signoutForm is in every page of a signed-in operator; body data has a
// CSRF field.
const signoutForm = `{{define "signout"}}<form class="signout" method="post" action="/signout">
<input type="hidden" name="csrf" value="{{.CSRF}}"><button type="submit">Sign out</button></form>{{end}}`

var signinTmpl = webui.Parse("signin", `{{define "body"}}
<h1>Sign in</h1>
{{if .Error}}<p class="notice bad" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="/signin" class="signin">
<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus size="40">
<p class="muted">The token of <code>--admin-token-file</code> or <code>XOAUTH2_PROXY_ADMIN_TOKEN</code>.</p>
<button type="submit">Sign in</button>
</form>
{{end}}`, funcs)

var overviewTmpl = webui.Parse("overview", signoutForm+`{{define "body"}}{{template "signout" .}}
<h1>Overview</h1>
<section aria-labelledby="h-msgs">
<h2 id="h-msgs">Messages since start</h2>
<div class="cards" aria-live="polite" aria-atomic="false">
<div class="card"><div>Accepted</div><div class="value" id="live-accepted">{{.Ov.Totals.Accepted}}</div></div>
<div class="card"><div>Deferred (4xx)</div><div class="value" id="live-deferred">{{.Ov.Totals.Deferred}}</div></div>
<div class="card"><div>Rejected (5xx)</div><div class="value" id="live-rejected">{{.Ov.Totals.Rejected}}</div></div>
<div class="card"><div>Upstream sessions in use</div><div class="value" id="live-sessions-busy">{{.Ov.SessionsBusy}}</div><div class="muted"><span id="live-sessions-open">{{.Ov.SessionsOpen}}</span> open</div></div>
<div class="card"><div>Messages in flight</div><div class="value" id="live-inflight">{{.Ov.InFlight}}</div></div>
</div>
</section>
<section aria-labelledby="h-chart">
<h2 id="h-chart">Per minute, last hour</h2>
<figure class="chart">
<svg id="chart" role="img" aria-labelledby="chart-title" viewBox="0 0 {{.Chart.Width}} {{.Chart.Height}}" preserveAspectRatio="none">
<title id="chart-title">Last hour: {{.Ov.LastHour.Accepted}} accepted, {{.Ov.LastHour.Deferred}} deferred, {{.Ov.LastHour.Rejected}} rejected</title>
{{range .Chart.Bars}}<rect x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}" class="{{.Class}}"><title>{{.Label}}</title></rect>
{{end}}</svg>
<figcaption><span class="key s-accepted">■</span> accepted <span class="key s-deferred">■</span> deferred <span class="key s-rejected">■</span> rejected; the last hour: <span id="live-hour">{{.Ov.LastHour.Accepted}} accepted, {{.Ov.LastHour.Deferred}} deferred, {{.Ov.LastHour.Rejected}} rejected</span></figcaption>
</figure>
</section>
<section aria-labelledby="h-states">
<h2 id="h-states">Accounts by state ({{.Ov.Accounts}})</h2>
<div class="table-wrap"><table class="narrow">
<thead><tr><th scope="col">State</th><th scope="col" class="num">Accounts</th></tr></thead>
<tbody>{{range .States}}<tr><th scope="row"><a href="/accounts?state={{.Name}}">{{words .Name}}</a></th><td class="num" id="live-state-{{.Name}}">{{.Count}}</td></tr>
{{end}}</tbody></table></div>
</section>
<section aria-labelledby="h-att">
<h2 id="h-att">Needing attention (<span id="live-attention">{{.Ov.AttentionTotal}}</span>)</h2>
{{if .Ov.Attention}}<div class="table-wrap"><table>
<thead><tr><th scope="col">Account</th><th scope="col">State</th><th scope="col">Why</th></tr></thead>
<tbody>{{range .Ov.Attention}}<tr><th scope="row"><a href="/accounts/{{.AccountID}}">{{.Email}}</a></th><td>{{words .State}}</td><td>{{.Reason}}</td></tr>
{{end}}</tbody></table></div>{{if gt .Ov.AttentionTotal (len .Ov.Attention)}}<p class="muted">The first {{len .Ov.Attention}} shown.</p>{{end}}
{{else}}<p class="ok">No account needs attention.</p>{{end}}
</section>
<p class="muted">Updated <span id="live-at">{{when .Ov.At}}</span>; the numbers refresh every few seconds.</p>
{{end}}`, funcs)

// chart is the overview's bar chart, drawn on the server as SVG
// attributes (no style attribute: the policy forbids inline style).
type chart struct {
	Width, Height int
	Bars          []bar
}

type bar struct {
	X, Y, W, H int
	Class      string
	Label      string
}

// Chart geometry: one 10-unit column per minute.
const (
	chartColumn = 10
	chartHeight = 120
)

func chartOf(ms []traffic.Minute) chart {
	c := chart{Width: chartColumn * len(ms), Height: chartHeight}
	top := int64(1)
	for _, m := range ms {
		top = max(top, m.Accepted+m.Deferred+m.Rejected)
	}
	for i, m := range ms {
		y := chartHeight
		for _, s := range []struct {
			n     int64
			class string
		}{{m.Accepted, "s-accepted"}, {m.Deferred, "s-deferred"}, {m.Rejected, "s-rejected"}} {
			if s.n == 0 {
				continue
			}
			h := max(1, int(s.n*chartHeight/top))
			y -= h
			c.Bars = append(c.Bars, bar{X: i * chartColumn, Y: y, W: chartColumn - 2, H: h, Class: s.class,
				Label: fmt.Sprintf("%s: %d %s", m.Start.Format("15:04"), s.n, s.class[2:])})
		}
	}
	return c
}
