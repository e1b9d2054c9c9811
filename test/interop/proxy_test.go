//go:build interop

package interop

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// proxy is one xoauth2-proxy process with its own directory DIR/proxy-NAME/
// holding config.json, accounts.json, its --state-dir state/ (token-state.json)
// and proxy.log (debug level). With a listener certificate in its config it
// offers STARTTLS on port and implicit TLS on tlsPort (--tls-port). Its PID
// is in DIR/pids/proxy-NAME.pid while it runs, so that run.sh can stop it
// if the test binary dies first.
type proxy struct {
	t        *testing.T
	p        *peers
	name     string
	port     int
	tlsPort  int // implicit TLS; 0: none (no listener certificate)
	stateDir string
	cfgPath  string
	acctPath string
	logPath  string
	pidPath  string
	cmd      *exec.Cmd
	exited   chan struct{}
}

// proxyConfig is the config.json of the suite's proxies: the listener has
// a certificate from the private CA (STARTTLS, and implicit TLS on the
// port startProxy picks); upstream TLS trusts the same CA; trusted_networks
// keep their default (loopback), so AUTH without TLS works from 127.0.0.1;
// tokens are refreshed 1 s before expiry; sending budgets are off (Gmail's
// 2,000 a day would stop scenario 3).
func (p *peers) proxyConfig(pool map[string]any) map[string]any {
	gmail := map[string]any{"rate_limiting": map[string]any{"enabled": false}}
	if pool != nil {
		gmail["connection_pool"] = pool
	}
	return map[string]any{
		"_comment": "xoauth2-proxy interop suite",
		"global": map[string]any{
			"oauth2": map[string]any{"token_refresh_buffer_seconds": 1},
			"smtp": map[string]any{
				"upstream_ca_file": p.caFile, "server_hostname": "proxy.interop.test",
				"tls_cert_file": p.proxyCert, "tls_key_file": p.proxyKey,
			},
			"timeouts": map[string]any{"connection_acquire_timeout": 10, "smtp_timeout": 20},
		},
		"providers": map[string]any{"gmail": gmail},
	}
}

// setSMTP sets a key of a proxyConfig's "global.smtp".
func setSMTP(cfg map[string]any, key string, v any) {
	cfg["global"].(map[string]any)["smtp"].(map[string]any)[key] = v
}

// startProxy writes the files and starts the proxy on port (0: a free
// one), and, when cfg has a listener certificate, with implicit TLS on
// another free port. It is stopped when the test ends; its log is shown if
// the test failed.
func (p *peers) startProxy(t *testing.T, name string, cfg map[string]any, accts []*account, port int) *proxy {
	t.Helper()
	if port == 0 {
		port = freePort(t)
	}
	tlsPort := 0
	if smtp, _ := cfg["global"].(map[string]any)["smtp"].(map[string]any); smtp["tls_cert_file"] != nil {
		for tlsPort == 0 || tlsPort == port {
			tlsPort = freePort(t)
		}
	}
	dir := p.path("proxy-" + name)
	os.RemoveAll(dir) // state of an earlier run against the same peers
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	x := &proxy{
		t: t, p: p, name: name, port: port, tlsPort: tlsPort,
		stateDir: filepath.Join(dir, "state"),
		cfgPath:  filepath.Join(dir, "config.json"),
		acctPath: filepath.Join(dir, "accounts.json"),
		logPath:  filepath.Join(dir, "proxy.log"),
		pidPath:  p.path("pids", "proxy-"+name+".pid"),
	}
	seeds := make([]map[string]any, len(accts))
	for i, a := range accts {
		seeds[i] = a.seed(p)
	}
	writeJSON(t, x.cfgPath, cfg)
	writeJSON(t, x.acctPath, seeds)
	x.start()
	t.Cleanup(func() {
		x.stop()
		if t.Failed() {
			t.Logf("---- %s (last 60 lines)\n%s", x.logPath, tail(x.logPath, 60))
		}
	})
	return x
}

func (x *proxy) addr() string { return "127.0.0.1:" + strconv.Itoa(x.port) }

