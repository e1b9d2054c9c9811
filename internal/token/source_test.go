package token_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
)

func TestToken_parsesSuccess(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		body       string
		wantAccess string
		wantLife   time.Duration
	}{
		{"number expires_in", `{"access_token":"ya29.a","expires_in":3599,"token_type":"Bearer"}`, "ya29.a", 3599 * time.Second},
		{"string expires_in", `{"access_token":"EwB.b","expires_in":"4575","token_type":"Bearer"}`, "EwB.b", 4575 * time.Second},
		{"missing expires_in", `{"access_token":"c","token_type":"Bearer"}`, "c", 3600 * time.Second},
		{"null expires_in", `{"access_token":"d","expires_in":null}`, "d", 3600 * time.Second},
		{"fractional expires_in", `{"access_token":"e","expires_in":90.5}`, "e", 90500 * time.Millisecond},
		{"huge expires_in is capped", `{"access_token":"f","expires_in":1e300}`, "f", 24 * time.Hour},
		{"extra fields ignored", `{"access_token":"g","expires_in":3599,"scope":"https://mail.google.com/","id_token":"x","ext_expires_in":3599}`, "g", 3599 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newClock()
			e := newEndpoint(t, func(w http.ResponseWriter, _ *http.Request, _ int) { reply(w, 200, tc.body) })
			s := mustSource(t, baseConfig(e, c))
			tok, err := s.Token(t.Context())
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			if got := tok.Access.Reveal(); got != tc.wantAccess {
				t.Errorf("Access = %q, want %q", got, tc.wantAccess)
			}
			if want := c.Now().Add(tc.wantLife); !tok.Expiry.Equal(want) {
				t.Errorf("Expiry = %v, want %v", tok.Expiry, want)
			}
		})
	}
}

func TestToken_sendsForm(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		secret     string
		scope      string
		wantSecret bool
		wantScope  bool
	}{
		{"google: secret, no scope", "cs-google", "", true, false},
		{"microsoft public client: scope, no secret", "", "https://outlook.office.com/SMTP.Send offline_access", false, true},
		{"microsoft confidential: both", "cs-ms", "https://outlook.office.com/SMTP.Send offline_access", true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEndpoint(t, okToken)
			cfg := baseConfig(e, newClock())
			cfg.ClientSecret = secret.New(tc.secret)
			cfg.Scope = tc.scope
			if _, err := mustSource(t, cfg).Token(t.Context()); err != nil {
				t.Fatalf("Token: %v", err)
			}
			f := e.form(t, 0)
			for k, want := range map[string]string{
				"grant_type":    "refresh_token",
				"refresh_token": "rt-1",
				"client_id":     "client-1.apps.example",
			} {
				if got := f.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if got := f.Has("client_secret"); got != tc.wantSecret {
				t.Errorf("client_secret present = %v, want %v", got, tc.wantSecret)
			} else if got && f.Get("client_secret") != tc.secret {
				t.Errorf("client_secret = %q, want %q", f.Get("client_secret"), tc.secret)
			}
			if got := f.Has("scope"); got != tc.wantScope {
				t.Errorf("scope present = %v, want %v", got, tc.wantScope)
			} else if got && f.Get("scope") != tc.scope {
				t.Errorf("scope = %q, want %q", f.Get("scope"), tc.scope)
			}
			e.mu.Lock()
			ct := e.header[0].Get("Content-Type")
			e.mu.Unlock()
			if ct != "application/x-www-form-urlencoded" {
				t.Errorf("Content-Type = %q", ct)
			}
		})
	}
}

