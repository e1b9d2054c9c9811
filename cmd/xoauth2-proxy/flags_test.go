package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The serve flags of README "Operations" reach the service. The tests
// that run serve signal their own process to stop it: none is parallel.

// serving is a serve command started by a test.
type serving struct {
	stderr *lockedBuffer
	done   chan int
}

// startServe runs serve with a dry-run account and the given flags; the
// test must call stop before it returns.
func startServe(t *testing.T, flags ...string) *serving {
	t.Helper()
	dir := t.TempDir()
	accounts, cfg := filepath.Join(dir, "accounts.json"), filepath.Join(dir, "config.json")
	writeFile(t, cfg, `{}`)
	writeFile(t, accounts, `[{"account_id":"a1","email":"a@example.com","provider":"gmail","client_id":"c","client_secret":"s","refresh_token":"r"}]`)
	s := &serving{stderr: &lockedBuffer{}, done: make(chan int, 1)}
	go func() {
		s.done <- run(append([]string{"--config", cfg, "--accounts", accounts, "--dry-run"}, flags...),
			strings.NewReader(""), &bytes.Buffer{}, s.stderr)
	}()
	return s
}

// alive fails the test if serve has already exited.
func (s *serving) alive(t *testing.T) {
	t.Helper()
	select {
	case code := <-s.done:
		t.Fatalf("serve exited %d:\n%s", code, s.stderr.String())
	default:
	}
}

// stop sends SIGTERM and waits for serve to exit 0.
func (s *serving) stop(t *testing.T) {
	t.Helper()
	s.alive(t)
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-s.done:
		if code != 0 {
			t.Fatalf("serve exited %d:\n%s", code, s.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
}

func httpGet(url, token string) int {
	req, _ := http.NewRequest("GET", url, nil)
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

func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// TestServe_adminOnlyWithTokenFileAndAdminHost: --admin-only serves the
// admin API (ready, with the bearer token from --admin-token-file, on
// --admin-host) and nothing on the SMTP port. Not parallel: it signals
// its own process.
func TestServe_adminOnlyWithTokenFileAndAdminHost(t *testing.T) {
	t.Setenv("XOAUTH2_PROXY_ADMIN_TOKEN", "") // the file alone sets it
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	writeFile(t, tokenFile, "file-token-0123456789abcdef-0123\n")
	smtpPort, adminPort := freePort(t), freePort(t)
	s := startServe(t, "--admin-only", "--admin-token-file", tokenFile,
		"--port", strconv.Itoa(smtpPort), "--admin-host", "127.0.0.3", "--admin-port", strconv.Itoa(adminPort))
	defer s.stop(t)
	base := "http://127.0.0.3:" + strconv.Itoa(adminPort)
	waitFor(t, "readyz", func() bool { s.alive(t); return httpGet(base+"/readyz", "") == 200 })
	if code := httpGet(base+"/admin/status", ""); code != 401 {
		t.Errorf("admin without token: %d", code)
	}
	if code := httpGet(base+"/admin/status", "wrong"); code != 401 {
		t.Errorf("admin with a wrong token: %d", code)
	}
	if code := httpGet(base+"/admin/status", "file-token-0123456789abcdef-0123"); code != 200 {
		t.Errorf("admin with the file's token: %d", code)
	}
	if listening("127.0.0.1:" + strconv.Itoa(adminPort)) {
		t.Error("admin API on 127.0.0.1, not only on --admin-host 127.0.0.3")
	}
	if listening("127.0.0.1:" + strconv.Itoa(smtpPort)) {
		t.Error("--admin-only: something listens on the SMTP port")
	}
}

// TestServe_hostGlobalConcurrencyAndJSONLogs: --host picks the SMTP
// address, --global-concurrency 1 refuses a second client with 421 4.7.0
// and closes it, and --log-format json writes one JSON object per line.
// Not parallel: it signals its own process.
func TestServe_hostGlobalConcurrencyAndJSONLogs(t *testing.T) {
	port := freePort(t)
	addr := "127.0.0.2:" + strconv.Itoa(port)
	s := startServe(t, "--host", "127.0.0.2", "--port", strconv.Itoa(port), "--admin-host", "",
		"--global-concurrency", "1", "--log-format", "json")
	var first net.Conn
	waitFor(t, "the SMTP listener on --host", func() bool {
		s.alive(t)
		var err error
		first, err = net.Dial("tcp", addr)
		return err == nil
	})
	br := bufio.NewReader(first)
	_ = first.SetDeadline(time.Now().Add(10 * time.Second))
	if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "220 ") {
		t.Fatalf("first client: %q %v", l, err)
	}
	if listening("127.0.0.1:" + strconv.Itoa(port)) {
		t.Error("SMTP listener on 127.0.0.1, not only on --host 127.0.0.2")
	}
	second, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = second.SetDeadline(time.Now().Add(10 * time.Second))
	sbr := bufio.NewReader(second)
	if l, err := sbr.ReadString('\n'); err != nil || !strings.HasPrefix(l, "421 4.7.0") {
		t.Errorf("second client over --global-concurrency 1: %q %v", l, err)
	}
	if l, err := sbr.ReadString('\n'); err == nil {
		t.Errorf("second client not closed after the 421: %q", l)
	}
	second.Close()
	first.Close()
	s.stop(t)

	lines := strings.Split(strings.TrimSpace(s.stderr.String()), "\n")
	if len(lines) < 3 {
		t.Fatalf("too few log lines: %q", lines)
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not one JSON object: %q: %v", l, err)
		}
		if _, ok := m["msg"].(string); !ok {
			t.Errorf("no msg in %q", l)
		}
		if _, ok := m["level"].(string); !ok {
			t.Errorf("no level in %q", l)
		}
	}
	if !strings.Contains(s.stderr.String(), `"msg":"stopped"`) {
		t.Errorf("no stop line in the JSON log:\n%s", s.stderr.String())
	}
}

// TestServe_badLogFlagsExitNamingTheFlag: an unknown --log-level or
// --log-format makes serve exit non-zero with the flag's name, before it
// listens. The files do not exist, so a serve that ignored the flag would
// fail too, without the flag's name.
func TestServe_badLogFlagsExitNamingTheFlag(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	files := []string{"--config", filepath.Join(dir, "none.json"), "--accounts", filepath.Join(dir, "none-accounts.json"), "--admin-host", ""}
	for _, tc := range []struct{ flag, value string }{
		{"--log-level", "loud"},
		{"--log-format", "xml"},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			t.Parallel()
			code, _, errs := runCmd(t, "", append([]string{"serve", tc.flag, tc.value}, files...)...)
			if code == 0 || !strings.Contains(errs, tc.flag) {
				t.Errorf("exit %d, stderr %q; want a refusal naming %s", code, errs, tc.flag)
			}
		})
	}
}

// TestServe_shortAdminTokenExitsSayingHowToMakeOne: serve refuses an admin
// token under 32 characters before it reads a file or listens, and says
// how to make one; the token itself is not printed.
func TestServe_shortAdminTokenExitsSayingHowToMakeOne(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "admin-token")
	writeFile(t, tokenFile, "short-guessable\n")
	code, _, errs := runCmd(t, "", "serve", "--admin-token-file", tokenFile, "--admin-port", "0",
		"--config", filepath.Join(dir, "none.json"), "--accounts", filepath.Join(dir, "none-accounts.json"))
	if code == 0 || !strings.Contains(errs, "openssl rand -hex 32") || strings.Contains(errs, "short-guessable") {
		t.Errorf("exit %d, stderr %q; want a refusal saying how to make a token", code, errs)
	}
}
