package console_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/admin"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/console"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// BenchmarkAccountsPage10k is the server time of one accounts page of a
// proxy with 10,000 accounts (live state of each read: token, sessions,
// budgets): the first page, a search, a state filter, and a sort by
// budget use, each rendered in full. The target is under 300 ms.
func BenchmarkAccountsPage10k(b *testing.B) {
	p := startProxy(b, proxyOptions{n: 10_000})
	h := console.New(console.Options{API: admin.New(p.svc, admin.Options{Token: secret.New(adminToken)}), Backend: p.svc})
	req := httptest.NewRequest("POST", "/signin", strings.NewReader(url.Values{"token": {adminToken}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	cookies := rec.Result().Cookies()
	if rec.Code != http.StatusSeeOther || len(cookies) != 1 {
		b.Fatalf("sign-in: %d", rec.Code)
	}
	for _, bc := range []struct{ name, query, want string }{
		{"first page", "", "10000 of 10000 accounts"},
		{"search", "?q=sender04242", "1 of 10000 accounts"},
		{"state filter", "?state=ok&page=100", "10000 of 10000 accounts; page 100"},
		{"sort by budget", "?sort=budget&dir=desc&per=200", "10000 of 10000 accounts"},
		{"overview", "/", "Needing attention"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			path := "/accounts" + bc.query
			if strings.HasPrefix(bc.query, "/") {
				path = bc.query
			}
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest("GET", path, nil)
				req.AddCookie(cookies[0])
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != 200 || !strings.Contains(rec.Body.String(), bc.want) {
					b.Fatalf("%s: %d, no %q", path, rec.Code, bc.want)
				}
			}
		})
	}
}