func TestToken_cachedUntilExpiryMinusBuffer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		buffer    time.Duration
		expiresIn int
		refreshAt time.Duration // after the first request
	}{
		{"default buffer 600s", 0, 3600, 3000 * time.Second},
		{"buffer 300s", 300 * time.Second, 3600, 3300 * time.Second},
		{"short token: half its lifetime", 0, 120, 60 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newClock()
			e := newEndpoint(t, func(w http.ResponseWriter, _ *http.Request, n int) {
				reply(w, 200, fmt.Sprintf(`{"access_token":"at-%d","expires_in":%d}`, n, tc.expiresIn))
			})
			cfg := baseConfig(e, c)
			cfg.RefreshBuffer = tc.buffer
			s := mustSource(t, cfg)
			if _, ok := s.Cached(); ok {
				t.Fatal("Cached before any request reports a token")
			}
			first, err := s.Token(t.Context())
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			c.Advance(tc.refreshAt - time.Second)
			if got, ok := s.Cached(); !ok || got.Access.Reveal() != "at-1" {
				t.Errorf("Cached 1s before refresh time = %v, %v; want at-1", got.Access.Reveal(), ok)
			}
			again, err := s.Token(t.Context())
			if err != nil || again != first || e.count() != 1 {
				t.Errorf("Token 1s before refresh time: %q %v, %d requests; want cached at-1, 1 request", again.Access.Reveal(), err, e.count())
			}
			c.Advance(time.Second)
			if _, ok := s.Cached(); ok {
				t.Error("Cached at refresh time still reports the token")
			}
			fresh, err := s.Token(t.Context())
			if err != nil || fresh.Access.Reveal() != "at-2" || e.count() != 2 {
				t.Errorf("Token at refresh time: %q %v, %d requests; want at-2, 2 requests", fresh.Access.Reveal(), err, e.count())
			}
		})
	}
}

func TestToken_concurrentCallersShareOneRequest(t *testing.T) {
	t.Parallel()
	const callers = 200
	c := newClock()
	release := make(chan struct{})
	e := newEndpoint(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 2 {
			<-release // hold the refresh so that callers pile up behind it
		}
		okToken(w, r, n)
	})
	s := mustSource(t, baseConfig(e, c))
	if _, err := s.Token(t.Context()); err != nil {
		t.Fatalf("first Token: %v", err)
	}
	c.Advance(time.Hour) // the cached token is now expired

	var wg sync.WaitGroup
	var started atomic.Int32
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			started.Add(1)
			tok, err := s.Token(t.Context())
			if err == nil && tok.Access.Reveal() != "at-2" {
				err = fmt.Errorf("got %q, want at-2", tok.Access.Reveal())
			}
			errs <- err
		})
	}
	waitFor(t, func() bool { return e.count() == 2 && started.Load() == callers })
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := e.count(); got != 2 {
		t.Errorf("%d requests, want 2 (one initial, one shared refresh)", got)
	}
}

func TestToken_cancelledCallerStopsWaitingOthersGetToken(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{})
	release := make(chan struct{})
	e := newEndpoint(t, func(w http.ResponseWriter, r *http.Request, n int) {
		close(arrived)
		<-release
		okToken(w, r, n)
	})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	s := mustSource(t, baseConfig(e, newClock()))

	// The cancelled caller is the one that started the request.
	ctx, cancel := context.WithCancel(t.Context())
	leader := make(chan error, 1)
	go func() {
		_, err := s.Token(ctx)
		leader <- err
	}()
	<-arrived

	const others = 10
	var wg sync.WaitGroup
	results := make(chan error, others)
	for range others {
		wg.Go(func() {
			tok, err := s.Token(t.Context())
			if err == nil && tok.Access.Reveal() != "at-1" {
				err = fmt.Errorf("got %q, want at-1", tok.Access.Reveal())
			}
			results <- err
		})
	}

	cancel()
	if err := <-leader; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v, want context.Canceled", err)
	}
	// The request is still held by the endpoint: the leader did not wait for it.
	close(release)
	wg.Wait()
	close(results)
	for err := range results {
		if err != nil {
			t.Errorf("other caller: %v", err)
		}
	}
	if n := e.count(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
	if tok, ok := s.Cached(); !ok || tok.Access.Reveal() != "at-1" {
		t.Error("token of the shared request was not cached")
	}
}

func TestToken_doneContextStartsNoRequest(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t, okToken)
	s := mustSource(t, baseConfig(e, newClock()))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Token(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Token(done ctx) = %v, want context.Canceled", err)
	}
	if n := e.count(); n != 0 {
		t.Errorf("%d requests, want 0", n)
	}
}

