package token_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
)

// TestRefresher_renewsUsedAccountsBeforeExpiry: a token in use is renewed
// in the background at its renewal time, so clients never wait for a
// request; an account that has not been used for an hour is left alone.
func TestRefresher_renewsUsedAccountsBeforeExpiry(t *testing.T) {
	t.Parallel()
	c := newClock()
	e := newEndpoint(t, okToken)
	mk := func(id string) *token.Source {
		cfg := baseConfig(e, c)
		cfg.Account = id
		cfg.Rand = func() float64 { return 0 } // renewal at exactly 80% of the lifetime
		return mustSource(t, cfg)
	}
	busy, idle := mk("busy"), mk("idle")
	r := token.NewRefresher(fixed(busy, idle), token.RefresherOptions{Now: c.Now})
	for _, s := range []*token.Source{busy, idle} {
		if _, err := s.Token(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	// 80% of 3600 s is 2880 s, before expiry − 600 s = 3000 s.
	if st := busy.Status(); st.NextRefresh.Sub(c.Now()) != 2880*time.Second {
		t.Fatalf("NextRefresh in %v, want 2880s", st.NextRefresh.Sub(c.Now()))
	}
	c.Advance(2879 * time.Second)
	busy.Token(t.Context()) // busy is used; idle not since the start
	if n, _ := r.RenewDue(t.Context()); n != 0 {
		t.Fatalf("renewed %d before the renewal time", n)
	}
	c.Advance(time.Second)
	if n, bad := r.RenewDue(t.Context()); n != 2 || bad != 0 {
		t.Fatalf("renewed %d (failed %d), want both: both were used within the hour", n, bad)
	}
	requests := e.count()
	if tok, err := busy.Token(t.Context()); err != nil || e.count() != requests {
		t.Errorf("Token after renewal made a request: %v", err)
	} else if tok.Expiry.Sub(c.Now()) != time.Hour {
		t.Errorf("renewed token expires in %v, want 1h", tok.Expiry.Sub(c.Now()))
	}
	// Another renewal period; idle was last used over an hour ago.
	c.Advance(2880 * time.Second)
	busy.Token(t.Context())
	if n, _ := r.RenewDue(t.Context()); n != 1 {
		t.Fatalf("renewed %d, want only the busy account", n)
	}
	if st := idle.Status(); st.NextRefresh.After(c.Now()) {
		t.Errorf("idle account renewed: %+v", st)
	}
}

// TestRefresher_jitterSpreadsRenewals: tokens fetched at the same moment
// get different renewal times, within the last tenth before 80%.
func TestRefresher_jitterSpreadsRenewals(t *testing.T) {
	t.Parallel()
	c := newClock()
	e := newEndpoint(t, okToken)
	seen := map[time.Time]bool{}
	for i := range 50 {
		cfg := baseConfig(e, c)
		cfg.Account = fmt.Sprint("acct_", i)
		s := mustSource(t, cfg)
		if _, err := s.Token(t.Context()); err != nil {
			t.Fatal(err)
		}
		at := s.Status().NextRefresh.Sub(c.Now())
		if at < 2520*time.Second || at > 2880*time.Second {
			t.Fatalf("renewal in %v, want within [2520s, 2880s]", at)
		}
		seen[s.Status().NextRefresh] = true
	}
	if len(seen) < 40 {
		t.Errorf("only %d distinct renewal times for 50 tokens", len(seen))
	}
}

// TestRefresher_boundedWorkers: 60 accounts due at once never cause more
// than Workers simultaneous requests.
func TestRefresher_boundedWorkers(t *testing.T) {
	t.Parallel()
	const accounts, workers = 60, 5
	c := newClock()
	var active, peak atomic.Int32
	e := newEndpoint(t, func(w http.ResponseWriter, r *http.Request, n int) {
		now := active.Add(1)
		for p := peak.Load(); now > p && !peak.CompareAndSwap(p, now); p = peak.Load() {
		}
		time.Sleep(2 * time.Millisecond) // hold the slot so requests overlap
		active.Add(-1)
		okToken(w, r, n)
	})
	var sources []*token.Source
	for i := range accounts {
		cfg := baseConfig(e, c)
		cfg.Account = fmt.Sprint("acct_", i)
		sources = append(sources, mustSource(t, cfg))
	}
	r := token.NewRefresher(fixed(sources...), token.RefresherOptions{Now: c.Now, Workers: workers, FetchWorkers: workers, Prewarm: token.PrewarmAll})
	if n, bad := r.Prewarm(t.Context()); n != accounts || bad != 0 {
		t.Fatalf("prewarm fetched %d, failed %d", n, bad)
	}
	for _, s := range sources {
		s.Token(t.Context()) // cached: counts as use
	}
	c.Advance(3000 * time.Second)
	if n, bad := r.RenewDue(t.Context()); n != accounts || bad != 0 {
		t.Fatalf("renewed %d, failed %d", n, bad)
	}
	if p := peak.Load(); p > workers {
		t.Errorf("%d simultaneous requests, want at most %d", p, workers)
	}
	if n := e.count(); n != 2*accounts {
		t.Errorf("%d requests, want %d", n, 2*accounts)
	}
}

// TestRefresher_prewarm covers the selection and the progress log.
func TestRefresher_prewarm(t *testing.T) {
	t.Parallel()
	c := newClock()
	e := newEndpoint(t, okToken)
	var sources []*token.Source
	for i := range 40 {
		cfg := baseConfig(e, c)
		cfg.Account = fmt.Sprint("acct_", i)
		sources = append(sources, mustSource(t, cfg))
	}
	// Fresh sources have no recorded use: "recent" warms nothing.
	if n, _ := token.NewRefresher(fixed(sources...), token.RefresherOptions{Now: c.Now}).Prewarm(t.Context()); n != 0 || e.count() != 0 {
		t.Fatalf("recent pre-warm of unused accounts fetched %d", n)
	}
	var logs syncBuffer
	r := token.NewRefresher(fixed(sources...), token.RefresherOptions{
		Now: c.Now, Prewarm: token.PrewarmAll, FetchWorkers: 3,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if n, bad := r.Prewarm(t.Context()); n != 40 || bad != 0 {
		t.Fatalf("fetched %d, failed %d", n, bad)
	}
	out := logs.String()
	if got := strings.Count(out, "token pre-warm progress"); got != 9 {
		t.Errorf("%d progress lines, want 9 (every tenth, not the last):\n%s", got, out)
	}
	if !strings.Contains(out, "to_fetch=40") || !strings.Contains(out, `msg="token pre-warm finished" fetched=40 failed=0`) {
		t.Errorf("log lacks the totals:\n%s", out)
	}
	// A second pre-warm finds every token valid.
	if n, _ := r.Prewarm(t.Context()); n != 0 || e.count() != 40 {
		t.Errorf("second pre-warm fetched %d", n)
	}
}

// TestRefresher_runStopsAndWaits: Run returns after ctx ends and leaves no
// goroutine (TestMain checks).
func TestRefresher_runStopsAndWaits(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t, okToken)
	cfg := baseConfig(e, newClock())
	s := mustSource(t, cfg)
	r := token.NewRefresher(fixed(s), token.RefresherOptions{Now: cfg.Now, Interval: time.Millisecond, Prewarm: token.PrewarmAll})
	ctx, cancel := contextWithCancel(t)
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	waitFor(t, func() bool { _, ok := s.Cached(); return ok })
	cancel()
	<-done
}

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
