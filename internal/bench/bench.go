package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"sync"
	"time"

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
	if o.Runner == Subprocess && (o.runs(ModeProxy) || !o.ProviderInProcess) && o.Executable == "" {
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
	o     *Options
	dir   string
	accts []benchAccount
	body  []byte
	rcpts []string
}

func (e *env) progress(format string, args ...any) {
	fmt.Fprintf(e.o.Progress, "bench: "+format+"\n", args...)
}

func (e *env) load() loadgen.Load {
	return loadgen.Load{Rcpts: e.rcpts, Body: e.body, Duration: e.o.Duration, Messages: e.o.Messages}
}

// runProxy measures load client → proxy → (relay →) fake provider.
func (e *env) runProxy(ctx context.Context) (_ *Result, err error) {
	u, err := e.startUpstream(ctx)
	if err != nil {
		return nil, err
	}
	defer closeUpstream(u, &err)
	_, caFile := u.TLS()
	cfg, accts, err := writeProxyFiles(e.dir, e.o, e.accts, u.Addr(), u.TokenURL(), caFile)
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
	e.progress("proxy mode: proxy listening on %s, upstream %s", p.Addr(), u.Addr())

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
func (e *env) runDirect(ctx context.Context) (_ *Result, err error) {
	u, err := e.startUpstream(ctx)
	if err != nil {
		return nil, err
	}
	defer closeUpstream(u, &err)
	tokens, err := e.fetchTokens(ctx, u.TokenURL())
	if err != nil {
		return nil, err
	}
	e.progress("direct mode: fake provider at %s", u.Addr())
	clientTLS, _ := u.TLS()
	fleet, err := loadgen.Open(ctx, loadgen.FleetOptions{
		Addr:         u.Addr(),
		Connections:  e.o.Connections,
		Timeout:      clientTimeout,
		TLS:          clientTLS,
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

// closeUpstream closes u and reports its error through *err unless an
// earlier error is there.
func closeUpstream(u upstream, err *error) {
	if cerr := u.Close(); cerr != nil && *err == nil {
		*err = cerr
	}
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
func (e *env) measure(ctx context.Context, m Mode, fleet *loadgen.Fleet, u upstream, p proxy) (*Result, error) {
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
	before, err := u.Counters(ctx)
	if err != nil {
		return nil, err
	}
	clock0 := readCPUClock()
	var cpu0 time.Duration
	cpuOK := false
	if p != nil {
		cpu0, cpuOK = p.CPU()
	}
	up0, upOK := u.CPU()
	sum, err := fleet.Run(ctx, e.load())
	if err != nil {
		return nil, err
	}
	clock1 := readCPUClock()
	up1, upOK1 := u.CPU()
	after, err := u.Counters(ctx)
	if err != nil {
		return nil, err
	}
	r := &Result{
		Mode:                   string(m),
		Elapsed:                sum.Elapsed,
		Delivered:              after.FP.Messages - before.FP.Messages,
		Accepted:               sum.OK,
		Refused:                sum.Refused,
		Errors:                 sum.Errors,
		LatencyP50:             sum.Percentile(50),
		LatencyP99:             sum.Percentile(99),
		SessionsOpened:         after.FP.Connections,
		Logins:                 after.FP.Logins,
		LoginFailures:          after.FP.LoginFailures,
		PeakSessionsPerAccount: after.FP.MaxConcurrentSessionsPerUser,
		FirstRefusal:           sum.FirstRefusal,
		FirstError:             sum.FirstError,
	}
	if after.Relayed {
		r.RoundTrips = after.Relay.RoundTrips - before.Relay.RoundTrips
		r.roundTripsCounted = true
	}
	if cpuOK {
		if cpu1, ok := p.CPU(); ok {
			r.ProxyCPU = cpu1 - cpu0
			r.proxyCPUMeasured = true
		}
	}
	if upOK && upOK1 {
		r.ProviderCPU = up1 - up0
		r.providerCPUMeasured = true
	}
	if use, ok := cpuUsage(clock0, clock1, r.ProxyCPU, r.ProviderCPU, r.Elapsed); ok {
		r.CPU = &CPUCores{Bench: use.bench, Provider: use.provider, Proxy: use.proxy, Other: use.other}
	}
	r.derive()
	e.progress("%s mode: %d delivered in %.1fs", m, r.Delivered, r.Elapsed.Seconds())
	return r, nil
}
