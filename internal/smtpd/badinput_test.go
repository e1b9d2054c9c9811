package smtpd_test

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/smtpd"
)

// heapBytes is the live heap, objects only.
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// heapWatch samples the heap until stop is called and returns the peak.
func heapWatch() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if h := heapBytes(); h > peak.Load() {
				peak.Store(h)
			}
			select {
			case <-t.C:
			case <-done:
				return
			}
		}
	})
	return func() uint64 { close(done); wg.Wait(); return peak.Load() }
}

// legitClient sends whole transactions, one every 10ms, until ctx ends
// and counts them. It reports problems with t.Errorf only (it runs in its
// own goroutine).
func legitClient(ctx context.Context, t *testing.T, addr string, ok, failed *atomic.Int64) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	want := []string{"220 ", "250 ", "235 ", "250 ", "250 ", "354 ", "250 2.0.0", "221 "}
	for ctx.Err() == nil {
		got, err := transcript(addr, "EHLO legit.test\r\n"+authAlice+"MAIL FROM:<a@example.com>\r\nRCPT TO:<r@example.net>\r\nDATA\r\n",
			"Subject: legit\r\n\r\nbody\r\n.\r\nQUIT\r\n", 6)
		good := err == nil && len(got) == len(want)
		for i := 0; good && i < len(want); i++ {
			good = strings.HasPrefix(got[i], want[i])
		}
		if good {
			ok.Add(1)
		} else {
			failed.Add(1)
			t.Errorf("legitimate client got %q, %v", got, err)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
}

// transcript connects, sends first, reads n replies, sends then and reads
// replies until the server closes; it returns the last line of each.
func transcript(addr, first, then string, n int) ([]string, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(nc)
	var got []string
	read := func() error {
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return err
			}
			if len(l) < 4 || l[3] != '-' {
				got = append(got, strings.TrimRight(l, "\r\n"))
				return nil
			}
		}
	}
	if err := read(); err != nil { // greeting
		return got, err
	}
	if _, err := nc.Write([]byte(first)); err != nil {
		return got, err
	}
	for range n - 1 {
		if err := read(); err != nil {
			return got, err
		}
	}
	if _, err := nc.Write([]byte(then)); err != nil {
		return got, err
	}
	for read() == nil {
	}
	return got, nil
}