func TestToken_hangingEndpointCutOffAtTimeout(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t, func(_ http.ResponseWriter, r *http.Request, _ int) {
		<-r.Context().Done() // never answers
	})
	cfg := baseConfig(e, newClock())
	cfg.Timeout = 100 * time.Millisecond
	s := mustSource(t, cfg)
	// A caller deadline far beyond Timeout must not extend the request.
	ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
	defer cancel()
	start := time.Now()
	_, err := s.Token(ctx)
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Token took %v with Timeout 100ms", elapsed)
	}
	var te *token.Error
	if !errors.As(err, &te) {
		t.Fatalf("err = %v, want *token.Error", err)
	}
	if te.Status != 0 || te.Final || errors.Is(err, token.ErrFinal) {
		t.Errorf("err = %+v, want status 0, not final", te)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want it to wrap context.DeadlineExceeded", err)
	}
}

func TestToken_rotation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		refreshes   []string // refresh_token in response n; "" for none
		wantSent    []string // refresh_token sent in request n
		wantRotated []string // OnRotate calls
	}{
		{"microsoft rotates every time", []string{"rt-2", "rt-3", "rt-4"}, []string{"rt-1", "rt-2", "rt-3"}, []string{"rt-2", "rt-3", "rt-4"}},
		{"google sends none", []string{"", "", ""}, []string{"rt-1", "rt-1", "rt-1"}, nil},
		{"same token echoed", []string{"rt-1", "rt-1", "rt-1"}, []string{"rt-1", "rt-1", "rt-1"}, nil},
		{"rotates once", []string{"rt-9", "", "rt-9"}, []string{"rt-1", "rt-9", "rt-9"}, []string{"rt-9"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newClock()
			e := newEndpoint(t, func(w http.ResponseWriter, _ *http.Request, n int) {
				rt := ""
				if r := tc.refreshes[n-1]; r != "" {
					rt = fmt.Sprintf(`,"refresh_token":%q`, r)
				}
				reply(w, 200, fmt.Sprintf(`{"access_token":"at-%d","expires_in":3600%s}`, n, rt))
			})
			var mu sync.Mutex
			var rotated []string
			cfg := baseConfig(e, c)
			cfg.OnRotate = func(rt secret.String) {
				mu.Lock()
				defer mu.Unlock()
				rotated = append(rotated, rt.Reveal())
			}
			s := mustSource(t, cfg)
			for i := range tc.refreshes {
				mu.Lock()
				before := len(rotated)
				mu.Unlock()
				if _, err := s.Token(t.Context()); err != nil {
					t.Fatalf("Token %d: %v", i+1, err)
				}
				mu.Lock()
				after := len(rotated)
				mu.Unlock()
				if tc.refreshes[i] != "" && tc.refreshes[i] != tc.wantSent[i] && after != before+1 {
					t.Errorf("request %d rotated but OnRotate was not called before Token returned", i+1)
				}
				c.Advance(time.Hour)
			}
			for i, want := range tc.wantSent {
				if got := e.form(t, i).Get("refresh_token"); got != want {
					t.Errorf("request %d sent refresh_token %q, want %q", i+1, got, want)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if strings.Join(rotated, ",") != strings.Join(tc.wantRotated, ",") {
				t.Errorf("OnRotate calls %q, want %q", rotated, tc.wantRotated)
			}
		})
	}
}

func TestToken_rotationKeptWhenResponseUnusable(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			reply(w, 200, `{"access_token":"at-1","expires_in":"soon","refresh_token":"rt-2"}`)
			return
		}
		okToken(w, r, n)
	})
	var got secret.String
	cfg := baseConfig(e, newClock())
	cfg.OnRotate = func(rt secret.String) { got = rt }
	s := mustSource(t, cfg)
	if _, err := s.Token(t.Context()); err == nil {
		t.Fatal("Token accepted a bad expires_in")
	}
	if got.Reveal() != "rt-2" {
		t.Errorf("OnRotate got %q, want rt-2", got.Reveal())
	}
	if _, err := s.Token(t.Context()); err != nil {
		t.Fatalf("second Token: %v", err)
	}
	if rt := e.form(t, 1).Get("refresh_token"); rt != "rt-2" {
		t.Errorf("second request sent %q, want rt-2", rt)
	}
}

