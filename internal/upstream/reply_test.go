package upstream

// An internal test: the reply parser is unexported, and reaching it through
// a connection would make the fuzzer orders of magnitude slower.

import (
	"bufio"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestReadReply(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		in       string
		code     int
		enhanced string
		lines    []string
		err      error // nil for success
	}{
		{name: "single", in: "250 ok\r\n", code: 250, lines: []string{"ok"}},
		{name: "multi-line", in: "250-fake.test\r\n250-PIPELINING\r\n250 SIZE 100\r\n", code: 250, lines: []string{"fake.test", "PIPELINING", "SIZE 100"}},
		{name: "enhanced on every line", in: "550-5.1.1 no such\r\n550 5.1.1 user\r\n", code: 550, enhanced: "5.1.1", lines: []string{"no such", "user"}},
		{name: "enhanced on the first line only", in: "250-2.0.0 a\r\n250 b\r\n", code: 250, enhanced: "2.0.0", lines: []string{"a", "b"}},
		{name: "enhanced of another class is text", in: "550 2.1.0 odd\r\n", code: 550, lines: []string{"2.1.0 odd"}},
		{name: "enhanced alone", in: "250 2.0.0\r\n", code: 250, enhanced: "2.0.0", lines: []string{""}},
		{name: "code alone", in: "250\r\n", code: 250, lines: []string{""}},
		{name: "code and space", in: "354 \r\n", code: 354, lines: []string{""}},
		{name: "bare LF", in: "250-a\n250 b\n", code: 250, lines: []string{"a", "b"}},
		{name: "base64 challenge", in: "334 eyJzdGF0dXMiOiI0MDEifQ==\r\n", code: 334, lines: []string{"eyJzdGF0dXMiOiI0MDEifQ=="}},
		{name: "100 lines", in: strings.Repeat("250-x\r\n", 99) + "250 x\r\n", code: 250, lines: slices.Repeat([]string{"x"}, 100)},
		{name: "101 lines", in: strings.Repeat("250-x\r\n", 100) + "250 x\r\n", err: ErrMalformedReply},
		{name: "line too long", in: "250 " + strings.Repeat("x", maxReplyLine) + "\r\n", err: ErrMalformedReply},
		{name: "mixed codes", in: "250-a\r\n251 b\r\n", err: ErrMalformedReply},
		{name: "short code", in: "25 ok\r\n", err: ErrMalformedReply},
		{name: "letters", in: "abc ok\r\n", err: ErrMalformedReply},
		{name: "no separator", in: "250x ok\r\n", err: ErrMalformedReply},
		{name: "1yz", in: "150 ok\r\n", err: ErrMalformedReply},
		{name: "6yz", in: "600 ok\r\n", err: ErrMalformedReply},
		{name: "empty line", in: "\r\n", err: ErrMalformedReply},
		{name: "nothing", in: "", err: io.EOF},
		{name: "cut line", in: "250 ok", err: io.ErrUnexpectedEOF},
		{name: "cut reply", in: "250-a\r\n", err: io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := readReply(bufio.NewReaderSize(strings.NewReader(tc.in), readBufferBytes))
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("readReply = %v, %v; want %v", r, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("readReply: %v", err)
			}
			if r.Code != tc.code || r.Enhanced != tc.enhanced || !slices.Equal(r.Lines, tc.lines) {
				t.Errorf("readReply = %d %q %q, want %d %q %q", r.Code, r.Enhanced, r.Lines, tc.code, tc.enhanced, tc.lines)
			}
		})
	}
}

// FuzzReadReply checks that any input yields replies within the limits or
// an error, never a panic or an unbounded read.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{
		"220 fake.test ESMTP\r\n",
		"250-fake.test\r\n250-PIPELINING\r\n250 SIZE 35882577\r\n",
		"550-5.1.1 a\r\n550 5.1.1 b\r\n",
		"334 eyJzdGF0dXMiOiI0MDEifQ==\r\n535 5.7.8 no\r\n",
		"250\r\n250 \n",
		"250-a\r\n251 b\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReaderSize(strings.NewReader(string(in)), readBufferBytes)
		for {
			r, err := readReply(br)
			if err != nil {
				return
			}
			if r.Code < 200 || r.Code > 599 {
				t.Fatalf("code %d", r.Code)
			}
			if len(r.Lines) == 0 || len(r.Lines) > maxReplyLines {
				t.Fatalf("%d lines", len(r.Lines))
			}
			for _, l := range r.Lines {
				if len(l) > maxReplyLine || strings.ContainsAny(l, "\n") {
					t.Fatalf("bad line %q", l)
				}
			}
			if r.Enhanced != "" && r.Enhanced[0]-'0' != byte(r.Code/100) {
				t.Fatalf("enhanced %q for %d", r.Enhanced, r.Code)
			}
		}
	})
}

func BenchmarkReadReply(b *testing.B) {
	in := "250-fake.test\r\n250-PIPELINING\r\n250-SIZE 35882577\r\n250 ENHANCEDSTATUSCODES\r\n" + "250 2.1.5 ok\r\n"
	sr := strings.NewReader(in)
	br := bufio.NewReaderSize(sr, readBufferBytes)
	b.ReportAllocs()
	for b.Loop() {
		sr.Reset(in)
		br.Reset(sr)
		if _, err := readReply(br); err != nil {
			b.Fatal(err)
		}
		if _, err := readReply(br); err != nil {
			b.Fatal(err)
		}
	}
}
