package imap

import (
	"bufio"
	"bytes"
	"testing"
)

// FuzzReadResponse: any server output is read without panic and within
// the limits; a response read has a tag and at most maxLiterals literals.
func FuzzReadResponse(f *testing.F) {
	for _, s := range []string{
		"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n",
		"* 12 FETCH (UID 44 BODY[] {11}\r\nhello world)\r\n",
		"* SEARCH 2 84 882\r\n",
		"+ eyJzdGF0dXMiOiI0MDAifQ==\r\n",
		"x1 NO [AUTHENTICATIONFAILED] Invalid credentials\r\n",
		"* 1 FETCH (BODY[HEADER] {3+}\r\nabc BODY[TEXT] {0}\r\n)\r\n",
		"* CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 MOVE\r\n",
		"{99999999999}\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReader(bytes.NewReader(in))
		for range 20 {
			r, err := readResponse(br)
			if err != nil {
				return
			}
			if r.Tag == "" || len(r.Literals) > maxLiterals {
				t.Fatalf("response %+v", r)
			}
			r.status()
			fields(r.Text)
		}
	})
}
