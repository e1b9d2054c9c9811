package admin_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/admin"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// clock is a settable Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines decodes the JSON log lines with the given message.
func (b *syncBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		var m map[string]any
		if l == "" {
			continue
		}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// authEnv is an API with a settable clock, a JSON log and its own
// metrics registry.
type authEnv struct {
	api   *admin.API
	clock *clock
	logs  *syncBuffer
	reg   *prometheus.Registry
}

func newAuthEnv(t *testing.T) *authEnv {
	t.Helper()
	b, _ := newBackend(t, existing)
	e := &authEnv{clock: &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, logs: &syncBuffer{}, reg: prometheus.NewRegistry()}
	e.api = admin.New(b, admin.Options{
		Token: secret.New(token), Now: e.clock.Now, Registerer: e.reg,
		Logger: slog.New(slog.NewJSONHandler(e.logs, nil)),
	})
	return e
}

// get asks GET /admin/status from addr with the bearer token tok.
func (e *authEnv) get(addr, tok string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "/admin/status", nil)
	req.RemoteAddr = addr
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	rec := httptest.NewRecorder()
	e.api.ServeHTTP(rec, req)
	return rec
}

func (e *authEnv) failures(t *testing.T, result string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == "admin_auth_failures_total" && m.GetLabel()[0].GetValue() == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf(`admin_auth_failures_total{result=%q} is not registered`, result)
	return 0
}

const failedMsg = "admin: authentication failed"

// TestAuth_failuresAreLoggedRateLimited: the first failure from an
// address is logged at once; later ones at most once a minute, as one
// line with their count. The presented token is never logged.
func TestAuth_failuresAreLoggedRateLimited(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t)
	const x, y = "192.0.2.1:40000", "198.51.100.7:40000"
	for _, step := range []struct {
		after time.Duration
		addr  string
		lines int // "authentication failed" lines so far
	}{
		{0, x, 1},
		{time.Second, x, 1},
		{time.Second, y, 2}, // another address has its own line
		{30 * time.Second, x, 2},
		{30 * time.Second, x, 3}, // a minute after x's first line: the summary
		{time.Second, x, 3},
	} {
		e.clock.advance(step.after)
		if rec := e.get(step.addr, "guess-"+step.addr); rec.Code != http.StatusUnauthorized {
			t.Fatalf("%s: status %d, want 401", step.addr, rec.Code)
		}
		if got := e.logs.lines(t, failedMsg); len(got) != step.lines {
			t.Fatalf("after a failure from %s: %d log lines, want %d: %v", step.addr, len(got), step.lines, got)
		}
	}
	lines := e.logs.lines(t, failedMsg)
	if l := lines[2]; l["addr"] != "192.0.2.1" || l["failures"] != float64(3) || l["level"] != "WARN" {
		t.Errorf("summary line = %v, want addr 192.0.2.1 and the 3 failures since the first line", l)
	}
	if e.logs.buf.Len() == 0 || strings.Contains(e.logs.buf.String(), "guess-") {
		t.Errorf("the log holds a presented token:\n%s", e.logs.buf.String())
	}
	if got := e.failures(t, "refused"); got != 6 {
		t.Errorf(`admin_auth_failures_total{result="refused"} = %v, want 6`, got)
	}
}

// TestAuth_repeatedFailuresAreHeldBack: after a few failures an address
// gets 429 with Retry-After, without its token being checked, for a time
// that doubles with each further failure; other addresses are not held
// back, and a success from the address starts it afresh. An IPv6 client
// counts by its /64.
func TestAuth_repeatedFailuresAreHeldBack(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		addr, other string // other: an address of the same client, or none
	}{
		{"IPv4", "192.0.2.1:40000", "192.0.2.1:40001"},
		{"IPv6 by its /64", "[2001:db8:1:2::10]:40000", "[2001:db8:1:2:ffff::1]:40000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newAuthEnv(t)
			wantCode := func(addr, tok string, code int, retryAfter string) {
				t.Helper()
				rec := e.get(addr, tok)
				if rec.Code != code || rec.Header().Get("Retry-After") != retryAfter {
					t.Fatalf("%s: status %d, Retry-After %q; want %d, %q: %s", addr, rec.Code, rec.Header().Get("Retry-After"), code, retryAfter, rec.Body)
				}
			}
			for range 5 {
				wantCode(tc.addr, "wrong", http.StatusUnauthorized, "")
			}
			wantCode(tc.addr, "wrong", http.StatusUnauthorized, "") // the 6th: held back from now on
			wantCode(tc.other, token, http.StatusTooManyRequests, "1")
			wantCode("203.0.113.9:1", token, http.StatusOK, "")
			e.clock.advance(time.Second)
			wantCode(tc.addr, "wrong", http.StatusUnauthorized, "") // the 7th: twice as long
			wantCode(tc.addr, "wrong", http.StatusTooManyRequests, "2")
			e.clock.advance(1500 * time.Millisecond)
			wantCode(tc.addr, token, http.StatusTooManyRequests, "1")
			e.clock.advance(500 * time.Millisecond)
			wantCode(tc.addr, token, http.StatusOK, "")
			for range 5 { // afresh after the success
				wantCode(tc.addr, "wrong", http.StatusUnauthorized, "")
			}
			if got := e.failures(t, "rate_limited"); got != 3 {
				t.Errorf(`admin_auth_failures_total{result="rate_limited"} = %v, want 3`, got)
			}
		})
	}
}

// TestAuth_heldBackForAtMostFiveMinutes: the hold stops growing at five
// minutes, and an address quiet for longer than the hold is forgiven its
// count after a while.
func TestAuth_heldBackForAtMostFiveMinutes(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t)
	const addr = "192.0.2.1:40000"
	for range 30 {
		if rec := e.get(addr, "wrong"); rec.Code != http.StatusUnauthorized {
			t.Fatalf("status %d", rec.Code)
		}
		e.clock.advance(5 * time.Minute)
	}
	e.clock.advance(-5 * time.Minute)
	if rec := e.get(addr, token); rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "300" {
		t.Fatalf("status %d, Retry-After %q; want 429, 300", rec.Code, rec.Header().Get("Retry-After"))
	}
	e.clock.advance(time.Hour)
	for range 5 {
		if rec := e.get(addr, "wrong"); rec.Code != http.StatusUnauthorized {
			t.Fatalf("after an hour's quiet: status %d", rec.Code)
		}
	}
	if rec := e.get(addr, token); rec.Code != http.StatusOK {
		t.Fatalf("after an hour's quiet and 5 failures: status %d, want 200", rec.Code)
	}
}
