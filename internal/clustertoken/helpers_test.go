package clustertoken_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/cluster"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/clustertoken"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/redistest"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/tokenstore"
)

// clock is a manual clock shared by the "proxies" of a test, so that
// token lifetimes pass without sleeping.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// openShared connects one "proxy" to the Redis at addr.
func openShared(t *testing.T, addr, node string) *clustertoken.Shared {
	t.Helper()
	var c config.Cluster
	if err := c.SetURL("redis://" + addr); err != nil {
		t.Fatal(err)
	}
	c.Timeout, c.SessionLease, c.SessionRenew = 2*time.Second, 15*time.Second, 5*time.Second
	cl, err := cluster.Open(t.Context(), c, cluster.Options{Node: node})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return clustertoken.New(cl)
}

func startProvider(t *testing.T, o fakeprovider.Options) *fakeprovider.Provider {
	t.Helper()
	p, err := fakeprovider.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// proxy is one proxy's view of an account: its own state file and its
// own token source, sharing Redis (nil: a proxy on its own).
type proxy struct {
	src   *token.Source
	store *tokenstore.Store
}

func newProxy(t *testing.T, p *fakeprovider.Provider, sh token.Shared, c *clock, id, rt string) proxy {
	t.Helper()
	return newProxyLog(t, p, sh, c, id, rt, nil)
}

// newProxyLog is newProxy with the token source logging to log.
func newProxyLog(t *testing.T, p *fakeprovider.Provider, sh token.Shared, c *clock, id, rt string, log *slog.Logger) proxy {
	t.Helper()
	st, err := tokenstore.Open(tokenstore.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := token.Config{
		Account: id, TokenURL: p.TokenURL(), ClientID: "cid", RefreshToken: secret.New(rt),
		Store: st, Now: c.Now, HTTPClient: &http.Client{Transport: &http.Transport{}}, Logger: log,
	}
	if sh != nil { // a nil *Shared must stay a nil interface
		cfg.Shared = sh
	}
	src, err := token.NewSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return proxy{src: src, store: st}
}

func startRedis(t *testing.T) *redistest.Server {
	t.Helper()
	return redistest.Start(t, redistest.Options{})
}

// logBuffer collects log output from several goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
