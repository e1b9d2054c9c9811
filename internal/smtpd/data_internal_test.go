package smtpd

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func readBody(t *testing.T, in string, max int64, maxLine int, oneByte bool) (string, string, error) {
	t.Helper()
	var r io.Reader = strings.NewReader(in)
	if oneByte {
		r = iotest.OneByteReader(r)
	}
	br := bufio.NewReaderSize(r, 16)
	d := newDataReader(br, func() error { return nil }, max, maxLine)
	var out strings.Builder
	buf := make([]byte, 7) // small, odd: exercises the pend path and boundaries
	var err error
	for {
		var n int
		n, err = d.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if err == io.EOF {
		err = nil
	}
	if derr := d.drain(); derr != nil && err == nil {
		err = derr
	}
	rest, _ := io.ReadAll(br)
	return out.String(), string(rest), err
}

func TestDataReader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want, rest string
		max                  int64
		maxLine              int
		wantErr              error
	}{
		{name: "simple", in: "a\r\nb\r\n.\r\nNEXT", want: "a\r\nb\r\n", rest: "NEXT"},
		{name: "empty", in: ".\r\n", want: ""},
		{name: "dot stuffing", in: "..\r\n...x\r\n.y\r\n.\r\n", want: ".\r\n..x\r\ny\r\n"},
		{name: "bare LF normalised", in: "a\nb\r\n.\r\n", want: "a\r\nb\r\n"},
		{name: "bare CR normalised", in: "a\rb\r\n.\r\n", want: "a\r\nb\r\n"},
		{name: "LF dot LF is not the end", in: "a\n.\nb\r\n.\r\n", want: "a\r\n.\r\nb\r\n"},
		{name: "CRLF dot LF is not the end", in: "a\r\n.\nb\r\n.\r\n", want: "a\r\n.\r\nb\r\n"},
		{name: "LF dot CRLF is not the end", in: "a\n.\r\nb\r\n.\r\n", want: "a\r\n.\r\nb\r\n"},
		{name: "CR dot CRLF is not the end", in: "a\r.\r\nb\r\n.\r\n", want: "a\r\n.\r\nb\r\n"},
		{name: "LF then stuffed dot", in: "a\n..x\r\n.\r\n", want: "a\r\n.x\r\n"},
		{name: "dot CR x", in: "a\r\n.\rb\r\n.\r\n", want: "a\r\n.\r\nb\r\n"},
		{name: "8bit", in: "\xff\xfe\x00é\r\n.\r\n", want: "\xff\xfe\x00é\r\n"},
		{name: "too big", in: "0123456789\r\n0123456789\r\n.\r\nNEXT", max: 15, wantErr: ErrMessageTooBig, rest: "NEXT"},
		{name: "line too long", in: "0123456789\r\nok\r\n.\r\nNEXT", maxLine: 5, wantErr: ErrLineTooLong, rest: "NEXT"},
		{name: "line at limit", in: "01234\r\n.\r\n", maxLine: 5, want: "01234\r\n"},
		{name: "eof mid body", in: "a\r\nb", wantErr: io.ErrUnexpectedEOF, want: "a\r\nb"},
	}
	for _, tc := range tests {
		for _, one := range []bool{false, true} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				got, rest, err := readBody(t, tc.in, tc.max, tc.maxLine, one)
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if tc.wantErr == nil && got != tc.want {
					t.Errorf("body = %q, want %q", got, tc.want)
				}
				if rest != tc.rest {
					t.Errorf("rest = %q, want %q", rest, tc.rest)
				}
			})
		}
	}
}
