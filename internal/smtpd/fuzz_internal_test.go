package smtpd

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
)

// FuzzDataReader: for any input the reader never panics and never ends
// the message anywhere but at CRLF "." CRLF; for CRLF-clean content,
// unstuff(stuff(x)) == x.
func FuzzDataReader(f *testing.F) {
	f.Add([]byte("a\r\n.\r\n"), []byte("x\r\n..y\r\n"))
	f.Add([]byte("a\n.\nb\r\n.\r\n"), []byte("\r\n"))
	f.Add([]byte(".\r.\n\r\n.\r\n"), []byte(".\r\n"))
	f.Fuzz(func(t *testing.T, raw, content []byte) {
		// Arbitrary wire bytes: must not panic, must not read past the
		// first CRLF.CRLF terminator.
		br := bufio.NewReaderSize(bytes.NewReader(raw), 16)
		d := newDataReader(br, func() error { return nil }, 1<<20, 0)
		_, _ = io.Copy(io.Discard, d)
		_ = d.drain()
		if d.done {
			end := bytes.Index(append([]byte("\r\n"), raw...), []byte("\r\n.\r\n"))
			if end < 0 {
				t.Fatalf("ended without a terminator in %q", raw)
			}
			rest, _ := io.ReadAll(br)
			if want := raw[end+3:]; !bytes.Equal(rest, want) {
				t.Fatalf("consumed past the terminator: rest %q want %q", rest, want)
			}
		}

		// Round trip for well-formed content.
		c := normalise(content)
		wire := stuffForTest(c) + ".\r\n"
		br = bufio.NewReaderSize(strings.NewReader(wire), 16)
		d = newDataReader(br, func() error { return nil }, 0, 0)
		got, err := io.ReadAll(d)
		if err != nil || string(got) != c {
			t.Fatalf("round trip %q -> %q (%v)", c, got, err)
		}
	})
}

// normalise makes every line end in CRLF, with no bare CR or LF.
func normalise(b []byte) string {
	s := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(string(b))
	if s == "" {
		return ""
	}
	s = strings.ReplaceAll(s, "\n", "\r\n")
	if !strings.HasSuffix(s, "\r\n") {
		s += "\r\n"
	}
	return s
}

func stuffForTest(s string) string {
	var out strings.Builder
	for _, l := range strings.SplitAfter(s, "\r\n") {
		if strings.HasPrefix(l, ".") {
			out.WriteByte('.')
		}
		out.WriteString(l)
	}
	return out.String()
}

// FuzzCommands: command parsing never panics, and an accepted path never
// carries a space, CR, LF or NUL to the upstream.
func FuzzCommands(f *testing.F) {
	for _, s := range []string{"FROM:<a@b.c> SIZE=10 BODY=8BITMIME", "FROM:<>", "TO:<x@y>", "FROM: <\"a b\"@c>", "TO:<@r:x@y>", "FROM:<a@b> SMTPUTF8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		splitVerb(arg)
		if c, _, rp := parseMail(arg, 1000); rp == nil {
			if strings.ContainsAny(c.Addr, "\r\n\x00") {
				t.Fatalf("MAIL path %q", c.Addr)
			}
		}
		if c, rp := parseRcpt(arg, true); rp == nil {
			if strings.ContainsAny(c.Addr, "\r\n\x00") || c.Addr == "" {
				t.Fatalf("RCPT path %q", c.Addr)
			}
		}
	})
}
