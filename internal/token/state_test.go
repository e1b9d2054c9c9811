package token_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
)

// failing answers every request with status and, when set, Retry-After.
func failing(status int, retryAfter string) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, _ *http.Request, _ int) {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		reply(w, status, `{"error":"temporarily_unavailable"}`)
	}
}

// TestBackoff_followsRetryConfig drives background retries with a fake
// clock: each retry comes exactly when the retry block says, and not before.
func TestBackoff_followsRetryConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		retry token.Backoff
		rand  float64
		waits []float64 // seconds after failure 1, 2, ...
	}{
		{"factor 2 capped at 8s", token.Backoff{Base: time.Second, Factor: 2, Max: 8 * time.Second},
			0, []float64{1, 2, 4, 8, 8, 8}},
		{"factor 3 capped at 30s", token.Backoff{Base: time.Second, Factor: 3, Max: 30 * time.Second},
			0, []float64{1, 3, 9, 27, 30}},
		{"factor 1 is constant", token.Backoff{Base: 2 * time.Second, Factor: 1, Max: 30 * time.Second},
			0, []float64{2, 2, 2}},
		{"jitter low end: half the wait", token.Backoff{Base: time.Second, Factor: 2, Max: 30 * time.Second, Jitter: true},
			0, []float64{0.5, 1, 2, 4}},
		{"jitter high end: the whole wait", token.Backoff{Base: time.Second, Factor: 2, Max: 30 * time.Second, Jitter: true},
			0.999999, []float64{1, 2, 4, 8}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newClock()
			e := newEndpoint(t, failing(503, ""))
			cfg := baseConfig(e, c)
			cfg.Retry = tc.retry
			cfg.Rand = func() float64 { return tc.rand }
			s := mustSource(t, cfg)
			r := token.NewRefresher(fixed(s), token.RefresherOptions{Now: c.Now})
			if _, err := s.Token(t.Context()); err == nil {
				t.Fatal("Token succeeded against a 503")
			}
			for i, w := range tc.waits {
				want := time.Duration(w * float64(time.Second))
				st := s.Status()
				if st.State != token.StateRetrying || st.Failures != i+1 {
					t.Fatalf("after failure %d: %+v", i+1, st)
				}
				if got := st.NextRefresh.Sub(c.Now()); !near(got, want) {
					t.Fatalf("after failure %d: next retry in %v, want %v", i+1, got, want)
				}
				c.Advance(want - time.Millisecond)
				if n, _ := r.RenewDue(t.Context()); n != 0 {
					t.Fatalf("retry %d came early", i+1)
				}
				c.Advance(time.Millisecond)
				if n, bad := r.RenewDue(t.Context()); n != 1 || bad != 1 {
					t.Fatalf("retry %d: renewed %d, failed %d; want 1, 1", i+1, n, bad)
				}
				if got := e.count(); got != i+2 {
					t.Fatalf("after retry %d: %d requests, want %d", i+1, got, i+2)
				}
			}
		})
	}
}

// near allows for the rounding of jitter and Rand values just below 1.
func near(got, want time.Duration) bool {
	d := got - want
	return d > -time.Millisecond && d < time.Millisecond
}

