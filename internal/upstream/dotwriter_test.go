package upstream_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

// stuff writes in through a DotWriter in chunks of size (all at once when
// size is 0) and closes it.
func stuff(t testing.TB, in []byte, size int, w io.Writer) {
	d := upstream.NewDotWriter(w)
	for len(in) > 0 {
		n := len(in)
		if size > 0 && size < n {
			n = size
		}
		if m, err := d.Write(in[:n]); err != nil || m != n {
			t.Fatalf("Write = %d, %v; want %d", m, err, n)
		}
		in = in[n:]
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

// unstuff is RFC 5321 §4.5.2 from the receiver's side, written apart from
// DotWriter: it returns the data before the terminating "." line, with one
// leading dot removed from each line, and whether the terminator came last.
func unstuff(out []byte) (data []byte, ok bool) {
	for len(out) > 0 {
		line := out
		if i := bytes.IndexByte(out, '\n'); i >= 0 {
			line = out[:i+1]
		}
		out = out[len(line):]
		if string(line) == ".\r\n" {
			return data, len(out) == 0
		}
		data = append(data, bytes.TrimPrefix(line, []byte("."))...)
	}
	return data, false
}

func TestDotWriter(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{"empty", "", ".\r\n"},
		{"one line", "a\r\n", "a\r\n.\r\n"},
		{"no final CRLF", "a", "a\r\n.\r\n"},
		{"dot first", ".a\r\n", "..a\r\n.\r\n"},
		{"dot line", "a\r\n.\r\nb\r\n", "a\r\n..\r\nb\r\n.\r\n"},
		{"dots in a row", "\r\n.\r\n..\r\n...", "\r\n..\r\n...\r\n....\r\n.\r\n"},
		{"dot only", ".", "..\r\n.\r\n"},
		{"bare LF then dot", "a\n.b", "a\n..b\r\n.\r\n"},
		{"ends in bare LF", "a\n", "a\n\r\n.\r\n"},
		{"8-bit", "\xff\xfe.\x00\r\n", "\xff\xfe.\x00\r\n.\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Every chunk size, so dots land on chunk boundaries.
			for size := 0; size <= len(tc.in); size++ {
				var buf bytes.Buffer
				stuff(t, []byte(tc.in), size, &buf)
				if buf.String() != tc.want {
					t.Errorf("chunks of %d: %q, want %q", size, buf.String(), tc.want)
				}
				// A writer without WriteByte takes the other path.
				var plain strings.Builder
				stuff(t, []byte(tc.in), size, onlyWriter{&plain})
				if plain.String() != tc.want {
					t.Errorf("chunks of %d, plain writer: %q, want %q", size, plain.String(), tc.want)
				}
			}
		})
	}
}

type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

// failAfter accepts n bytes, then fails.
type failAfter struct{ n int }

var errFull = errors.New("full")

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		n := f.n
		f.n = 0
		return n, errFull
	}
	f.n -= len(p)
	return len(p), nil
}

func TestDotWriter_writeErrors(t *testing.T) {
	t.Parallel()
	for n := range 12 {
		d := upstream.NewDotWriter(&failAfter{n: n})
		_, err := d.Write([]byte("ab\r\n.c\r\n.d\r\n"))
		if err == nil {
			err = d.Close()
		}
		if !errors.Is(err, errFull) {
			t.Errorf("capacity %d: error %v, want errFull", n, err)
		}
	}
}

// FuzzDotStuff checks that stuffing round-trips and that the data can
// never end early: the only "\r\n.\r\n" (or leading ".\r\n") is the
// terminator.
func FuzzDotStuff(f *testing.F) {
	for _, s := range []string{"", ".", ".\r\n", "a\r\n.\r\n", "..\r\n.x", "a\n.\r\n", "\r\n.\r\n\r\n", "x\r"} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(1))
	}
	f.Fuzz(func(t *testing.T, in []byte, size uint8) {
		var buf bytes.Buffer
		stuff(t, in, int(size), &buf)
		out := buf.Bytes()
		if i := bytes.Index(out, []byte("\r\n.\r\n")); i >= 0 && i != len(out)-5 {
			t.Fatalf("terminator at %d inside %q", i, out)
		}
		if bytes.HasPrefix(out, []byte(".\r\n")) && len(out) != 3 {
			t.Fatalf("terminator at the start of %q", out)
		}
		data, ok := unstuff(out)
		if !ok {
			t.Fatalf("no terminator at the end of %q", out)
		}
		want := in
		if len(in) > 0 && !bytes.HasSuffix(in, []byte("\r\n")) {
			want = append(bytes.Clone(in), '\r', '\n')
		}
		if !bytes.Equal(data, want) {
			t.Fatalf("round trip of %q gave %q", in, data)
		}
	})
}

// benchMessage is a 1 MiB message of 78-byte lines, one in 20 starting
// with a dot.
func benchMessage() []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < 1<<20; i++ {
		if i%20 == 0 {
			b.WriteByte('.')
		}
		b.WriteString("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod t\r\n")
	}
	return b.Bytes()
}

func BenchmarkDotWriter(b *testing.B) {
	msg := benchMessage()
	bw := bufio.NewWriterSize(io.Discard, 16<<10)
	d := upstream.NewDotWriter(bw)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		d.Reset(bw)
		for p := msg; len(p) > 0; {
			n := min(len(p), 32<<10)
			d.Write(p[:n])
			p = p[n:]
		}
		d.Close()
		bw.Flush()
	}
}
