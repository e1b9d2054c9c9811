package console

import "github.com/xoauth2-proxy/xoauth2-proxy/internal/webui"

var accountsTmpl = webui.Parse("accounts", signoutForm+`{{define "body"}}{{template "signout" .}}
<h1>Accounts</h1>
<form method="get" action="/accounts" class="filters" role="search">
<div><label for="q">Search email or account_id</label><input id="q" name="q" type="search" value="{{.Q.Q}}" maxlength="200"></div>
<div><label for="provider">Provider</label><select id="provider" name="provider"><option value="">any</option>
{{range .Res.Providers}}<option value="{{.}}"{{if eq . $.Q.Provider}} selected{{end}}>{{.}}</option>{{end}}</select></div>
<div><label for="state">State</label><select id="state" name="state"><option value="">any</option>
{{range .States}}<option value="{{.}}"{{if eq . $.Q.State}} selected{{end}}>{{words .}}</option>{{end}}</select></div>
<div><label for="sort">Sort by</label><select id="sort" name="sort">
{{range .Sorts}}<option value="{{.}}"{{if eq . $.Q.Sort}} selected{{end}}>{{.}}</option>{{end}}</select></div>
<div><label for="dir">Order</label><select id="dir" name="dir"><option value="asc">ascending</option><option value="desc"{{if .Q.Desc}} selected{{end}}>descending</option></select></div>
<div><label for="per">Rows</label><select id="per" name="per">
{{range .Pers}}<option value="{{.}}"{{if eq . $.Q.Per}} selected{{end}}>{{.}}</option>{{end}}</select></div>
<div><button type="submit">Show</button></div>
</form>
<p id="count" role="status">{{.Res.Matched}} of {{.Res.Total}} accounts; page {{.Q.Page}} of {{.Res.Pages}}.</p>
<div class="table-wrap"><table id="accounts">
<caption class="sr-only">Accounts, sorted by {{.Q.Sort}}</caption>
<thead><tr>
{{range .Cols}}<th scope="col"{{if .Sorted}} aria-sort="{{.Dir}}"{{end}}>{{if .Href}}<a href="{{.Href}}">{{.Label}}</a>{{else}}{{.Label}}{{end}}</th>{{end}}
</tr></thead>
<tbody>
{{range .Res.Rows}}<tr>
<th scope="row"><a href="/accounts/{{.ID}}">{{.Email}}</a><div class="muted">{{.ID}}</div></th>
<td>{{.Provider}}</td>
<td><span class="state st-{{.State}}">{{words .State}}</span></td>
<td class="num">{{.Sessions.Busy}} / {{.Sessions.Cap}}<div class="muted">{{.Sessions.Open}} open</div></td>
<td>{{if .Day.Limit}}<meter min="0" max="{{.Day.Limit}}" value="{{.Day.Used}}" aria-label="{{budgetWords .Day.Name}} of {{.Email}}">{{.Day.Used}}</meter> {{.Day.Used}} / {{.Day.Limit}}{{else}}<span class="muted">no budget</span>{{end}}</td>
<td>{{if .LastError}}{{.LastError}}<div class="muted">{{when .LastErrorAt}}</div>{{else}}<span class="muted">—</span>{{end}}</td>
</tr>
{{else}}<tr><td colspan="6">No account matches.</td></tr>
{{end}}</tbody></table></div>
<nav aria-label="Pages" class="pages">
{{if .Prev}}<a href="{{.Prev}}" rel="prev">← previous</a>{{end}}
{{if .Next}}<a href="{{.Next}}" rel="next">next →</a>{{end}}
</nav>
{{end}}`, funcs)