// addrTLS is the implicit TLS listener's address.
func (x *proxy) addrTLS() string {
	if x.tlsPort == 0 {
		x.t.Fatalf("proxy %s has no implicit TLS port", x.name)
	}
	return "127.0.0.1:" + strconv.Itoa(x.tlsPort)
}

func (x *proxy) start() {
	t := x.t
	t.Helper()
	logf, err := os.OpenFile(x.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	args := []string{"--config", x.cfgPath, "--accounts", x.acctPath, "--state-dir", x.stateDir,
		"--host", "127.0.0.1", "--port", strconv.Itoa(x.port), "--log-level", "debug",
		"--admin-port", "0"} // the default 9090 would collide with other proxies on the machine
	if x.tlsPort != 0 {
		args = append(args, "--tls-port", strconv.Itoa(x.tlsPort))
	}
	x.cmd = exec.Command(x.p.proxyBin, args...)
	x.cmd.Stdout, x.cmd.Stderr = logf, logf
	if err := x.cmd.Start(); err != nil {
		t.Fatalf("start proxy %s: %v", x.name, err)
	}
	os.WriteFile(x.pidPath, []byte(strconv.Itoa(x.cmd.Process.Pid)+"\n"), 0o644)
	x.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		cmd.Wait()
		close(done)
	}(x.cmd, x.exited)
	up := eventually(10*time.Second, func() bool {
		select {
		case <-x.exited:
			return true
		default:
		}
		c, err := net.DialTimeout("tcp", x.addr(), 200*time.Millisecond)
		if err != nil {
			return false
		}
		c.Close()
		if x.tlsPort == 0 {
			return true
		}
		// A whole handshake, verified against the CA (a bare connect
		// would log a failed handshake).
		d := &net.Dialer{Timeout: 200 * time.Millisecond}
		tc, err := tls.DialWithDialer(d, "tcp", "127.0.0.1:"+strconv.Itoa(x.tlsPort), tlsConfig(t, x.p.caFile))
		if err != nil {
			return false
		}
		tc.Close()
		return true
	})
	select {
	case <-x.exited:
		t.Fatalf("proxy %s exited at start:\n%s", x.name, tail(x.logPath, 30))
	default:
	}
	if !up {
		t.Fatalf("proxy %s does not listen on port %d (or its implicit TLS port %d does not complete a verified handshake):\n%s", x.name, x.port, x.tlsPort, tail(x.logPath, 30))
	}
}

// stop ends the proxy with SIGTERM (graceful), by PID, and waits for it.
func (x *proxy) stop() {
	if x.cmd == nil {
		return
	}
	x.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-x.exited:
	case <-time.After(40 * time.Second):
		x.t.Errorf("proxy %s did not stop within 40 s of SIGTERM; killing it", x.name)
		x.cmd.Process.Kill()
		<-x.exited
	}
	os.Remove(x.pidPath)
	x.cmd = nil
}

// kill ends the proxy with SIGKILL, as a crash would, and waits for it.
func (x *proxy) kill() {
	if x.cmd == nil {
		return
	}
	x.cmd.Process.Kill()
	<-x.exited
	os.Remove(x.pidPath)
	x.cmd = nil
}

// log returns everything the proxy logged so far, once its batched log
// has caught up.
func (x *proxy) log() string {
	settle(x.logPath)
	b, _ := os.ReadFile(x.logPath)
	return string(b)
}

// sessionsOpened counts "upstream session opened" lines of an account in text.
func sessionsOpened(text, accountID string) int {
	return len(withField(linesWith(text, "upstream session opened"), "account", accountID))
}

// withField keeps the slog text lines that have key=value as a whole field.
func withField(lines []string, key, value string) []string {
	var out []string
	for _, l := range lines {
		for _, f := range strings.Fields(l) {
			if f == key+"="+value {
				out = append(out, l)
				break
			}
		}
	}
	return out
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// messageLines returns the proxy's "message" log lines (one per message
// outcome) in text, optionally only those with code=code.
func messageLines(text string, code int) []string {
	subs := []string{"msg=message "}
	if code != 0 {
		subs = append(subs, fmt.Sprintf("code=%d ", code))
	}
	var out []string
	for _, l := range linesWith(text, subs...) {
		if !strings.Contains(l, "dry_run") {
			out = append(out, l)
		}
	}
	return out
}
