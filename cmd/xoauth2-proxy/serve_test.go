package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestServe_adminAPIReloadAndSignals runs the real serve command: the
// admin API answers on loopback with the token from the environment,
// SIGHUP reloads, SIGTERM shuts down cleanly. Not parallel: it signals
// its own process.
func TestServe_adminAPIReloadAndSignals(t *testing.T) {
	t.Setenv("XOAUTH2_PROXY_ADMIN_TOKEN", "serve-test-token-0123456789abcdef")
	dir := t.TempDir()
	accounts, cfg := filepath.Join(dir, "accounts.json"), filepath.Join(dir, "config.json")
	writeFile(t, cfg, `{"global": {"smtp": {"server_hostname": "serve-test"}}}`)
	writeFile(t, accounts, `[{"account_id":"a1","email":"a@example.com","provider":"gmail","client_id":"c","client_secret":"s","refresh_token":"r"}]`)
	smtpPort, adminPort := freePort(t), freePort(t)
	var stderr lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"--config", cfg, "--accounts", accounts, "--dry-run",
			"--port", strconv.Itoa(smtpPort), "--admin-port", strconv.Itoa(adminPort)}, strings.NewReader(""), &bytes.Buffer{}, &stderr)
	}()
	base := "http://127.0.0.1:" + strconv.Itoa(adminPort)
	get := func(path, token string) int {
		req, _ := http.NewRequest("GET", base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor(t, "readyz", func() bool {
		select {
		case code := <-done:
			t.Fatalf("serve exited %d:\n%s", code, stderr.String())
		default:
		}
		return get("/readyz", "") == 200
	})
	if code := get("/admin/status", ""); code != 401 {
		t.Errorf("admin without token: %d", code)
	}
	if code := get("/admin/status", "serve-test-token-0123456789abcdef"); code != 200 {
		t.Errorf("admin with token: %d", code)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "reload in the log", func() bool { return strings.Contains(stderr.String(), "msg=reloaded") })
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exited %d:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
	if !strings.Contains(stderr.String(), "msg=stopped") {
		t.Errorf("no clean stop in the log:\n%s", stderr.String())
	}
}

// TestServe_shutdownTimeout: --shutdown-timeout bounds how long SIGTERM
// waits for a transaction in flight. A client stalls in the middle of its
// message; with the default (30 s) serve would wait far longer than this
// test does. Not parallel: it signals its own process.
func TestServe_shutdownTimeout(t *testing.T) {
	port := freePort(t)
	s := startServe(t, "--admin-host", "", "--port", strconv.Itoa(port), "--shutdown-timeout", "300ms")
	stderr, done := s.stderr, s.done
	var c net.Conn
	waitFor(t, "the SMTP listener", func() bool {
		var err error
		c, err = net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		return err == nil
	})
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	expect := func(prefix string) {
		t.Helper()
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("waiting for %q: %v", prefix, err)
			}
			if strings.HasPrefix(l, prefix) {
				return
			}
			if len(l) < 4 || l[3] != '-' {
				t.Fatalf("waiting for %q, got %q", prefix, l)
			}
		}
	}
	expect("220 ")
	// AUTH PLAIN a@example.com / any password: no smtp_password, loopback is trusted.
	fmt.Fprintf(c, "EHLO t\r\nAUTH PLAIN AGFAZXhhbXBsZS5jb20AeA==\r\n")
	expect("250 ")
	expect("235 ")
	fmt.Fprintf(c, "MAIL FROM:<s@example.com>\r\nRCPT TO:<r@example.net>\r\nDATA\r\n")
	expect("250 ")
	expect("250 ")
	expect("354 ")
	fmt.Fprintf(c, "Subject: stalled\r\n\r\nthe rest never comes\r\n")

	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exited %d:\n%s", code, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("serve still waiting for the stalled transaction 20 s after SIGTERM:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), `msg="shutting down" timeout=300ms`) {
		t.Errorf("the shutdown did not use --shutdown-timeout:\n%s", stderr.String())
	}
}

func TestServe_badShutdownTimeout(t *testing.T) {
	t.Parallel()
	code, _, errs := runCmd(t, "", "serve", "--shutdown-timeout", "0s")
	if code == 0 || !strings.Contains(errs, "--shutdown-timeout") {
		t.Errorf("exit %d, stderr %q; want a refusal naming --shutdown-timeout", code, errs)
	}
}

func TestReadableByOthers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		mode os.FileMode
		want string
	}{
		{0o600, ""},
		{0o400, ""},
		{0o640, "readable by its group (mode 0640)"},
		{0o644, "readable by every user (mode 0644)"},
	} {
		p := filepath.Join(dir, fmt.Sprintf("token-%o", tc.mode))
		writeFile(t, p, "secret\n")
		if err := os.Chmod(p, tc.mode); err != nil {
			t.Fatal(err)
		}
		if got := readableByOthers(p); got != tc.want {
			t.Errorf("mode %04o: %q, want %q", tc.mode, got, tc.want)
		}
	}
	if got := readableByOthers(""); got != "" {
		t.Errorf("no file: %q", got)
	}
}