// TestRetryAfter_honoured: no request at all, from a client or in the
// background, before the endpoint's Retry-After has passed.
func TestRetryAfter_honoured(t *testing.T) {
	t.Parallel()
	c := newClock()
	tests := []struct {
		name, header string
		want         time.Duration
	}{
		{"seconds", "120", 120 * time.Second},
		{"http date", c.Now().Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"capped at an hour", "86400", time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newClock()
			e := newEndpoint(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if n == 1 {
					failing(429, tc.header)(w, r, n)
					return
				}
				okToken(w, r, n)
			})
			cfg := baseConfig(e, c)
			cfg.Retry = token.Backoff{Base: time.Second, Factor: 2, Max: 30 * time.Second}
			s := mustSource(t, cfg)
			r := token.NewRefresher(fixed(s), token.RefresherOptions{Now: c.Now})
			_, err := s.Token(t.Context())
			var te *token.Error
			if !errors.As(err, &te) || te.Status != 429 || te.RetryAfter != tc.want {
				t.Fatalf("Token = %v (%+v), want a 429 *Error with RetryAfter %v", err, te, tc.want)
			}
			if st := s.Status(); st.NextRefresh.Sub(c.Now()) != tc.want {
				t.Errorf("NextRefresh in %v, want %v", st.NextRefresh.Sub(c.Now()), tc.want)
			}
			c.Advance(tc.want - time.Second)
			if _, err2 := s.Token(t.Context()); err2 != err {
				t.Errorf("Token within Retry-After = %v, want the held error", err2)
			}
			if n, _ := r.RenewDue(t.Context()); n != 0 || e.count() != 1 {
				t.Errorf("%d renewals, %d requests within Retry-After; want 0, 1", n, e.count())
			}
			c.Advance(time.Second)
			if tok, err := s.Token(t.Context()); err != nil || tok.Access.Reveal() != "at-2" {
				t.Errorf("Token after Retry-After: %q, %v", tok.Access.Reveal(), err)
			}
		})
	}
}

// TestBreaker_perAccount: after Threshold consecutive failures callers get
// the error at once for Recovery; then one request probes; other accounts
// are unaffected throughout.
func TestBreaker_perAccount(t *testing.T) {
	t.Parallel()
	c := newClock()
	var down atomic.Bool
	down.Store(true)
	e := newEndpoint(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.PostForm.Get("refresh_token") == "rt-bad" && down.Load() {
			failing(500, "")(w, r, n)
			return
		}
		okToken(w, r, n)
	})
	badCfg := baseConfig(e, c)
	badCfg.RefreshToken = secretOf("rt-bad")
	badCfg.Breaker = token.Breaker{Threshold: 3, Recovery: time.Minute}
	bad := mustSource(t, badCfg)
	goodCfg := baseConfig(e, c)
	goodCfg.Account = "gmail_2"
	goodCfg.Breaker = badCfg.Breaker
	good := mustSource(t, goodCfg)

	for i := range 3 {
		if _, err := bad.Token(t.Context()); err == nil {
			t.Fatalf("failure %d: Token succeeded", i+1)
		}
	}
	st := bad.Status()
	if !st.BreakerOpen || st.NextRefresh.Sub(c.Now()) != time.Minute {
		t.Fatalf("after 3 failures: %+v, want breaker open for a minute", st)
	}
	requests := e.count()
	c.Advance(59 * time.Second)
	if _, err := bad.Token(t.Context()); err == nil || e.count() != requests {
		t.Errorf("open breaker let a request through (%d → %d requests)", requests, e.count())
	}
	if _, err := good.Token(t.Context()); err != nil {
		t.Errorf("another account blocked by the breaker: %v", err)
	}
	requests = e.count()
	c.Advance(time.Second)
	if _, err := bad.Token(t.Context()); err == nil || e.count() != requests+1 {
		t.Errorf("half-open: %d new requests, want 1", e.count()-requests)
	}
	if st := bad.Status(); !st.BreakerOpen || st.Failures != 4 {
		t.Errorf("failed probe: %+v, want the breaker open again", st)
	}
	down.Store(false)
	c.Advance(time.Minute)
	if _, err := bad.Token(t.Context()); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	if st := bad.Status(); st.BreakerOpen || st.Failures != 0 || st.State != token.StateOK {
		t.Errorf("after recovery: %+v", st)
	}
}

// TestToken_transientFailureDoesNotBlockTheNextClient: without Retry-After
// and below the breaker's threshold, the next client's need tries again
// (the backoff paces only background retries).
func TestToken_transientFailureDoesNotBlockTheNextClient(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			failing(503, "")(w, r, n)
			return
		}
		okToken(w, r, n)
	})
	s := mustSource(t, baseConfig(e, newClock()))
	if _, err := s.Token(t.Context()); err == nil {
		t.Fatal("first Token succeeded")
	}
	if tok, err := s.Token(t.Context()); err != nil || tok.Access.Reveal() != "at-2" {
		t.Errorf("second Token: %q, %v", tok.Access.Reveal(), err)
	}
}

