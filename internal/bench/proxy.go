package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/service"
)

const (
	readyTimeout = 15 * time.Second // the proxy listens within this
	stopTimeout  = 10 * time.Second // SIGTERM, then SIGKILL
	// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
	// 100 on every Linux architecture Go supports (proc(5)).
	clockTicks = 100
)

// proxy is the proxy under test, however it runs.
type proxy interface {
	Addr() string
	// CPU is the proxy's user+system CPU time so far; false when it
	// cannot be told apart from the benchmark's own.
	CPU() (time.Duration, bool)
	// PeakRSS is the proxy's peak resident set size in bytes (VmHWM).
	PeakRSS() (int64, bool)
	// Stop shuts the proxy down and waits for it.
	Stop() error
}

// proxyFiles are the generated files a proxy runs from.
type proxyFiles struct {
	dir, config, accounts string
	conns                 int // --global-concurrency
	logLevel              string
}

// subprocess is the proxy as a child process.
type subprocess struct {
	*child
	addr string
}

// startSubprocess runs "exe serve" on the generated files and waits until
// it answers on its port. On any error the child is killed and reaped.
func startSubprocess(ctx context.Context, exe string, f proxyFiles) (*subprocess, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(f.dir, "proxy.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.CommandContext(ctx, exe, "serve",
		"--config", f.config, "--accounts", f.accounts,
		"--host", "127.0.0.1", "--port", strconv.Itoa(port),
		"--global-concurrency", strconv.Itoa(f.conns),
		"--state-dir", f.dir, "--admin-host", "", // no admin API: its port could be taken
		"--log-level", f.logLevel, "--log-format", "text")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = f.dir
	cmd.WaitDelay = stopTimeout
	c, err := startChild(cmd, logPath)
	if err != nil {
		return nil, fmt.Errorf("start proxy %s: %w", exe, err)
	}
	p := &subprocess{child: c, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	if err := p.waitReady(ctx); err != nil {
		_ = p.Stop()
		return nil, fmt.Errorf("proxy did not start: %w%s", err, p.logTail())
	}
	return p, nil
}

// waitReady polls until the proxy sends its 220 greeting.
func (p *subprocess) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		if greets(ctx, p.addr) {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited: %v", p.waitErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// greets reports whether an SMTP server at addr sends a 220 greeting.
func greets(ctx context.Context, addr string) bool {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "220") {
		return false
	}
	_, _ = c.Write([]byte("QUIT\r\n"))
	return true
}

func (p *subprocess) Addr() string { return p.addr }

// Stop sends SIGTERM (graceful shutdown), and SIGKILL if the proxy is
// still running after stopTimeout.
func (p *subprocess) Stop() error {
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	if err := p.wait(stopTimeout); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	return nil
}

// freePort asks the kernel for a free loopback port. Another process could
// take it before the proxy binds it; then the start fails and says so.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// inProcess is the proxy as a service inside this process.
type inProcess struct {
	svc    *service.Service
	hc     *http.Client
	cancel context.CancelFunc
	errc   chan error
}

func startInProcess(ctx context.Context, f proxyFiles) (*inProcess, error) {
	hc := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	svc, err := service.New(service.Options{
		Load: config.LoadOptions{
			ConfigPath: f.config, AccountsPath: f.accounts,
			ConfigExplicit: true, SearchDirs: []string{},
		},
		Listen:            "127.0.0.1:0",
		GlobalConcurrency: f.conns,
		HTTPClient:        hc,
		Logger:            slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &inProcess{svc: svc, hc: hc, cancel: cancel, errc: make(chan error, 1)}
	go func() { p.errc <- svc.Run(ctx) }() // owned by p: Stop waits
	return p, nil
}

func (p *inProcess) Addr() string               { return p.svc.Addr().String() }
func (p *inProcess) CPU() (time.Duration, bool) { return 0, false }
func (p *inProcess) PeakRSS() (int64, bool)     { return 0, false }

func (p *inProcess) Stop() error {
	p.cancel()
	err := <-p.errc
	p.hc.CloseIdleConnections()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}
