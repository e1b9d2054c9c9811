package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/loadgen"
)

// clientTimeout bounds every command of the load client.
const clientTimeout = 30 * time.Second

// Run measures the proxy and/or the direct path as o says and returns the
// report. It stops by itself after o.Duration or o.Messages per mode, and
// removes its temporary directory and the proxy process on every path.
func Run(ctx context.Context, o Options) (*Report, error) {
	o.setDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.Runner == Subprocess && o.runs(ModeProxy) && o.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the proxy executable: %w", err)
		}
		o.Executable = exe
	}
	dir, err := os.MkdirTemp("", "xoauth2-proxy-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	e := &env{o: &o, dir: dir, accts: makeAccounts(o.Accounts), body: makeBody(o.MessageBytes), rcpts: makeRcpts(o.Rcpts)}
	if o.TLS {
		srv, roots, caPEM, err := fakeprovider.SelfSignedTLS("127.0.0.1", "localhost")
		if err != nil {
			return nil, err
		}
		e.serverTLS = srv
		e.clientTLS = &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
		e.caFile = filepath.Join(dir, "fake-provider-ca.pem")
		if err := os.WriteFile(e.caFile, caPEM, 0o644); err != nil {
			return nil, err
		}
	}
	rep := newReport(&o)
	if o.runs(ModeProxy) {
		if rep.Proxy, err = e.runProxy(ctx); err != nil {
			return nil, fmt.Errorf("proxy run: %w", err)
		}
	}
	if o.runs(ModeDirect) {
		if rep.Direct, err = e.runDirect(ctx); err != nil {
			return nil, fmt.Errorf("direct run: %w", err)
		}
	}
	rep.finish()
	return rep, nil
}

// env is what both modes share.
type env struct {
	o                    *Options
	dir                  string
	accts                []benchAccount
	body                 []byte
	rcpts                []string
	serverTLS, clientTLS *tls.Config // nil without Options.TLS
	caFile               string      // the fake provider's CA, for the proxy
}

func (e *env) progress(format string, args ...any) {
	fmt.Fprintf(e.o.Progress, "bench: "+format+"\n", args...)
}

// upstream is a fresh fake provider, behind the latency relay unless
// Options.NoRelay.
type upstream struct {
	fp    *fakeprovider.Provider
	relay *LatencyRelay // nil with NoRelay
	addr  string        // where clients of the provider connect
}

func (e *env) startUpstream() (*upstream, error) {
	fp, err := fakeprovider.Start(fakeprovider.Options{
		TLSConfig:         e.serverTLS,
		RequireTLSForAuth: e.serverTLS != nil,
		DiscardBodies:     true,
	})
	if err != nil {
		return nil, err
	}
	addAccounts(fp, e.accts)
	u := &upstream{fp: fp, addr: fp.SMTPAddr()}
	if !e.o.NoRelay {
		if u.relay, err = StartRelay(fp.SMTPAddr(), e.o.Latency); err != nil {
			fp.Close()
			return nil, err
		}
		u.addr = u.relay.Addr()
	}
	return u, nil
}

func (u *upstream) close() {
	if u.relay != nil {
		u.relay.Close()
	}
	u.fp.Close()
}

// counters are the upstream's counters at one moment.
type counters struct {
	fp    fakeprovider.Stats
	relay RelayStats
}

func (u *upstream) counters() counters {
	c := counters{fp: u.fp.Stats()}
	if u.relay != nil {
		c.relay = u.relay.Stats()
	}
	return c
}

func (e *env) load() loadgen.Load {
	return loadgen.Load{Rcpts: e.rcpts, Body: e.body, Duration: e.o.Duration, Messages: e.o.Messages}
}