func TestRefresh(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		stale        string
		wantAccess   string
		wantRequests int
	}{
		{"cached token rejected: refresh", "at-1", "at-2", 2},
		{"someone already refreshed: cached", "at-0", "at-1", 1},
		{"empty stale forces", "", "at-2", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEndpoint(t, okToken)
			s := mustSource(t, baseConfig(e, newClock()))
			if _, err := s.Token(t.Context()); err != nil {
				t.Fatalf("Token: %v", err)
			}
			tok, err := s.Refresh(t.Context(), secret.New(tc.stale))
			if err != nil {
				t.Fatalf("Refresh: %v", err)
			}
			if tok.Access.Reveal() != tc.wantAccess || e.count() != tc.wantRequests {
				t.Errorf("Refresh = %q after %d requests, want %q after %d", tok.Access.Reveal(), e.count(), tc.wantAccess, tc.wantRequests)
			}
			if c, ok := s.Cached(); !ok || c.Access.Reveal() != tc.wantAccess {
				t.Errorf("Cached = %q, %v; want %q", c.Access.Reveal(), ok, tc.wantAccess)
			}
		})
	}
}

func TestRefresh_failureDropsRejectedToken(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			okToken(w, r, n)
			return
		}
		reply(w, 503, `{"error":"temporarily_unavailable"}`)
	})
	s := mustSource(t, baseConfig(e, newClock()))
	tok, err := s.Token(t.Context())
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	if _, err := s.Refresh(t.Context(), tok.Access); err == nil {
		t.Fatal("Refresh succeeded against a 503")
	}
	if _, ok := s.Cached(); ok {
		t.Error("the token the upstream rejected is still cached")
	}
}

func TestNewSource_validates(t *testing.T) {
	t.Parallel()
	good := token.Config{
		Account:      "ms_1",
		TokenURL:     "https://login.microsoftonline.com/common/oauth2/v2.0/token",
		ClientID:     "cid",
		RefreshToken: secret.New("rt"),
	}
	tests := []struct {
		name    string
		mutate  func(*token.Config)
		wantErr string
	}{
		{"valid", func(*token.Config) {}, ""},
		{"no client id", func(c *token.Config) { c.ClientID = "" }, "client id"},
		{"no refresh token", func(c *token.Config) { c.RefreshToken = secret.String{} }, "refresh token"},
		{"plain http", func(c *token.Config) { c.TokenURL = "http://login.example.com/token" }, "token url"},
		{"negative buffer", func(c *token.Config) { c.RefreshBuffer = -time.Second }, "refresh buffer"},
		{"negative timeout", func(c *token.Config) { c.Timeout = -time.Second }, "timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := good
			tc.mutate(&cfg)
			_, err := token.NewSource(cfg)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("NewSource: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "ms_1")):
				t.Errorf("NewSource error = %v, want one naming ms_1 and %q", err, tc.wantErr)
			}
		})
	}
}

func TestSource_defaultClientDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.URL.Path == "/elsewhere" {
			okToken(w, r, n)
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	})
	cfg := baseConfig(e, newClock())
	cfg.TokenURL = e.URL + "/token"
	_, err := mustSource(t, cfg).Token(t.Context())
	var te *token.Error
	if !errors.As(err, &te) || te.Status != http.StatusTemporaryRedirect {
		t.Errorf("Token = %v, want *Error with status 307", err)
	}
	if n := e.count(); n != 1 {
		t.Errorf("%d requests, want 1: the redirect must not re-post the refresh token", n)
	}
}

// waitFor polls cond until it holds or the test's deadline nears.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	if d, ok := t.Deadline(); ok && d.Before(deadline) {
		deadline = d.Add(-time.Second)
	}
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(time.Millisecond)
	}
}
