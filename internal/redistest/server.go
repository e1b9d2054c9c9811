package redistest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options change how Start runs a server. The zero value is a server that
// persists nothing (--save ” --appendonly no), as most tests want.
type Options struct {
	// AppendOnly turns on AOF persistence (appendfsync always), so that a
	// Restart comes back with the data.
	AppendOnly bool
	// Args are extra redis-server arguments, e.g. "--maxmemory-policy",
	// "allkeys-lru".
	Args []string
}

// Server is one redis-server process on loopback.
type Server struct {
	// Addr is host:port on 127.0.0.1.
	Addr string
	// Dir is the server's working directory (data files, log).
	Dir string

	t    testing.TB
	bin  string
	args []string

	mu    sync.Mutex
	cmd   *exec.Cmd                   // nil while stopped
	exits map[*exec.Cmd]chan struct{} // closed when the process has exited
}

// Require returns the path of redis-server. Without it the test is
// skipped, or failed when CI=true.
func Require(t testing.TB) string {
	t.Helper()
	return require(t, "redis-server", "redis-server")
}

func require(t testing.TB, prog, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed (Debian package %s) and CI=true: these tests must run in CI", prog, pkg)
	}
	t.Skipf("%s is not installed: apt-get install %s to run this test", prog, pkg)
	return ""
}

// Start runs a private redis-server on a free loopback port and returns
// it once it answers PING. t.Cleanup kills it and waits for it.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	bin := Require(t)
	dir := t.TempDir()
	args := []string{"--bind", "127.0.0.1", "--dir", dir, "--save", ""}
	if o.AppendOnly {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	args = append(args, o.Args...)
	s := &Server{Dir: dir, t: t, bin: bin, args: args}
	t.Cleanup(s.Stop)
	s.start(t, "")
	return s
}

// start launches the server, on addr or on a new free port when addr is
// "", and waits until it answers.
func (s *Server) start(t testing.TB, addr string) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		a := addr
		if a == "" {
			a = freeAddr(t)
		}
		_, port, _ := net.SplitHostPort(a)
		logf := filepath.Join(s.Dir, "redis-"+port+".log")
		cmd := exec.Command(s.bin, append([]string{"--port", port, "--logfile", logf}, s.args...)...)
		cmd.Dir = s.Dir
		if err := cmd.Start(); err != nil {
			t.Fatalf("start redis-server: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		err := waitReady(a, exited, 30*time.Second)
		if err == nil {
			s.mu.Lock()
			s.Addr, s.cmd = a, cmd
			s.mu.Unlock()
			// The waiting goroutine above owns cmd.Wait; Stop waits for it.
			s.waitFor(cmd, exited)
			return
		}
		_ = cmd.Process.Kill()
		<-exited
		log, _ := os.ReadFile(logf)
		// A port taken between freeAddr and the bind: try another one.
		if addr == "" && attempt < 5 && strings.Contains(string(log), "Address already in use") {
			continue
		}
		t.Fatalf("redis-server on %s: %v\n%s", a, err, log)
	}
}

func (s *Server) waitFor(cmd *exec.Cmd, exited chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exits == nil {
		s.exits = map[*exec.Cmd]chan struct{}{}
	}
	s.exits[cmd] = exited
}

// Stop kills the server (SIGKILL: no save on the way out) and waits for it
// to exit. The data of a server without AppendOnly is gone. Stopping a
// stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	var exited chan struct{}
	if cmd != nil {
		exited = s.exits[cmd]
		delete(s.exits, cmd)
	}
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Restart starts a stopped server again on the same address: empty unless
// it was started with AppendOnly.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start(s.t, s.Addr)
}

// Running reports whether the server process is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitReady polls addr with PING until it answers PONG (or LOADING is
// over), the process exits, or timeout passes.
func waitReady(addr string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited")
		default:
		}
		reply, err := Do(addr, "PING")
		if (err == nil && reply == "PONG") || (err != nil && strings.Contains(err.Error(), "NOAUTH")) {
			return nil // answering; a server with ACLs answers NOAUTH
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no PONG within %v (last: %q, %v)", timeout, reply, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Do sends one command to addr on a new connection and returns the reply
// as text: a simple string, an error ("-ERR ..." as an error), an integer,
// or a bulk string (arrays are not decoded). It is for setting up tests
// (CONFIG SET, FLUSHALL, INFO), not for the code under test.
func Do(addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	return readReply(bufio.NewReader(c))
}

// readReply reads one RESP2 reply; an array's elements are joined with
// newlines.
func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("redis: %s", line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		parts := make([]string, n)
		for i := range parts {
			if parts[i], err = readReply(r); err != nil {
				return "", err
			}
		}
		return strings.Join(parts, "\n"), nil
	}
	return line, nil
}
