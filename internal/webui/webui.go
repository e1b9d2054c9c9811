// Package webui holds what every page the proxy serves shares: the
// security headers (a strict Content-Security-Policy, no framing, no
// referrer, no caching of pages), the embedded style sheet and the page
// layout, rendered with html/template so that every value is escaped.
//
// The admin console (admin listener) and the onboarding pages (their own
// public listener) both build on it. No front-end library: the pages are
// rendered on the server and a few lines of script of our own, served from
// here (never inline, so the policy can forbid inline script), update them
// live. Nothing is fetched from another origin, so the binary serves its
// pages offline and needs no Node.js step to build.
package webui

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
)

//go:embed assets
var assetFS embed.FS

// ContentSecurityPolicy allows the page's own style sheet, script and
// images, same-origin fetches (polling, server-sent events) and form
// posts, and nothing else: no inline script or style, no other origin, no
// plugins, no framing.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; connect-src 'self'; form-action 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'"

// Secure sets the headers every response of a web listener carries.
func Secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, AssetPrefix) {
			// Pages carry per-session values (CSRF tokens, account
			// states): never kept by a cache or the back button.
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// AssetPrefix is where Assets is mounted.
const AssetPrefix = "/assets/"

// Assets serves the embedded style sheet and scripts under AssetPrefix.
func Assets() http.Handler {
	sub, err := fs.Sub(assetFS, "assets")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	files := http.StripPrefix(AssetPrefix, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // no directory listings
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

// Page is what the layout needs besides the page's own body.
type Page struct {
	Title string
	// Nav lists the navigation links; empty for the onboarding pages.
	Nav []NavLink
	// Scripts are asset names (under AssetPrefix) loaded at the end.
	Scripts []string
	// Body is the page's own data, for its "body" template.
	Body any
}

// NavLink is one entry of the navigation bar.
type NavLink struct {
	Href, Label string
	Current     bool
}

// layout is the document around every page; a page template defines
// "body" (and may define "head").
const layout = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>{{.Title}} · xoauth2-proxy</title>
<link rel="stylesheet" href="/assets/style.css">
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
{{if .Nav}}<header><nav aria-label="Main"><ul>
{{range .Nav}}<li><a href="{{.Href}}"{{if .Current}} aria-current="page"{{end}}>{{.Label}}</a></li>
{{end}}</ul></nav></header>{{end}}
<main id="main">
{{template "body" .Body}}
</main>
{{range .Scripts}}<script src="/assets/{{.}}" defer></script>
{{end}}</body>
</html>
`

// Parse returns the template of one page: the layout with the page's
// "body" definition (text), and funcs for it.
func Parse(name, text string, funcs template.FuncMap) *template.Template {
	t := template.New(name).Funcs(funcs)
	template.Must(t.Parse(layout))
	return template.Must(t.Parse(text))
}

// Render executes t into a buffer first, so that a template error becomes
// a 500 rather than half a page, and writes it with status.
func Render(w http.ResponseWriter, log *slog.Logger, status int, t *template.Template, p Page) {
	var buf bytes.Buffer
	if err := t.Execute(&buf, p); err != nil {
		if log != nil {
			log.Error("render page", "page", t.Name(), "err", err)
		}
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
