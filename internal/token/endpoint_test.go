package token_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
)

// clock is a settable clock for Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// endpoint is a fake token endpoint on loopback that records each request's
// form and answers with handle, which gets the 1-based request number.
type endpoint struct {
	*httptest.Server
	mu     sync.Mutex
	forms  []url.Values
	header []http.Header
}

func newEndpoint(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, n int)) *endpoint {
	t.Helper()
	e := &endpoint{}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		e.mu.Lock()
		e.forms = append(e.forms, r.PostForm)
		e.header = append(e.header, r.Header.Clone())
		n := len(e.forms)
		e.mu.Unlock()
		handle(w, r, n)
	}))
	t.Cleanup(e.Close)
	return e
}

// count is the number of requests received so far.
func (e *endpoint) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.forms)
}

// form returns the form of request i (0-based).
func (e *endpoint) form(t *testing.T, i int) url.Values {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if i >= len(e.forms) {
		t.Fatalf("request %d not received; got %d", i+1, len(e.forms))
	}
	return e.forms[i]
}

// reply writes a JSON body with status.
func reply(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprint(w, body)
}

// okToken answers every request with access token "at-<n>", valid 3600 s.
func okToken(w http.ResponseWriter, _ *http.Request, n int) {
	reply(w, http.StatusOK, fmt.Sprintf(`{"access_token":"at-%d","expires_in":3600,"token_type":"Bearer"}`, n))
}

// baseConfig is a valid Config for e with clock c; tests adjust fields.
func baseConfig(e *endpoint, c *clock) token.Config {
	return token.Config{
		Account:      "gmail_1",
		TokenURL:     e.URL,
		ClientID:     "client-1.apps.example",
		ClientSecret: secret.New("cs-1"),
		RefreshToken: secret.New("rt-1"),
		Now:          c.Now,
	}
}

func mustSource(t *testing.T, cfg token.Config) *token.Source {
	t.Helper()
	s, err := token.NewSource(cfg)
	if err != nil {
		t.Fatalf("NewSource: %v", err)
	}
	return s
}

func secretOf(s string) secret.String { return secret.New(s) }

func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithCancel(t.Context())
}

// fixed is a Refresher's source list that never changes.
func fixed(list ...*token.Source) func() []*token.Source {
	return func() []*token.Source { return list }
}
