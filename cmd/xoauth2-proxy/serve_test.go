package main

import (
	"bytes"
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
	t.Setenv("XOAUTH2_PROXY_ADMIN_TOKEN", "serve-test-token")
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
	if code := get("/admin/status", "serve-test-token"); code != 200 {
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
