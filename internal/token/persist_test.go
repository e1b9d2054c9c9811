package token_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/tokenstore"
)

// startProvider runs a fake provider for the test.
func startProvider(t *testing.T, opts fakeprovider.Options) *fakeprovider.Provider {
	t.Helper()
	p, err := fakeprovider.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func openStore(t *testing.T, dir string) *tokenstore.Store {
	t.Helper()
	s, err := tokenstore.Open(tokenstore.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// providerConfig is a Source for mailbox at p, as accounts.json would
// configure it.
func providerConfig(p *fakeprovider.Provider, id, rt string, store token.Store, c *clock) token.Config {
	return token.Config{
		Account: id, TokenURL: p.TokenURL(), ClientID: "cid", RefreshToken: secret.New(rt),
		Store: store, Now: c.Now, HTTPClient: &http.Client{Transport: &http.Transport{}},
	}
}

// TestRotation_persistedAndSurvivesRestart: every rotated refresh token is
// on disk before it is used, so a proxy killed at any point restarts with
// the current one. The provider revokes the grant if an old one comes back.
func TestRotation_persistedAndSurvivesRestart(t *testing.T) {
	t.Parallel()
	p := startProvider(t, fakeprovider.Options{RotateRefreshTokens: true})
	p.SetRevokeOnReuse(true)
	p.AddAccount(fakeprovider.Account{Email: "ms@example.com", ClientID: "cid", RefreshToken: "rt-configured"})
	dir, c := t.TempDir(), newClock()

	s1 := mustSource(t, providerConfig(p, "ms_1", "rt-configured", openStore(t, dir), c))
	for i := range 3 {
		if _, err := s1.Refresh(t.Context(), secret.String{}); err != nil {
			t.Fatalf("refresh %d: %v", i+1, err)
		}
		// Read the file as a fresh process would, without any flush.
		onDisk, _ := openStore(t, dir).Get("ms_1")
		if got, want := onDisk.RefreshToken.Reveal(), p.RefreshToken("ms@example.com"); got != want || got == "" {
			t.Fatalf("after refresh %d the file holds %q, the provider %q", i+1, got, want)
		}
	}
	// The process dies here: no Close, no flush. A new one starts from
	// the same accounts.json (rt-configured, long retired) and state dir.
	c.Advance(2 * time.Hour)
	s2 := mustSource(t, providerConfig(p, "ms_1", "rt-configured", openStore(t, dir), c))
	if _, err := s2.Token(t.Context()); err != nil {
		t.Fatalf("after restart: %v (a retired refresh token was sent?)", err)
	}
	onDisk, _ := openStore(t, dir).Get("ms_1")
	if onDisk.RefreshToken.Reveal() != p.RefreshToken("ms@example.com") {
		t.Error("rotation after the restart not persisted")
	}
}

// TestRestart_loadsPersistedTokens: a restart hands out the persisted
// access tokens without a single request, and pre-warms only the accounts
// that were busy and lack a valid token.
func TestRestart_loadsPersistedTokens(t *testing.T) {
	t.Parallel()
	p := startProvider(t, fakeprovider.Options{})
	const n = 100
	for i := range n {
		p.AddAccount(fakeprovider.Account{Email: fmt.Sprintf("u%d@example.com", i), ClientID: "cid", RefreshToken: fmt.Sprint("rt-", i)})
	}
	dir, c := t.TempDir(), newClock()
	store := openStore(t, dir)
	for i := range n {
		s := mustSource(t, providerConfig(p, fmt.Sprint("acct_", i), fmt.Sprint("rt-", i), store, c))
		if i%2 == 0 { // the even accounts are busy, the odd ones idle
			if _, err := s.Token(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	before := p.Stats().TokenRequests

	c.Advance(10 * time.Minute)
	store = openStore(t, dir)
	var sources []*token.Source
	for i := range n {
		sources = append(sources, mustSource(t, providerConfig(p, fmt.Sprint("acct_", i), fmt.Sprint("rt-", i), store, c)))
	}
	for i, s := range sources {
		if _, ok := s.Cached(); ok != (i%2 == 0) {
			t.Fatalf("acct_%d: cached token after restart = %v", i, ok)
		}
	}
	r := token.NewRefresher(fixed(sources...), token.RefresherOptions{Now: c.Now})
	if got, _ := r.Prewarm(t.Context()); got != 0 || p.Stats().TokenRequests != before {
		t.Fatalf("restart made %d requests, want 0", p.Stats().TokenRequests-before)
	}
	// 50 minutes later the busy accounts' tokens are past their hand-out
	// time; the next start warms exactly those.
	c.Advance(40 * time.Minute)
	sources = sources[:0]
	store = openStore(t, dir)
	for i := range n {
		sources = append(sources, mustSource(t, providerConfig(p, fmt.Sprint("acct_", i), fmt.Sprint("rt-", i), store, c)))
	}
	r = token.NewRefresher(fixed(sources...), token.RefresherOptions{Now: c.Now})
	if got, bad := r.Prewarm(t.Context()); got != n/2 || bad != 0 {
		t.Errorf("pre-warm fetched %d (failed %d), want the %d busy accounts", got, bad, n/2)
	}
}

func TestRestart_configurationChanges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		change       func(*token.Config)
		wantSent     string // refresh token sent by the restarted Source
		wantCachedAT bool   // the persisted access token is still used
	}{
		{"nothing changed", func(*token.Config) {}, "", true},
		{"new refresh token pasted into accounts.json", func(c *token.Config) { c.RefreshToken = secret.New("rt-pasted") }, "rt-pasted", false},
		{"client secret rotated", func(c *token.Config) { c.ClientSecret = secret.New("new-secret") }, "rt-2", false},
		{"scope changed", func(c *token.Config) { c.Scope = "https://outlook.office.com/SMTP.Send offline_access" }, "rt-2", false},
		{"other client", func(c *token.Config) { c.ClientID = "cid-2" }, "rt-1", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The endpoint rotates rt-1 into rt-2, then issues whatever.
			e := newEndpoint(t, func(w http.ResponseWriter, r *http.Request, n int) {
				rt := ""
				if n == 1 {
					rt = `,"refresh_token":"rt-2"`
				}
				reply(w, 200, fmt.Sprintf(`{"access_token":"at-%d","expires_in":3600%s}`, n, rt))
			})
			dir, c := t.TempDir(), newClock()
			cfg := baseConfig(e, c)
			cfg.Store = openStore(t, dir)
			if _, err := mustSource(t, cfg).Token(t.Context()); err != nil {
				t.Fatal(err)
			}
			cfg.Store = openStore(t, dir)
			tc.change(&cfg)
			s := mustSource(t, cfg)
			if _, ok := s.Cached(); ok != tc.wantCachedAT {
				t.Fatalf("persisted access token used = %v, want %v", ok, tc.wantCachedAT)
			}
			if tc.wantSent == "" {
				return
			}
			if _, err := s.Token(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := e.form(t, 1).Get("refresh_token"); got != tc.wantSent {
				t.Errorf("sent %q, want %q", got, tc.wantSent)
			}
		})
	}
}

func TestRestart_needsConsentPersists(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.PostForm.Get("refresh_token") == "rt-1" {
			reply(w, 400, `{"error":"invalid_grant","error_description":"AADSTS700082: expired due to inactivity"}`)
			return
		}
		okToken(w, r, n)
	})
	dir, c := t.TempDir(), newClock()
	cfg := baseConfig(e, c)
	store := openStore(t, dir)
	cfg.Store = store
	if _, err := mustSource(t, cfg).Token(t.Context()); !errors.Is(err, token.ErrFinal) {
		t.Fatalf("Token = %v", err)
	}
	store.Close()

	cfg.Store = openStore(t, dir)
	s := mustSource(t, cfg)
	st := s.Status()
	if st.State != token.StateNeedsConsent || !strings.Contains(st.LastError, "AADSTS700082") {
		t.Fatalf("after restart: %+v", st)
	}
	if _, err := s.Token(t.Context()); !errors.Is(err, token.ErrFinal) || e.count() != 1 {
		t.Errorf("after restart: %v, %d requests; want the verdict without a request", err, e.count())
	}
	// Saved again and restarted again, the verdict reads the same.
	s.Disable("x")
	s.Enable()
	cfg.Store.(*tokenstore.Store).Close()
	cfg.Store = openStore(t, dir)
	if st2 := mustSource(t, cfg).Status(); st2.LastError != st.LastError || st2.State != token.StateNeedsConsent {
		t.Errorf("after a second restart: %+v, want %+v", st2, st)
	}
	// The operator pastes a new refresh token: a fresh start.
	cfg.RefreshToken = secret.New("rt-new")
	if _, err := mustSource(t, cfg).Token(t.Context()); err != nil {
		t.Errorf("with a new refresh token: %v", err)
	}
}

// flakyStore is a Store whose PutSync fails while broken is set.
type flakyStore struct {
	mu      sync.Mutex
	broken  bool
	entries map[string]tokenstore.Entry
	syncs   int
}

func (f *flakyStore) Get(id string) (tokenstore.Entry, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.entries[id]
	return e, ok
}

func (f *flakyStore) Put(id string, e tokenstore.Entry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries[id] = e
}

func (f *flakyStore) PutSync(id string, e tokenstore.Entry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.syncs++
	if f.broken {
		return errors.New("no space left on device")
	}
	f.entries[id] = e
	return nil
}

// TestRotation_unsavedTokenIsNeverSent: when the state file cannot be
// written, the access token is handed out, but the new refresh token is
// sent nowhere until it is saved.
func TestRotation_unsavedTokenIsNeverSent(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		reply(w, 200, fmt.Sprintf(`{"access_token":"at-%d","expires_in":3600,"refresh_token":"rt-%d"}`, n, n+1))
	})
	store := &flakyStore{broken: true, entries: map[string]tokenstore.Entry{}}
	cfg := baseConfig(e, newClock())
	cfg.Store = store
	s := mustSource(t, cfg)
	if tok, err := s.Token(t.Context()); err != nil || tok.Access.Reveal() != "at-1" {
		t.Fatalf("Token = %q, %v; want at-1 although saving failed", tok.Access.Reveal(), err)
	}
	_, err := s.Refresh(t.Context(), secret.String{})
	if err == nil || !strings.Contains(err.Error(), "not saved") || e.count() != 1 {
		t.Fatalf("Refresh with an unsaved rotation = %v after %d requests; want a refusal and no request", err, e.count())
	}
	store.mu.Lock()
	store.broken = false
	store.mu.Unlock()
	if _, err := s.Refresh(t.Context(), secret.String{}); err != nil {
		t.Fatal(err)
	}
	if got := e.form(t, 1).Get("refresh_token"); got != "rt-2" {
		t.Errorf("sent %q once saved, want rt-2", got)
	}
	if got, _ := store.Get("gmail_1"); got.RefreshToken.Reveal() != "rt-3" {
		t.Errorf("store holds %q, want rt-3", got.RefreshToken.Reveal())
	}
}

