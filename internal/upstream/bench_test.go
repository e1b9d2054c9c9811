package upstream_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

// fastServer is a minimal SMTP sink for benchmarks: it accepts every
// command, discards message data, and writes its replies only when it has
// read everything the client sent, so pipelined replies go out together.
func fastServer(b *testing.B, pipelining bool) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		br := bufio.NewReaderSize(conn, 64<<10)
		bw := bufio.NewWriter(conn)
		bw.WriteString("220 fast.test ESMTP\r\n")
		bw.Flush()
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			switch verb := strings.ToUpper(string(line[:min(4, len(line))])); verb {
			case "EHLO":
				if pipelining {
					bw.WriteString("250-fast.test\r\n250-PIPELINING\r\n")
				} else {
					bw.WriteString("250-fast.test\r\n")
				}
				bw.WriteString("250-SIZE 35882577\r\n250 ENHANCEDSTATUSCODES\r\n")
			case "MAIL":
				bw.WriteString("250 2.1.0 ok\r\n")
			case "RCPT":
				bw.WriteString("250 2.1.5 ok\r\n")
			case "DATA":
				bw.WriteString("354 go ahead\r\n")
				bw.Flush()
				for {
					l, err := br.ReadSlice('\n')
					if err == bufio.ErrBufferFull {
						continue
					}
					if err != nil {
						return
					}
					if bytes.Equal(l, []byte(".\r\n")) {
						break
					}
				}
				bw.WriteString("250 2.0.0 queued\r\n")
			case "RSET":
				bw.WriteString("250 2.0.0 ok\r\n")
			case "QUIT":
				bw.WriteString("221 2.0.0 bye\r\n")
				bw.Flush()
				return
			default:
				bw.WriteString("500 5.5.1 what\r\n")
			}
			if br.Buffered() == 0 {
				if bw.Flush() != nil {
					return
				}
			}
		}
	}()
	b.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

func benchDial(b *testing.B, pipelining bool) *upstream.Client {
	b.Helper()
	cfg := baseConfig(fastServer(b, pipelining))
	c, err := upstream.Dial(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Quit(context.Background()) })
	return c
}

// BenchmarkBatch is one message per iteration over loopback: MAIL, two
// RCPT and DATA in one Batch, then a 2 KB body.
func BenchmarkBatch(b *testing.B) {
	for _, tc := range []struct {
		name       string
		pipelining bool
	}{{"pipelined", true}, {"lockstep", false}} {
		b.Run(tc.name, func(b *testing.B) {
			c := benchDial(b, tc.pipelining)
			ctx := context.Background()
			msg := bytes.Repeat([]byte("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod\r\n"), 28)
			cmds := []upstream.Cmd{
				{Verb: "MAIL", Arg: "FROM:<sender@example.com> BODY=8BITMIME"},
				{Verb: "RCPT", Arg: "TO:<one@example.net>"},
				{Verb: "RCPT", Arg: "TO:<two@example.net>"},
				{Verb: "DATA"},
			}
			r := bytes.NewReader(msg)
			rt0 := c.RoundTrips()
			b.ReportAllocs()
			for b.Loop() {
				rs, err := c.Batch(ctx, cmds)
				if err != nil || rs[3].Code != 354 {
					b.Fatal(rs, err)
				}
				r.Reset(msg)
				if rep, err := c.Body(ctx, r); err != nil || rep.Code != 250 {
					b.Fatal(rep, err)
				}
			}
			b.ReportMetric(float64(c.RoundTrips()-rt0)/float64(b.N), "roundtrips/op")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkBody streams one large message per iteration; B/op shows that
// memory does not grow with the message.
func BenchmarkBody(b *testing.B) {
	const size = 50 << 20
	for _, tc := range []struct {
		name string
		// wrap gives the body reader; bufio.Reader is an io.WriterTo, so
		// Body uses no copy buffer of its own.
		wrap func(io.Reader) io.Reader
	}{
		{"50MB-writerto", func(r io.Reader) io.Reader { return bufio.NewReaderSize(r, 32<<10) }},
		{"50MB-reader", func(r io.Reader) io.Reader { return r }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := benchDial(b, true)
			ctx := context.Background()
			cmds := []upstream.Cmd{{Verb: "MAIL", Arg: "FROM:<a@example.com>"}, {Verb: "RCPT", Arg: "TO:<b@example.net>"}, {Verb: "DATA"}}
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Batch(ctx, cmds); err != nil {
					b.Fatal(err)
				}
				if rep, err := c.Body(ctx, tc.wrap(&lineReader{left: size})); err != nil || rep.Code != 250 {
					b.Fatal(rep, err)
				}
			}
		})
	}
}