var accountTmpl = webui.Parse("account", signoutForm+`{{define "body"}}{{template "signout" .}}
<p><a href="/accounts">← Accounts</a></p>
<h1>{{.R.Email}}</h1>
{{if .Flash}}<p class="notice {{if .FlashBad}}bad{{else}}ok{{end}}" role="status">{{.Flash}}</p>{{end}}
<dl class="facts">
<dt>account_id</dt><dd>{{.R.ID}}</dd>
<dt>Provider</dt><dd>{{.R.Provider}}</dd>
<dt>State</dt><dd><span class="state st-{{.R.State}}" id="state">{{words .R.State}}</span></dd>
</dl>
<section aria-labelledby="h-token"><h2 id="h-token">Token</h2>
<dl class="facts">
<dt>State</dt><dd>{{.R.Token.State}}</dd>
<dt>Last refresh</dt><dd>{{when .R.Token.LastRefresh}}</dd>
<dt>Next refresh</dt><dd>{{when .R.Token.NextRefresh}}</dd>
<dt>Expires</dt><dd>{{when .R.Token.Expiry}}</dd>
<dt>Failures in a row</dt><dd>{{.R.Token.Failures}}</dd>
<dt>Last error</dt><dd>{{if .R.Token.LastError}}{{.R.Token.LastError}}{{else}}—{{end}}</dd>
</dl>
{{if .Refreshes}}<div class="table-wrap"><table class="narrow" id="refreshes">
<caption>Last token requests</caption>
<thead><tr><th scope="col">When</th><th scope="col">Outcome</th></tr></thead>
<tbody>{{range .Refreshes}}<tr><td>{{when .At}}</td><td>{{if .OK}}<span class="ok">ok</span>{{else}}<span class="bad">failed</span>: {{.Detail}}{{end}}</td></tr>
{{end}}</tbody></table></div>{{end}}</section>
<section aria-labelledby="h-sessions"><h2 id="h-sessions">Sessions</h2>
<p>{{.R.Sessions.Busy}} in use, {{.R.Sessions.Open}} open, cap {{.R.Sessions.Cap}}; {{.R.Sessions.Opened}} opened since start; {{.R.InFlight}} messages in flight.</p>
<p>Messages: {{.Sent}} sent, {{.Failed}} failed, {{.Ambiguous}} ambiguous.</p></section>
<section aria-labelledby="h-budgets"><h2 id="h-budgets">Budgets</h2>
{{if .R.HasBudget}}{{if .R.Budget.Budgets}}<div class="table-wrap"><table class="narrow">
<thead><tr><th scope="col">Budget</th><th scope="col">Use</th><th scope="col">Resets</th></tr></thead>
<tbody>{{range .R.Budget.Budgets}}<tr><th scope="row">{{budgetWords .Name}}</th>
<td><meter min="0" max="{{.Limit}}" value="{{.Used}}" aria-label="{{budgetWords .Name}}">{{.Used}}</meter> {{.Used}} / {{.Limit}}</td>
<td>{{if .ResetAt.IsZero}}—{{else}}{{when .ResetAt}}{{end}}</td></tr>
{{end}}</tbody></table></div>{{else}}<p class="muted">No budget configured.</p>{{end}}
{{if .Cooling}}<p class="notice bad" id="cooldown">Cooling down until {{when .R.Budget.CoolingUntil}}: the provider said “{{.R.Budget.CoolingCause}}”.</p>
{{else}}<p id="cooldown">Not cooling down.</p>{{end}}
{{else}}<p class="muted">Budgets are off (dry-run).</p>{{end}}</section>
<section aria-labelledby="h-replies" id="replies"><h2 id="h-replies">Last upstream replies</h2>
{{if .Replies}}<div class="table-wrap"><table>
<thead><tr><th scope="col">When</th><th scope="col">Reply</th></tr></thead>
<tbody>{{range .Replies}}<tr><td>{{when .At}}</td><td><code>{{.Text}}</code></td></tr>
{{end}}</tbody></table></div>{{else}}<p class="muted">None since start.</p>{{end}}</section>
<section aria-labelledby="h-actions"><h2 id="h-actions">Actions</h2>
<div class="actions">
{{if .R.Disabled}}<form method="post" action="/accounts/{{.R.ID}}/enable"><input type="hidden" name="csrf" value="{{.CSRF}}">
<button type="submit" id="enable">Enable</button></form>
{{else}}<form method="post" action="/accounts/{{.R.ID}}/disable"><input type="hidden" name="csrf" value="{{.CSRF}}">
<div class="confirm"><input type="checkbox" id="confirm-disable" name="confirm" value="yes" required>
<label for="confirm-disable">Yes, stop this account's mail</label></div>
<button type="submit" class="danger" id="disable">Disable</button></form>{{end}}
<form method="post" action="/accounts/{{.R.ID}}/refresh"><input type="hidden" name="csrf" value="{{.CSRF}}">
<button type="submit" id="refresh">Refresh token now</button></form>
<form method="post" action="/accounts/{{.R.ID}}/test"><input type="hidden" name="csrf" value="{{.CSRF}}">
<label for="rcpt">Send a test message to</label><input id="rcpt" name="rcpt" type="email" required maxlength="254" autocomplete="email">
<button type="submit" id="send-test">Send</button></form>
{{if .Cooling}}<form method="post" action="/accounts/{{.R.ID}}/lift"><input type="hidden" name="csrf" value="{{.CSRF}}">
<button type="submit" id="lift">Lift the cool-down</button></form>{{end}}
{{if .Onboarding}}<form method="post" action="/onboarding"><input type="hidden" name="csrf" value="{{.CSRF}}">
<input type="hidden" name="accounts" value="{{.R.ID}}">
<button type="submit" id="invite">Create a consent invitation (download)</button></form>{{end}}
</div></section>
{{end}}`, funcs)