// TestNeedsConsent_isolation: one revoked account among 100 goes to
// needs_consent and is never asked for again, while the other 99 keep
// getting tokens, on demand and in the background, round after round.
func TestNeedsConsent_isolation(t *testing.T) {
	t.Parallel()
	const n = 100
	p := startProvider(t, fakeprovider.Options{})
	c := newClock()
	var sources []*token.Source
	for i := range n {
		email := fmt.Sprintf("u%d@example.com", i)
		p.AddAccount(fakeprovider.Account{Email: email, ClientID: "cid", RefreshToken: fmt.Sprint("rt-", i)})
		cfg := providerConfig(p, fmt.Sprint("acct_", i), fmt.Sprint("rt-", i), nil, c)
		cfg.Breaker = token.Breaker{Threshold: 5, Recovery: time.Minute}
		sources = append(sources, mustSource(t, cfg))
	}
	p.Revoke("u0@example.com")
	r := token.NewRefresher(fixed(sources...), token.RefresherOptions{Now: c.Now, Workers: 10})
	for round := range 5 {
		for i, s := range sources {
			_, err := s.Token(t.Context())
			if i == 0 && !errors.Is(err, token.ErrFinal) {
				t.Fatalf("round %d: revoked account: %v", round, err)
			}
			if i != 0 && err != nil {
				t.Fatalf("round %d: healthy acct_%d: %v", round, i, err)
			}
		}
		c.Advance(50 * time.Minute) // past every renewal time
		if renewed, bad := r.RenewDue(t.Context()); renewed != n-1 || bad != 0 {
			t.Fatalf("round %d: renewed %d, failed %d; want %d, 0", round, renewed, bad, n-1)
		}
	}
	if got := p.TokenRequestsFor("u0@example.com"); got != 1 {
		t.Errorf("revoked account: %d requests, want 1", got)
	}
	if got := p.TokenRequestsFor("u1@example.com"); got != 6 {
		t.Errorf("healthy account: %d requests, want 6 (first + 5 renewals)", got)
	}
	if st := sources[0].Status(); st.State != token.StateNeedsConsent || !strings.Contains(st.LastError, "invalid_grant") {
		t.Errorf("revoked account status %+v", st)
	}
}