// runProxy measures load client → proxy → (relay →) fake provider.
func (e *env) runProxy(ctx context.Context) (_ *Result, err error) {
	u, err := e.startUpstream()
	if err != nil {
		return nil, err
	}
	defer u.close()
	cfg, accts, err := writeProxyFiles(e.dir, e.o, e.accts, u.addr, u.fp.TokenURL(), e.caFile)
	if err != nil {
		return nil, err
	}
	files := proxyFiles{dir: e.dir, config: cfg, accounts: accts, conns: globalConcurrency(e.o), logLevel: e.o.ProxyLogLevel}
	var p proxy
	if e.o.Runner == InProcess {
		p, err = startInProcess(ctx, files)
	} else {
		p, err = startSubprocess(ctx, e.o.Executable, files)
	}
	if err != nil {
		return nil, err
	}
	defer func() {
		if serr := p.Stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	e.progress("proxy mode: proxy listening on %s, upstream %s", p.Addr(), u.addr)

	fleet, err := loadgen.Open(ctx, loadgen.FleetOptions{
		Addr:         p.Addr(),
		Connections:  e.o.Connections,
		Timeout:      clientTimeout,
		NoPipelining: e.o.NoPipelining,
		Login: func(c *loadgen.Client, i int) (string, error) {
			a := e.accts[i%len(e.accts)]
			return a.Email, c.Auth(a.Email, clientPassword)
		},
	})
	if err != nil {
		return nil, err
	}
	defer fleet.Close()
	res, err := e.measure(ctx, ModeProxy, fleet, u, p)
	if err != nil {
		return nil, err
	}
	if rss, ok := p.PeakRSS(); ok {
		res.ProxyPeakRSSBytes = rss
	}
	return res, nil
}

// runDirect measures load client → (relay →) fake provider, the client
// logging in with AUTH XOAUTH2 like the proxy does upstream.
func (e *env) runDirect(ctx context.Context) (*Result, error) {
	u, err := e.startUpstream()
	if err != nil {
		return nil, err
	}
	defer u.close()
	tokens, err := e.fetchTokens(ctx, u.fp.TokenURL())
	if err != nil {
		return nil, err
	}
	e.progress("direct mode: fake provider at %s", u.addr)
	fleet, err := loadgen.Open(ctx, loadgen.FleetOptions{
		Addr:         u.addr,
		Connections:  e.o.Connections,
		Timeout:      clientTimeout,
		TLS:          e.clientTLS,
		NoPipelining: e.o.NoPipelining,
		Login: func(c *loadgen.Client, i int) (string, error) {
			k := i % len(e.accts)
			return e.accts[k].Email, c.AuthXOAUTH2(e.accts[k].Email, tokens[k])
		},
	})
	if err != nil {
		return nil, err
	}
	defer fleet.Close()
	return e.measure(ctx, ModeDirect, fleet, u, nil)
}

// fetchTokens gets an access token for each account the connections use.
func (e *env) fetchTokens(ctx context.Context, tokenURL string) ([]string, error) {
	n := min(len(e.accts), e.o.Connections)
	tokens := make([]string, n)
	errs := make([]error, n)
	tr := &http.Transport{MaxIdleConnsPerHost: 8}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			a := e.accts[i]
			tokens[i], errs[i] = loadgen.FetchToken(ctx, hc, loadgen.TokenRequest{
				URL: tokenURL, ClientID: clientID, ClientSecret: clientSecret, RefreshToken: a.RefreshToken,
			})
		})
	}
	wg.Wait()
	return tokens, errors.Join(errs...)
}

// measure runs the load and reads the counters around it. p is nil in the
// direct mode.
func (e *env) measure(ctx context.Context, m Mode, fleet *loadgen.Fleet, u *upstream, p proxy) (*Result, error) {
	// Start both modes from a collected heap, so one run's garbage does
	// not slow the next.
	runtime.GC()
	limit := "until " + e.o.Duration.String()
	if e.o.Messages > 0 {
		limit = fmt.Sprintf("%d messages", e.o.Messages)
		if e.o.Duration > 0 {
			limit += " or " + e.o.Duration.String()
		}
	}
	e.progress("%s mode: %d connections open, sending %s", m, e.o.Connections, limit)
	before, clock0 := u.counters(), readCPUClock()
	var cpu0 time.Duration
	cpuOK := false
	if p != nil {
		cpu0, cpuOK = p.CPU()
	}
	sum, err := fleet.Run(ctx, e.load())
	if err != nil {
		return nil, err
	}
	after, clock1 := u.counters(), readCPUClock()
	r := &Result{
		Mode:                   string(m),
		Elapsed:                sum.Elapsed,
		Delivered:              after.fp.Messages - before.fp.Messages,
		Accepted:               sum.OK,
		Refused:                sum.Refused,
		Errors:                 sum.Errors,
		LatencyP50:             sum.Percentile(50),
		LatencyP99:             sum.Percentile(99),
		SessionsOpened:         after.fp.Connections,
		Logins:                 after.fp.Logins,
		LoginFailures:          after.fp.LoginFailures,
		PeakSessionsPerAccount: after.fp.MaxConcurrentSessionsPerUser,
		FirstRefusal:           sum.FirstRefusal,
		FirstError:             sum.FirstError,
	}
	if u.relay != nil {
		r.RoundTrips = after.relay.RoundTrips - before.relay.RoundTrips
		r.roundTripsCounted = true
	}
	if cpuOK {
		if cpu1, ok := p.CPU(); ok {
			r.ProxyCPU = cpu1 - cpu0
			r.proxyCPUMeasured = true
		}
	}
	if use, ok := cpuUsage(clock0, clock1, r.ProxyCPU, r.Elapsed); ok {
		r.CPU = &CPUCores{Bench: use.bench, Proxy: use.proxy, Other: use.other}
	}
	r.derive()
	e.progress("%s mode: %d delivered in %.1fs", m, r.Delivered, r.Elapsed.Seconds())
	return r, nil
}