// TestToken_thousandConcurrentNeedsAtExpiry: 1,000 callers arrive when the
// cached token expires; exactly one request is made and all get its token.
func TestToken_thousandConcurrentNeedsAtExpiry(t *testing.T) {
	t.Parallel()
	const callers = 1000
	c := newClock()
	release := make(chan struct{})
	e := newEndpoint(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 2 {
			<-release
		}
		okToken(w, r, n)
	})
	s := mustSource(t, baseConfig(e, c))
	if _, err := s.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	c.Advance(3000 * time.Second) // expiry − the 600 s buffer: no longer handed out
	var wg sync.WaitGroup
	var started atomic.Int32
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			started.Add(1)
			tok, err := s.Token(t.Context())
			if err == nil && tok.Access.Reveal() != "at-2" {
				err = fmt.Errorf("got %q", tok.Access.Reveal())
			}
			errs <- err
		})
	}
	waitFor(t, func() bool { return started.Load() == callers && e.count() == 2 })
	if st := s.Status(); st.State != token.StateRefreshing {
		t.Errorf("State during the request = %s, want refreshing", st.State)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := e.count(); n != 2 {
		t.Errorf("%d requests, want 2 (the first token, then one refresh for 1,000 callers)", n)
	}
}

func TestDisable(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t, okToken)
	s := mustSource(t, baseConfig(e, newClock()))
	if _, err := s.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.Disable("sender abuse ticket 42")
	if _, err := s.Token(t.Context()); !errors.Is(err, token.ErrDisabled) {
		t.Errorf("Token of a disabled account = %v, want ErrDisabled", err)
	}
	if _, ok := s.Cached(); ok {
		t.Error("Cached hands out a disabled account's token")
	}
	if st := s.Status(); st.State != token.StateDisabled || st.LastError != "sender abuse ticket 42" {
		t.Errorf("Status = %+v", st)
	}
	s.Enable()
	if _, err := s.Token(t.Context()); err != nil || e.count() != 1 {
		t.Errorf("after Enable: %v, %d requests; want the cached token", err, e.count())
	}
}

func TestToken_cancelledWhileHeldByRetryAfterDoesNotWait(t *testing.T) {
	t.Parallel()
	c := newClock()
	e := newEndpoint(t, failing(429, "60"))
	s := mustSource(t, baseConfig(e, c))
	s.Token(t.Context())
	ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
	defer cancel()
	start := time.Now()
	if _, err := s.Token(ctx); err == nil || time.Since(start) > time.Second {
		t.Errorf("held account: %v after %v; want the held error at once", err, time.Since(start))
	}
}

// TestOnBlocked: the hook runs when the account stops getting tokens
// (needs_consent, Disable) and not on a transient failure, so that its
// owner closes sessions authenticated before a revocation (issue 11).
func TestOnBlocked(t *testing.T) {
	t.Parallel()
	revoked := func(w http.ResponseWriter, _ *http.Request, _ int) {
		reply(w, 400, `{"error":"invalid_grant","error_description":"Token has been expired or revoked."}`)
	}
	tests := []struct {
		name    string
		handler func(http.ResponseWriter, *http.Request, int)
		act     func(*token.Source)
		want    int32
	}{
		{"revoked", revoked, func(s *token.Source) { s.Token(context.Background()) }, 1},
		{"disabled", okToken, func(s *token.Source) { s.Disable("") }, 1},
		{"transient failure", failing(503, ""), func(s *token.Source) { s.Token(context.Background()) }, 0},
		{"token issued", okToken, func(s *token.Source) { s.Token(context.Background()) }, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			cfg := baseConfig(newEndpoint(t, tc.handler), newClock())
			cfg.OnBlocked = func() { calls.Add(1) }
			tc.act(mustSource(t, cfg))
			if got := calls.Load(); got != tc.want {
				t.Errorf("OnBlocked called %d times, want %d", got, tc.want)
			}
		})
	}
}