// TestSecrets_onlyInTheStateFile plants every secret, runs a rotation, a
// verdict and a broken save, and searches errors and logs; the state file,
// which must hold the refresh token, is mode 0600.
func TestSecrets_onlyInTheStateFile(t *testing.T) {
	t.Parallel()
	const (
		cs      = "GOCSPX-PLANTED-client-secret"
		rt      = "1//PLANTED-configured-refresh"
		rotated = "M.PLANTED-rotated-refresh"
		access  = "EwB.PLANTED-access"
	)
	e := newEndpoint(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			reply(w, 200, fmt.Sprintf(`{"access_token":%q,"expires_in":3600,"refresh_token":%q}`, access, rotated))
			return
		}
		reply(w, 400, fmt.Sprintf(`{"error":"invalid_grant","error_description":"bad token %s %s"}`, r.PostForm.Get("refresh_token"), r.PostForm.Get("client_secret")))
	})
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dir := t.TempDir()
	store, err := tokenstore.Open(tokenstore.Options{Dir: dir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(e, newClock())
	cfg.ClientSecret, cfg.RefreshToken, cfg.Store, cfg.Logger = secret.New(cs), secret.New(rt), store, log
	s := mustSource(t, cfg)
	var out bytes.Buffer
	tok, err := s.Token(t.Context())
	fmt.Fprintf(&out, "%v %+v %v\n", tok, tok, err)
	_, err = s.Refresh(t.Context(), secret.String{})
	fmt.Fprintf(&out, "%v %+v %#v %+v\n", err, err, err, s.Status())
	store.Close()
	out.WriteString(logs.String())
	for _, p := range []string{cs, rt, rotated, access} {
		if strings.Contains(out.String(), p) {
			t.Errorf("secret %q leaked:\n%s", p, out.String())
		}
	}
	data, err := os.ReadFile(store.Path())
	if err != nil || !bytes.Contains(data, []byte(rotated)) || bytes.Contains(data, []byte(cs)) || bytes.Contains(data, []byte(rt)) {
		t.Errorf("state file should hold the rotated token and neither configured secret:\n%s", data)
	}
	if fi, _ := os.Stat(store.Path()); fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %04o", fi.Mode().Perm())
	}
}

