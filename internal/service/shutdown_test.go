package service_test

import (
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestShutdown_transactionInFlightFinishes: SIGTERM (Run's context ending)
// while a client is in the middle of DATA: the message completes with the
// upstream's 250, the next command gets 421 4.3.2, idle clients are told
// 421 at once, and upstream sessions are QUIT.
func TestShutdown_transactionInFlightFinishes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	busy := e.dial(t)
	busy.authPlain(userA, password, "235")
	idle := e.dial(t)
	busy.send("MAIL FROM:<" + userA + ">\r\nRCPT TO:<r@example.net>\r\nDATA\r\n")
	busy.expect("250")
	busy.expect("250")
	busy.expect("354")
	busy.send("Subject: in flight\r\n\r\nfirst half\r\n")

	stopped := make(chan error, 1)
	go func() { stopped <- e.stop() }()
	idle.expect("421 4.3.2")

	busy.send("second half\r\n.\r\n")
	busy.expect("250 2.0.0")
	busy.cmd("NOOP", "421 4.3.2")
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("shutdown did not finish")
	}
	m := e.fp.Messages()
	if len(m) != 1 || !strings.Contains(string(m[0].Data), "second half") {
		t.Fatalf("provider got %+v", m)
	}
}

// TestShutdown_unusedAdminConnectionClosed: a connection to the admin API
// that never carries a request (net/http's Transport dials such spares
// under concurrency) is closed when Run returns, not left open with its
// serve goroutine running.
func TestShutdown_unusedAdminConnectionClosed(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	idle, err := net.Dial("tcp", e.svc.AdminAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	// The accept loop takes connections in order: once a later one has
	// been answered, the idle one is the server's too.
	if code, _, raw := e.call(t, "GET", "/healthz", "", nil); code != 200 {
		t.Fatalf("healthz: %d %s", code, raw)
	}
	if err := e.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Run has returned, so the server side must be closed already: a
	// peek that does not wait sees the end of the stream.
	if !closedByPeer(t, idle) {
		t.Fatal("an admin connection that never sent a request is still open after Run returned")
	}
}

// closedByPeer reports, without waiting, whether the peer has already
// closed nc: a non-blocking peek reads end of file (or a reset).
func closedByPeer(t *testing.T, nc net.Conn) bool {
	t.Helper()
	sc, ok := nc.(syscall.Conn)
	if !ok {
		t.Fatalf("%T has no file descriptor", nc)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var rerr error
	buf := make([]byte, 1)
	if err := rc.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // never wait for readiness
	}); err != nil {
		t.Fatal(err)
	}
	switch {
	case rerr == nil:
		return n == 0
	case errors.Is(rerr, syscall.ECONNRESET):
		return true
	case errors.Is(rerr, syscall.EAGAIN), errors.Is(rerr, syscall.EWOULDBLOCK):
		return false
	}
	t.Fatalf("peek: %v", rerr)
	return false
}