// TestBadInput runs hostile inputs over real TCP while a legitimate
// client keeps sending mail; each gets the right answer, the heap stays
// bounded and the legitimate client is never refused. It is not parallel
// with other tests, so that the heap figures are its own.
func TestBadInput(t *testing.T) {
	b := &fakeBackend{}
	srv, addr, _ := startServers(t, smtpd.Config{MaxMessageBytes: 200 << 20, MaxBadCommands: 1000}, b, false)
	runtime.GC()
	base := heapBytes()
	stopHeap := heapWatch()

	ctx, cancel := context.WithCancel(context.Background())
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() { legitClient(ctx, t, addr, &ok, &failed) })

	session := func(t *testing.T) *client {
		c := dial(t, addr)
		_ = c.nc.SetDeadline(time.Now().Add(60 * time.Second))
		c.expect("220 ")
		c.send("EHLO client.test\r\n")
		c.expect("250 ")
		return c
	}
	authed := func(t *testing.T) *client {
		c := session(t)
		c.send(authAlice)
		c.expect("235 ")
		return c
	}
	hundredMB := func(c *client, prefix string) {
		c.send(prefix)
		chunk := bytes.Repeat([]byte("x"), 1<<20)
		for range 100 {
			if _, err := c.nc.Write(chunk); err != nil {
				c.t.Fatalf("write: %v", err)
			}
		}
	}
	cases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"oversized command line", func(t *testing.T) {
			c := session(t)
			c.send("NOOP " + strings.Repeat("x", 3000) + "\r\nNOOP\r\n")
			c.expect("500 5.5.2 Line too long")
			c.expect("250 ")
		}},
		{"oversized AUTH line", func(t *testing.T) {
			c := session(t)
			c.send("AUTH PLAIN " + strings.Repeat("A", 13000) + "\r\nNOOP\r\n")
			c.expect("500 5.5.2 Line too long")
			c.expect("250 ")
		}},
		{"100 MB command without a newline", func(t *testing.T) {
			c := session(t)
			hundredMB(c, "NOOP ")
			c.send("\r\nNOOP\r\n")
			c.expect("500 5.5.2 Line too long")
			c.expect("250 ")
		}},
		{"100 MB body line without a newline", func(t *testing.T) {
			c := authed(t)
			c.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<big@example.net>\r\nDATA\r\n")
			c.expect("250 ")
			c.expect("250 ")
			c.expect("354 ")
			hundredMB(c, "Subject: x\r\n\r\n")
			c.send("\r\n.\r\nNOOP\r\n")
			c.expect("500 5.5.2 Message line too long")
			c.expect("250 ")
		}},
		{"NUL bytes", func(t *testing.T) {
			c := authed(t)
			c.send("NO\x00OP\r\nMAIL FROM:<a\x00@example.com>\r\nAUTH PLAIN \x00\r\n")
			c.expect("501 5.5.2 NUL")
			c.expect("501 5.5.2 NUL")
			c.expect("501 5.5.2 NUL")
		}},
		{"8-bit and bad UTF-8 in commands", func(t *testing.T) {
			c := authed(t)
			c.send("NÖOP\r\nEHLO hé.example\r\nMAIL FROM:<\xff@example.com>\r\nMAIL FROM:<jö@example.com>\r\nRCPT TO:<\xc3@example.com>\r\n")
			c.expect("501 5.5.2 8-bit")
			c.expect("501 5.5.2 8-bit")
			c.expect("501 5.5.2 Invalid UTF-8")
			c.expect("553 5.6.7") // RFC 6531: well-formed, but needs SMTPUTF8
			c.expect("501 5.5.2 Invalid UTF-8")
			c.send("MAIL FROM:<jö@example.com> SMTPUTF8\r\nRCPT TO:<\xc3@example.com>\r\nRCPT TO:<ñ@example.com>\r\n")
			c.expect("250 ")
			c.expect("501 5.5.2 Invalid UTF-8")
			c.expect("250 ")
		}},
		{"invalid base64", func(t *testing.T) {
			c := session(t)
			c.send("AUTH PLAIN !!!\r\nAUTH LOGIN\r\n")
			c.expect("501 5.5.2")
			c.expect("334 ")
			c.send("%%%\r\n")
			c.expect("501 5.5.2")
		}},
		{"AUTH before EHLO", func(t *testing.T) {
			c := dial(t, addr)
			c.expect("220 ")
			c.send(authAlice)
			c.expect("503 5.5.1")
		}},
		{"out of sequence", func(t *testing.T) {
			c := authed(t)
			c.send("RCPT TO:<r@example.net>\r\nDATA\r\nMAIL FROM:<a@example.com>\r\nMAIL FROM:<a@example.com>\r\nDATA\r\n")
			c.expect("503 5.5.1 Need MAIL before RCPT")
			c.expect("503 5.5.1 Need MAIL before DATA")
			c.expect("250 ")
			c.expect("503 5.5.1 Nested MAIL")
			c.expect("503 5.5.1 Need RCPT")
		}},
		{"BDAT misuse", func(t *testing.T) {
			c := authed(t)
			c.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<r@example.net>\r\nBDAT 7 LAST\r\nhello\r\nRSET\r\n")
			c.expect("250 ")
			c.expect("250 ")
			c.expect("502 5.5.1")
			c.expect("500 5.5.2") // the chunk is not data
			c.expect("250 ")
		}},
		{"commands pipelined after DATA are body", func(t *testing.T) {
			c := authed(t)
			c.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<pipe@example.net>\r\nDATA\r\nRSET\r\nMAIL FROM:<evil@example.com>\r\n.\r\nNOOP\r\n")
			c.expect("250 ")
			c.expect("250 ")
			c.expect("354 ")
			c.expect("250 2.0.0")
			c.expect("250 2.0.0 OK")
			if !hasMessage(b, "RSET\r\nMAIL FROM:<evil@example.com>\r\n") {
				t.Error("the pipelined commands are not the message body")
			}
		}},
		{"commands pipelined after a refused DATA are commands", func(t *testing.T) {
			c := authed(t)
			c.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<bad@example.net>\r\nDATA\r\nNOOP\r\n")
			c.expect("250 ")
			c.expect("550 ")
			c.expect("554 ")
			c.expect("250 2.0.0 OK")
		}},
		{"unknown commands", func(t *testing.T) {
			c := session(t)
			c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			c.expect("500 ")
			c.expect("500 ")
			c.expect("500 ")
		}},
	}
	t.Run("cases", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				tc.run(t)
			})
		}
	})
	waitFor(t, "a legitimate message", func() bool { return ok.Load() > 0 })
	cancel()
	wg.Wait()
	peak := stopHeap()
	t.Logf("heap: base %d MiB, peak %d MiB; legitimate transactions: %d ok, %d failed",
		base>>20, peak>>20, ok.Load(), failed.Load())
	if peak > base+64<<20 {
		t.Errorf("heap grew from %d to %d MiB while 200 MB of junk went by", base>>20, peak>>20)
	}
	if st := srv.Stats(); st.Panics > 0 {
		t.Errorf("panics: %d", st.Panics)
	}
}

func hasMessage(b *fakeBackend, body string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.messages {
		if string(m) == body {
			return true
		}
	}
	return false
}