// TestRotation_byTheSourceAReloadReplaced: after a reload two Sources of one
// account share the store; a rotation made by the old one is used by the
// new one, which was built before it.
func TestRotation_byTheSourceAReloadReplaced(t *testing.T) {
	t.Parallel()
	p := startProvider(t, fakeprovider.Options{RotateRefreshTokens: true})
	p.SetRevokeOnReuse(true)
	p.AddAccount(fakeprovider.Account{Email: "ms@example.com", ClientID: "cid", RefreshToken: "rt-configured"})
	c := newClock()
	store := openStore(t, t.TempDir())
	old := mustSource(t, providerConfig(p, "ms_1", "rt-configured", store, c))
	replacement := mustSource(t, providerConfig(p, "ms_1", "rt-configured", store, c))
	if _, err := old.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := replacement.Token(t.Context()); err != nil {
		t.Fatalf("replacement sent a retired refresh token: %v", err)
	}
}

// TestRotation_byAnotherProcess: the CLI's token command (or a second
// proxy) rotates the refresh token in the shared state file while this
// proxy runs and has written nothing since. This proxy's next request must
// use the new token: the old one would make a provider that detects reuse
// revoke the whole grant.
func TestRotation_byAnotherProcess(t *testing.T) {
	t.Parallel()
	p := startProvider(t, fakeprovider.Options{RotateRefreshTokens: true})
	p.SetRevokeOnReuse(true)
	p.AddAccount(fakeprovider.Account{Email: "ms@example.com", ClientID: "cid", RefreshToken: "rt-configured"})
	dir, c := t.TempDir(), newClock()

	proxy := mustSource(t, providerConfig(p, "ms_1", "rt-configured", openStore(t, dir), c))
	if _, err := proxy.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	cli := mustSource(t, providerConfig(p, "ms_1", "rt-configured", openStore(t, dir), c))
	for i := range 2 { // twice: the proxy's in-memory token is two rotations behind
		if _, err := cli.Refresh(t.Context(), secret.String{}); err != nil {
			t.Fatalf("cli refresh %d: %v", i+1, err)
		}
	}
	if _, err := proxy.Refresh(t.Context(), secret.String{}); err != nil {
		t.Fatalf("proxy refresh after the CLI rotated: %v (a retired refresh token was sent?)", err)
	}
	if st := proxy.Status(); st.State != token.StateOK {
		t.Errorf("proxy source state %q, want ok", st.State)
	}
	onDisk, _ := openStore(t, dir).Get("ms_1")
	if got, want := onDisk.RefreshToken.Reveal(), p.RefreshToken("ms@example.com"); got != want || got == "" {
		t.Errorf("the file holds %q, the provider %q", got, want)
	}
}
