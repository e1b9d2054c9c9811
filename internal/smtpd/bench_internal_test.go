package smtpd

import (
	"bufio"
	"bytes"
	"io"
	"testing"
)

// Hot paths of every relayed message: parsing MAIL and RCPT, and the DATA
// reader. Run: go test -run '^$' -bench . -benchmem ./internal/smtpd

func BenchmarkParseMail(b *testing.B) {
	for _, tc := range []struct{ name, arg string }{
		{"plain", "FROM:<sender0001@bench.example>"},
		{"params", "FROM:<sender0001@bench.example> SIZE=2048 BODY=8BITMIME"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, rp := parseMail(tc.arg, 50<<20); rp != nil {
					b.Fatal(rp)
				}
			}
		})
	}
}

func BenchmarkParseRcpt(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, rp := parseRcpt("TO:<rcpt1@example.net>", false); rp != nil {
			b.Fatal(rp)
		}
	}
}

func BenchmarkSplitVerb(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if v, _ := splitVerb("RCPT TO:<rcpt1@example.net>"); v != "RCPT" {
			b.Fatal(v)
		}
	}
}

// stuffedBody returns about n bytes of 76-character CRLF lines, every
// 20th starting with a dot and so stuffed to "..", then the final ".".
func stuffedBody(n int) []byte {
	var b bytes.Buffer
	const line = "The quick brown fox jumps over the lazy dog. 0123456789 ABCDEFGHIJKLMNOPQRS\r\n"
	for i := 0; b.Len() < n; i++ {
		if i%20 == 19 {
			b.WriteString("..")
		}
		b.WriteString(line)
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

// BenchmarkDataReader measures undoing dot-stuffing and enforcing the
// limits, in wire bytes per second, read through io.Copy as the relay's
// body streaming does.
func BenchmarkDataReader(b *testing.B) {
	for _, tc := range []struct {
		name string
		size int
	}{{"2KiB", 2 << 10}, {"1MiB", 1 << 20}} {
		b.Run(tc.name, func(b *testing.B) {
			in := stuffedBody(tc.size)
			r := bytes.NewReader(in)
			br := bufio.NewReaderSize(r, 32<<10)
			nop := func() error { return nil }
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(in)
				br.Reset(r)
				d := newDataReader(br, nop, 50<<20, 10000)
				if _, err := io.Copy(io.Discard, d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
