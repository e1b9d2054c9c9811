//go:build linux

package upstream_test

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

// blackHole returns a loopback address whose TCP handshake never
// completes: a listener with a backlog of 0 that never accepts, its accept
// queue filled by one connection. Linux then drops further SYNs
// (tcp_conn_request: accept queue full) and the client keeps
// retransmitting, as with a firewalled provider.
func blackHole(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*syscall.SockaddrInet4).Port}).String()
	// Fill the queue: a backlog of 0 holds one connection. The kernel
	// completes these handshakes itself; the first one it refuses to
	// answer shows the queue is full.
	for i := 0; ; i++ {
		if i == 8 {
			t.Fatalf("%s kept completing handshakes: no black hole on this kernel", addr)
		}
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err != nil {
			break
		}
		t.Cleanup(func() { c.Close() })
	}
	return addr
}

// TestDial_blackHoleTimesOut: the built-in dialer gives up on a server that
// never answers the SYN after CommandTimeout, with a timeout error, instead
// of waiting for the kernel's two minutes of retransmissions.
func TestDial_blackHoleTimesOut(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(blackHole(t))
	cfg.CommandTimeout = 300 * time.Millisecond
	// No context deadline: only the configured connect timeout ends this.
	c, err := upstream.Dial(context.Background(), cfg)
	if err == nil {
		c.Close()
		t.Fatal("Dial to a black hole succeeded")
	}
	checkDialErr(t, err, "connect", 0, nil)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("error %v is not a timeout", err)
	}
	// The dialer's own deadline, not the kernel's ETIMEDOUT after its SYN
	// retries (a timeout too). Go reports the deadline either way,
	// depending on whether the poller or the context noticed it first.
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("error %v is not the connect deadline", err)
	}
}
