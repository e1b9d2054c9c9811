package imap

import (
	"bufio"
	"errors"
	"strings"
	"testing"
)

// TestReadResponse_oversizedLiteral: a literal over the bound is refused,
// not taken as text, so the bytes after it are never read as responses.
func TestReadResponse_oversizedLiteral(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"* 1 FETCH (BODY[] {99999999999}\r\nx7 OK done\r\n",
		"* 1 FETCH (BODY[] {999999999999999999999999}\r\nx7 OK done\r\n",
	} {
		_, err := readResponse(bufio.NewReader(strings.NewReader(in)))
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: err %v, want ErrMalformed", in, err)
		}
	}
	r, err := readResponse(bufio.NewReader(strings.NewReader("* 1 FETCH (BODY[] {5}\r\nhello)\r\n")))
	if err != nil || len(r.Literals) != 1 || string(r.Literals[0]) != "hello" {
		t.Errorf("a literal within the bound: %+v, %v", r, err)
	}
}
