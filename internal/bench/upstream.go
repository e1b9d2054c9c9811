package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
)

// upstream is the fake provider a mode sends to, behind the latency relay
// unless Options.NoRelay, running in this process or in its own.
type upstream interface {
	// Addr is where clients of the provider connect (the relay, if any).
	Addr() string
	TokenURL() string
	// TLS is what a client of the provider trusts, and the same CA as a
	// PEM file for the proxy; nil and "" without Options.TLS.
	TLS() (*tls.Config, string)
	Counters(ctx context.Context) (counters, error)
	// CPU is the provider process's CPU time so far; false when it runs
	// in this process.
	CPU() (time.Duration, bool)
	Close() error
}

// counters are the upstream's counters at one moment.
type counters struct {
	FP      fakeprovider.Stats `json:"fp"`
	Relay   RelayStats         `json:"relay"`
	Relayed bool               `json:"relayed"` // false with NoRelay
}

// upstreamSpec is what an upstream is started with; the parent sends it
// to an upstream process as JSON.
type upstreamSpec struct {
	Accounts []benchAccount `json:"accounts"`
	TLS      bool           `json:"tls"`
	Latency  time.Duration  `json:"latency"`
	NoRelay  bool           `json:"no_relay"`
	Chunking bool           `json:"chunking"`
}

func (e *env) upstreamSpec() upstreamSpec {
	return upstreamSpec{Accounts: e.accts, TLS: e.o.TLS, Latency: e.o.Latency, NoRelay: e.o.NoRelay, Chunking: e.o.Chunking}
}

// startUpstream starts a fresh upstream for one mode: in its own process
// with the Subprocess runner (a provider is never in the client's process
// in real life, and sharing one Go runtime would let the direct mode's
// client and provider hand work to each other without the wake-ups that
// every hop between processes costs), in this process otherwise or when
// Options.ProviderInProcess says so.
func (e *env) startUpstream(ctx context.Context) (upstream, error) {
	if e.o.Runner == Subprocess && !e.o.ProviderInProcess {
		return startUpstreamProcess(ctx, e.o.Executable, e.dir, e.upstreamSpec())
	}
	u, err := startLocalUpstream(e.upstreamSpec())
	if err != nil {
		return nil, err
	}
	if u.caFile, err = writeCA(e.dir, u.caPEM); err != nil {
		u.Close()
		return nil, err
	}
	return u, nil
}

// localUpstream is a fake provider and relay in this process.
type localUpstream struct {
	fp        *fakeprovider.Provider
	relay     *LatencyRelay // nil with NoRelay
	addr      string
	caPEM     []byte
	clientTLS *tls.Config
	caFile    string // written by the parent when needed
}

func startLocalUpstream(s upstreamSpec) (*localUpstream, error) {
	u := &localUpstream{}
	var serverTLS *tls.Config
	if s.TLS {
		srv, roots, caPEM, err := fakeprovider.SelfSignedTLS("127.0.0.1", "localhost")
		if err != nil {
			return nil, err
		}
		serverTLS, u.caPEM = srv, caPEM
		u.clientTLS = &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	}
	fp, err := fakeprovider.Start(fakeprovider.Options{
		TLSConfig:         serverTLS,
		RequireTLSForAuth: serverTLS != nil,
		DiscardBodies:     true,
		Chunking:          s.Chunking,
	})
	if err != nil {
		return nil, err
	}
	addAccounts(fp, s.Accounts)
	u.fp, u.addr = fp, fp.SMTPAddr()
	if !s.NoRelay {
		if u.relay, err = StartRelay(fp.SMTPAddr(), s.Latency); err != nil {
			fp.Close()
			return nil, err
		}
		u.addr = u.relay.Addr()
	}
	return u, nil
}

func (u *localUpstream) Addr() string     { return u.addr }
func (u *localUpstream) TokenURL() string { return u.fp.TokenURL() }

func (u *localUpstream) TLS() (*tls.Config, string) { return u.clientTLS, u.caFile }

func (u *localUpstream) Counters(context.Context) (counters, error) {
	c := counters{FP: u.fp.Stats()}
	if u.relay != nil {
		c.Relay, c.Relayed = u.relay.Stats(), true
	}
	return c, nil
}

func (u *localUpstream) CPU() (time.Duration, bool) { return 0, false }

func (u *localUpstream) Close() error {
	if u.relay != nil {
		u.relay.Close()
	}
	return u.fp.Close()
}

// writeCA writes the CA PEM to dir for the proxy's upstream_ca_file.
func writeCA(dir string, caPEM []byte) (string, error) {
	if caPEM == nil {
		return "", nil
	}
	f, err := os.CreateTemp(dir, "fake-provider-ca-*.pem")
	if err != nil {
		return "", err
	}
	if _, err := f.Write(caPEM); err != nil {
		f.Close()
		return "", err
	}
	return f.Name(), f.Close()
}

