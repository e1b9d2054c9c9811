package smtpd_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/smtpd"
)

// discardBackend accepts everything and keeps nothing, so a benchmark
// measures the engine alone.
type discardBackend struct{}

func (discardBackend) Login(context.Context, *smtpd.ConnInfo, string, string) (smtpd.Sender, error) {
	return discardSender{}, nil
}

type discardSender struct{}

func (discardSender) Name() string { return "bench" }
func (discardSender) Begin(context.Context, *smtpd.ConnInfo) (smtpd.Txn, error) {
	return discardTxn{}, nil
}

type discardTxn struct{}

var (
	okMail = reply.New(250, "2.1.0", "OK")
	okRcpt = reply.New(250, "2.1.5", "OK")
	goData = reply.New(354, "", "Go ahead")
	queued = reply.New(250, "2.0.0", "OK queued")
)

func (discardTxn) Envelope(_ context.Context, cmds []smtpd.Command) []reply.Reply {
	out := make([]reply.Reply, len(cmds))
	for i, c := range cmds {
		switch c.Verb {
		case smtpd.VerbMail:
			out[i] = okMail
		case smtpd.VerbRcpt:
			out[i] = okRcpt
		case smtpd.VerbData:
			out[i] = goData
		}
	}
	return out
}

func (discardTxn) Data(_ context.Context, r io.Reader) reply.Reply {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return reply.FromError(err, "bench")
	}
	return queued
}

func (discardTxn) Close() {}

// BenchmarkServer_pipelinedMessage is one 2 KiB message per iteration over
// one loopback connection, the client pipelining MAIL, RCPT and DATA: the
// engine's whole per-message cost (reads, parsing, batching, the DATA
// reader, replies), with a backend that does nothing.
func BenchmarkServer_pipelinedMessage(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := smtpd.New(smtpd.Config{}, discardBackend{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, ln) }()
	defer func() {
		sctx, c2 := context.WithTimeout(context.Background(), 5*time.Second)
		defer c2()
		_ = srv.Shutdown(sctx)
		cancel()
		<-done
	}()

	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	expect := func(prefix string) {
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			if len(l) < 4 || l[3] != '-' {
				if !strings.HasPrefix(l, prefix) {
					b.Fatalf("got %q, want %s", l, prefix)
				}
				return
			}
		}
	}
	expect("220")
	io.WriteString(nc, "EHLO bench\r\nAUTH PLAIN AGJlbmNoAGJlbmNo\r\n")
	expect("250")
	expect("235")

	env := []byte("MAIL FROM:<sender@bench.example>\r\nRCPT TO:<rcpt1@example.net>\r\nDATA\r\n")
	line := "The quick brown fox jumps over the lazy dog. 0123456789 ABCDEFGHIJKLMNOPQRS\r\n"
	body := []byte(strings.Repeat(line, 2048/len(line)) + ".\r\n")
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		nc.Write(env)
		expect("250")
		expect("250")
		expect("354")
		nc.Write(body)
		expect("250")
	}
}
