package bench_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/bench"
)

// arrival is one read at the target.
type arrival struct {
	at time.Time
	n  int
}

// sink accepts one connection, records every read until EOF and sends the
// bytes and arrivals on the returned channel.
func sink(t *testing.T) (addr string, got <-chan []arrival, data *bytes.Buffer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan []arrival, 1)
	var buf bytes.Buffer
	go func() {
		defer close(ch)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		var arr []arrival
		b := make([]byte, 4096)
		for {
			n, err := c.Read(b)
			if n > 0 {
				arr = append(arr, arrival{time.Now(), n})
				buf.Write(b[:n])
			}
			if err != nil {
				ch <- arr
				return
			}
		}
	}()
	return ln.Addr().String(), ch, &buf
}

func startRelay(t *testing.T, target string, delay time.Duration) *bench.LatencyRelay {
	t.Helper()
	r, err := bench.StartRelay(target, delay)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// Chunks written gap apart must arrive about gap apart, each one latency
// after it was sent: if the relay serialised them (waiting the latency
// per chunk), N chunks would take N latencies.
func TestLatencyRelay_delaysWithoutSerialising(t *testing.T) {
	t.Parallel()
	const (
		latency = 200 * time.Millisecond
		gap     = 5 * time.Millisecond
		chunks  = 20
	)
	addr, got, data := sink(t)
	r := startRelay(t, addr, latency)
	c, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var want bytes.Buffer
	start := time.Now()
	for i := range chunks {
		msg := fmt.Sprintf("chunk %02d\r\n", i)
		want.WriteString(msg)
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(gap) // the stimulus: chunks spaced in time
	}
	c.(*net.TCPConn).CloseWrite()
	arr := <-got
	if len(arr) == 0 {
		t.Fatal("nothing arrived")
	}
	if data.String() != want.String() {
		t.Fatalf("bytes arrived out of order or changed:\n got %q\nwant %q", data.String(), want.String())
	}
	first, last := arr[0].at.Sub(start), arr[len(arr)-1].at.Sub(start)
	if first < latency {
		t.Errorf("first chunk arrived after %v, before the latency %v", first, latency)
	}
	// Unserialised: about latency + chunks*gap (300 ms). Serialised: at
	// least chunks*latency (4 s). The bound sits far from both, so a busy
	// machine does not make the test flaky.
	if limit := chunks * latency / 2; last >= limit {
		t.Errorf("last chunk arrived after %v, want well under %v: the relay serialises chunks", last, limit)
	}
	// Spread out, not bunched into one write: the chunks kept their spacing.
	if len(arr) < chunks/4 {
		t.Errorf("%d reads at the target for %d spaced chunks: chunks were bunched", len(arr), chunks)
	}
}

// echoLines answers "ok <line>" to every line, flushing only when it has
// read everything the client sent, like an SMTP server with PIPELINING.
func echoLines(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br, bw := bufio.NewReader(c), bufio.NewWriter(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			bw.WriteString("ok " + line)
			if br.Buffered() == 0 && bw.Flush() != nil {
				return
			}
		}
	}()
	return ln.Addr().String()
}

func TestLatencyRelay_countsRoundTrips(t *testing.T) {
	t.Parallel()
	for _, latency := range []time.Duration{0, 10 * time.Millisecond} {
		t.Run(latency.String(), func(t *testing.T) {
			t.Parallel()
			r := startRelay(t, echoLines(t), latency)
			c, err := net.Dial("tcp", r.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			// Three lock-step exchanges, then one pipelined group of three.
			for _, group := range []string{"a\n", "b\n", "c\n", "d\ne\nf\n"} {
				if _, err := io.WriteString(c, group); err != nil {
					t.Fatal(err)
				}
				for range bytes.Count([]byte(group), []byte("\n")) {
					if _, err := br.ReadString('\n'); err != nil {
						t.Fatal(err)
					}
				}
			}
			if got := r.Stats().RoundTrips; got != 4 {
				t.Errorf("round trips = %d, want 4 (3 lock-step + 1 pipelined group)", got)
			}
			if st := r.Stats(); st.Connections != 1 || st.BytesToTarget != 12 {
				t.Errorf("stats = %+v, want 1 connection and 12 bytes to the target", st)
			}
		})
	}
}

// The target's last words before it closes still reach the client, one
// latency later: its EOF is passed on as a half-close, not an abort.
func TestLatencyRelay_deliversBytesBeforeClose(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Write([]byte("221 bye\r\n"))
		c.Close()
	}()
	r := startRelay(t, ln.Addr().String(), 20*time.Millisecond)
	c, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "221 bye\r\n" {
		t.Fatalf("read %q, %v; want the reply then EOF", b, err)
	}
}

// Close ends connections in the middle of a delay and waits for them.
func TestLatencyRelay_closeAbortsConnections(t *testing.T) {
	t.Parallel()
	r, err := bench.StartRelay(echoLines(t), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "held for an hour\n"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Close() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("the client connection is still open after Close")
	}
}