// upstreamReady is the line an upstream process prints once it listens.
type upstreamReady struct {
	SMTPAddr string `json:"smtp_addr"`
	TokenURL string `json:"token_url"`
	StatsURL string `json:"stats_url"`
	CAPEM    []byte `json:"ca_pem,omitempty"`
}

// ServeUpstream is the upstream process ("xoauth2-proxy bench-upstream",
// started by Run): it reads an upstream spec as JSON from in, starts the
// fake provider and the relay, prints one JSON line saying where they
// listen to out, serves its counters as JSON on a loopback HTTP port, and
// stops when in reaches EOF (the parent closed it, or died) or ctx ends.
func ServeUpstream(ctx context.Context, in io.Reader, out io.Writer) error {
	br := bufio.NewReader(in)
	var s upstreamSpec
	if err := json.NewDecoder(br).Decode(&s); err != nil {
		return fmt.Errorf("bench-upstream: read spec: %w", err)
	}
	u, err := startLocalUpstream(s)
	if err != nil {
		return err
	}
	defer u.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /counters", func(w http.ResponseWriter, r *http.Request) {
		c, _ := u.Counters(r.Context())
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(c)
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }() // owned here: Shutdown below
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		<-served
	}()
	ready := upstreamReady{SMTPAddr: u.addr, TokenURL: u.TokenURL(), StatsURL: "http://" + ln.Addr().String() + "/counters", CAPEM: u.caPEM}
	if err := json.NewEncoder(out).Encode(ready); err != nil {
		return err
	}
	eof := make(chan struct{})
	go func() { // ends at EOF, which the parent's exit or Close guarantees
		_, _ = io.Copy(io.Discard, br)
		close(eof)
	}()
	select {
	case <-eof:
	case <-ctx.Done():
	}
	return nil
}

// upstreamProcess is the parent's handle on an upstream process.
type upstreamProcess struct {
	proc      *child
	stdin     io.WriteCloser
	ready     upstreamReady
	clientTLS *tls.Config
	caFile    string
	hc        *http.Client
}

func startUpstreamProcess(ctx context.Context, exe, dir string, s upstreamSpec) (_ *upstreamProcess, err error) {
	logf, err := os.CreateTemp(dir, "upstream-*.log")
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.CommandContext(ctx, exe, "bench-upstream")
	cmd.Stderr = logf
	cmd.Dir = dir
	cmd.WaitDelay = stopTimeout
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p := &upstreamProcess{stdin: stdin, hc: &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}}
	if p.proc, err = startChild(cmd, logf.Name()); err != nil {
		return nil, fmt.Errorf("start fake provider process %s: %w", exe, err)
	}
	defer func() {
		if err != nil {
			_ = p.Close()
		}
	}()
	if err := json.NewEncoder(stdin).Encode(s); err != nil {
		return nil, fmt.Errorf("fake provider process: send spec: %w%s", err, p.proc.logTail())
	}
	got := make(chan error, 1)
	go func() { got <- json.NewDecoder(stdout).Decode(&p.ready) }() // ends when the child writes or exits
	select {
	case err := <-got:
		if err != nil {
			return nil, fmt.Errorf("fake provider process did not start: %w%s", err, p.proc.logTail())
		}
	case <-time.After(readyTimeout):
		return nil, fmt.Errorf("fake provider process did not start within %v%s", readyTimeout, p.proc.logTail())
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if p.ready.CAPEM != nil {
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(p.ready.CAPEM) {
			return nil, errors.New("fake provider process: bad CA PEM")
		}
		p.clientTLS = &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
		if p.caFile, err = writeCA(dir, p.ready.CAPEM); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *upstreamProcess) Addr() string               { return p.ready.SMTPAddr }
func (p *upstreamProcess) TokenURL() string           { return p.ready.TokenURL }
func (p *upstreamProcess) TLS() (*tls.Config, string) { return p.clientTLS, p.caFile }
func (p *upstreamProcess) CPU() (time.Duration, bool) { return p.proc.CPU() }

func (p *upstreamProcess) Counters(ctx context.Context) (counters, error) {
	var c counters
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.ready.StatsURL, nil)
	if err != nil {
		return c, err
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return c, fmt.Errorf("fake provider counters: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c, fmt.Errorf("fake provider counters: %s", resp.Status)
	}
	return c, json.NewDecoder(resp.Body).Decode(&c)
}

// Close closes the child's stdin, which stops it, and waits; SIGKILL
// after stopTimeout.
func (p *upstreamProcess) Close() error {
	p.hc.CloseIdleConnections()
	_ = p.stdin.Close()
	if err := p.proc.wait(stopTimeout); err != nil {
		return fmt.Errorf("fake provider process: %w", err)
	}
	if p.caFile != "" {
		_ = os.Remove(filepath.Clean(p.caFile))
	}
	return nil
}
