package smtpd_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/smtpd"
)

// idleConns is how many idle connections TestBadInput_manyIdleConnections
// opens: 5,000 by default (10,000 descriptors in this one process, client
// and server ends), or XOAUTH2_IDLE_CONNS. docs/RELIABILITY.md records
// runs against a real server process with 10,000 (the 400 MB target) and
// more (without -race, which allows 8,128 goroutines).
func idleConns(t *testing.T) int {
	n := 5000
	if v := os.Getenv("XOAUTH2_IDLE_CONNS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("XOAUTH2_IDLE_CONNS=%q", v)
		}
	}
	return n
}

// raiseFileLimit makes room for n descriptors, raising the hard limit too
// when allowed (root); the old limit is restored at the end of the test.
func raiseFileLimit(t *testing.T, n uint64) {
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Skipf("getrlimit: %v", err)
	}
	if old.Cur >= n {
		return
	}
	lim := syscall.Rlimit{Cur: n, Max: max(old.Max, n)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		lim = syscall.Rlimit{Cur: old.Max, Max: old.Max}
		if lim.Cur < n || syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) != nil {
			t.Skipf("need %d descriptors, the limit is %d/%d", n, old.Cur, old.Max)
		}
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

// idleTarget is an external proxy to test instead of an in-process server
// (XOAUTH2_IDLE_TARGET=host:port), with XOAUTH2_IDLE_PID its process id
// for the memory figures; docs/RELIABILITY.md has the command.
func idleTarget() (addr string, pid string) {
	return os.Getenv("XOAUTH2_IDLE_TARGET"), os.Getenv("XOAUTH2_IDLE_PID")
}

// rssKiB reads a process's resident set size.
func rssKiB(pid string) int {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return -1
}

// TestBadInput_manyIdleConnections opens many connections that log in
// (EHLO, AUTH PLAIN) and then say nothing: each costs a bounded amount of
// memory, a legitimate client is served meanwhile, and all are released
// when they close. Not parallel: it needs the descriptors.
func TestBadInput_manyIdleConnections(t *testing.T) {
	n := idleConns(t)
	addr, pid := idleTarget()
	var srv *smtpd.Server
	if addr == "" {
		raiseFileLimit(t, uint64(2*n+1000))
		srv, addr, _ = startServers(t, smtpd.Config{MaxConnections: n + 100}, &fakeBackend{}, false)
	} else {
		raiseFileLimit(t, uint64(n+64))
	}
	perSource := 900 // under the default per-address cap of 1000
	runtime.GC()
	heap0, goroutines0, rss0 := heapBytes(), runtime.NumGoroutine(), rssKiB(pid)

	conns := make([]net.Conn, n)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				src := fmt.Sprintf("127.0.%d.%d", 1+i/perSource/250, 2+(i/perSource)%250)
				d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
				nc, err := d.Dial("tcp", addr)
				if err != nil {
					errs <- fmt.Errorf("connection %d: %w", i, err)
					return
				}
				conns[i] = nc
				_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
				br := bufio.NewReader(nc)
				l, err := br.ReadString('\n')
				if err != nil || !strings.HasPrefix(l, "220 ") {
					errs <- fmt.Errorf("connection %d: greeting %q, %v", i, l, err)
					return
				}
				// Authenticated, as PowerMTA's open connections are.
				if _, err := nc.Write([]byte("EHLO idle.test\r\n" + authAlice)); err != nil {
					errs <- fmt.Errorf("connection %d: %w", i, err)
					return
				}
				for !strings.HasPrefix(l, "235 ") {
					if l, err = br.ReadString('\n'); err != nil || (l[0] != '2' && l[0] != '3') {
						errs <- fmt.Errorf("connection %d: AUTH: %q, %v", i, l, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, nc := range conns {
			if nc != nil {
				nc.Close()
			}
		}
	})
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	opened := time.Since(start)
	if srv != nil {
		if got := srv.Open(); got != int64(n) {
			t.Fatalf("server has %d open connections, want %d", got, n)
		}
		runtime.GC()
		heap1, goroutines1 := heapBytes(), runtime.NumGoroutine()
		perConn := (int64(heap1) - int64(heap0)) / int64(n)
		t.Logf("%d idle authenticated connections opened in %v: heap +%d MiB (%d bytes each), goroutines +%d",
			n, opened.Round(time.Millisecond), (int64(heap1)-int64(heap0))>>20, perConn, goroutines1-goroutines0)
		// Idle connections hold no read or write buffer on Linux (idle.go):
		// about 2.5 KiB of heap each, against 10.8 KiB with them (8 KiB of
		// buffers). Elsewhere they keep them.
		limit := int64(6 << 10)
		if runtime.GOOS != "linux" {
			limit = 64 << 10
		}
		if perConn > limit {
			t.Errorf("an idle connection costs %d bytes of heap, want at most %d", perConn, limit)
		}
	} else {
		rss1 := rssKiB(pid)
		t.Logf("%d idle authenticated connections to %s opened in %v: server RSS %d -> %d MiB (%d KiB each)",
			n, addr, opened.Round(time.Millisecond), rss0>>10, rss1>>10, (rss1-rss0)/max(n, 1))
	}

	got, err := transcript(addr, "EHLO legit.test\r\n"+authAlice+"MAIL FROM:<a@example.com>\r\nRCPT TO:<r@example.net>\r\nDATA\r\n",
		"Subject: legit\r\n\r\nbody\r\n.\r\nQUIT\r\n", 6)
	if err != nil || len(got) < 7 || !strings.HasPrefix(got[6], "250 ") {
		t.Errorf("legitimate client among %d idle ones got %q, %v", n, got, err)
	}

	for i, nc := range conns {
		nc.Close()
		conns[i] = nil
	}
	if srv != nil {
		waitFor(t, "every idle connection to be released", func() bool { return srv.Open() == 0 })
	}
}
