package webui

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestSecure_headers(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.Handle(AssetPrefix, Assets())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "page") })
	h := Secure(mux)
	for _, tc := range []struct {
		path      string
		status    int
		noStore   bool
		bodyMatch string
	}{
		{"/", 200, true, "page"},
		{"/assets/style.css", 200, false, "--accent"},
		{"/assets/", 404, false, ""},
		{"/assets/missing.js", 404, false, ""},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
		if rec.Code != tc.status {
			t.Errorf("%s: status %d, want %d", tc.path, rec.Code, tc.status)
		}
		if got := rec.Header().Get("Content-Security-Policy"); got != ContentSecurityPolicy {
			t.Errorf("%s: CSP %q", tc.path, got)
		}
		if got := rec.Header().Get("X-Frame-Options"); got != "DENY" {
			t.Errorf("%s: X-Frame-Options %q", tc.path, got)
		}
		if got := rec.Header().Get("Cache-Control") == "no-store"; got != tc.noStore {
			t.Errorf("%s: no-store %v, want %v", tc.path, got, tc.noStore)
		}
		if !strings.Contains(rec.Body.String(), tc.bodyMatch) {
			t.Errorf("%s: body lacks %q", tc.path, tc.bodyMatch)
		}
	}
	if !strings.Contains(ContentSecurityPolicy, "script-src 'self'") || strings.Contains(ContentSecurityPolicy, "unsafe-inline") {
		t.Errorf("policy allows inline script: %s", ContentSecurityPolicy)
	}
}

func TestRender_escapesAndFailsWhole(t *testing.T) {
	t.Parallel()
	page := Parse("p", `{{define "body"}}<p>{{.}}</p>{{end}}`, nil)
	rec := httptest.NewRecorder()
	Render(rec, nil, http.StatusOK, page, Page{Title: "T<", Nav: []NavLink{{Href: "/", Label: "Home", Current: true}}, Body: "<script>x</script>"})
	body := rec.Body.String()
	if strings.Contains(body, "<script>x") || !strings.Contains(body, "&lt;script&gt;x") {
		t.Errorf("body not escaped: %s", body)
	}
	if !strings.Contains(body, `aria-current="page"`) || !strings.Contains(body, "<title>T&lt; · xoauth2-proxy</title>") {
		t.Errorf("layout missing: %s", body)
	}
	bad := Parse("bad", `{{define "body"}}<p>{{.Missing.Field}}</p>{{end}}`, nil)
	rec = httptest.NewRecorder()
	Render(rec, nil, http.StatusOK, bad, Page{Body: struct{ Missing *struct{ Field string } }{}})
	if rec.Code != http.StatusInternalServerError || strings.Contains(rec.Body.String(), "<html") {
		t.Errorf("a failed template should give a bare 500, got %d %q", rec.Code, rec.Body.String())
	}
}
