package proxyproto_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/proxyproto"
)

func v2(verCmd, famProto byte, body []byte) []byte {
	b := []byte("\r\n\r\n\x00\r\nQUIT\n")
	b = append(b, verCmd, famProto)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

func TestRead(t *testing.T) {
	t.Parallel()
	ap := netip.MustParseAddrPort
	inet := append(append([]byte{192, 0, 2, 1, 198, 51, 100, 7}, 0xc3, 0x50), 0x00, 0x19) // 50000 -> 25
	tlv := append(append([]byte{}, inet...), 0x04, 0x00, 0x02, 'h', 'i')                  // PP2_TYPE_NOOP
	tests := []struct {
		name    string
		in      string
		want    proxyproto.Header
		wantErr error
		rest    string
	}{
		{name: "v1 tcp4", in: "PROXY TCP4 192.0.2.1 198.51.100.7 50000 25\r\nEHLO x\r\n",
			want: proxyproto.Header{Version: 1, Source: ap("192.0.2.1:50000"), Dest: ap("198.51.100.7:25")}, rest: "EHLO x\r\n"},
		{name: "v1 tcp6", in: "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n",
			want: proxyproto.Header{Version: 1, Source: ap("[2001:db8::1]:1"), Dest: ap("[2001:db8::2]:65535")}},
		{name: "v1 unknown", in: "PROXY UNKNOWN ffff::1 whatever\r\nX", want: proxyproto.Header{Version: 1, Local: true}, rest: "X"},
		{name: "v1 bare unknown", in: "PROXY UNKNOWN\r\n", want: proxyproto.Header{Version: 1, Local: true}},
		{name: "v1 family mismatch", in: "PROXY TCP4 2001:db8::1 192.0.2.1 1 2\r\n", wantErr: proxyproto.ErrInvalid},
		{name: "v1 leading zero port", in: "PROXY TCP4 192.0.2.1 192.0.2.2 025 2\r\n", wantErr: proxyproto.ErrInvalid},
		{name: "v1 port too big", in: "PROXY TCP4 192.0.2.1 192.0.2.2 65536 2\r\n", wantErr: proxyproto.ErrInvalid},
		{name: "v1 double space", in: "PROXY TCP4  192.0.2.1 192.0.2.2 1 2\r\n", wantErr: proxyproto.ErrInvalid},
		{name: "v1 bare LF", in: "PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n", wantErr: proxyproto.ErrInvalid},
		{name: "v1 zone", in: "PROXY TCP6 fe80::1%eth0 fe80::2 1 2\r\n", wantErr: proxyproto.ErrInvalid},
		{name: "v1 too long", in: "PROXY UNKNOWN " + strings.Repeat("x", 200) + "\r\n", wantErr: proxyproto.ErrInvalid},
		{name: "v1 truncated", in: "PROXY TCP4 192.0.2.1", wantErr: io.EOF},
		{name: "smtp, no header", in: "EHLO client.example\r\n", wantErr: proxyproto.ErrNoHeader},
		{name: "short non-header", in: "QUIT\r\n", wantErr: proxyproto.ErrNoHeader},
		{name: "v2 inet", in: string(v2(0x21, 0x11, inet)) + "EHLO",
			want: proxyproto.Header{Version: 2, Source: ap("192.0.2.1:50000"), Dest: ap("198.51.100.7:25")}, rest: "EHLO"},
		{name: "v2 inet with TLV", in: string(v2(0x21, 0x11, tlv)) + "Z",
			want: proxyproto.Header{Version: 2, Source: ap("192.0.2.1:50000"), Dest: ap("198.51.100.7:25")}, rest: "Z"},
		{name: "v2 local", in: string(v2(0x20, 0x00, nil)) + "Z", want: proxyproto.Header{Version: 2, Local: true}, rest: "Z"},
		{name: "v2 local with body", in: string(v2(0x20, 0x11, inet)) + "Z", want: proxyproto.Header{Version: 2, Local: true}, rest: "Z"},
		{name: "v2 unix", in: string(v2(0x21, 0x31, make([]byte, 216))), want: proxyproto.Header{Version: 2, Local: true}},
		{name: "v2 bad version", in: string(v2(0x11, 0x11, inet)), wantErr: proxyproto.ErrInvalid},
		{name: "v2 bad command", in: string(v2(0x22, 0x11, inet)), wantErr: proxyproto.ErrInvalid},
		{name: "v2 bad family", in: string(v2(0x21, 0x41, inet)), wantErr: proxyproto.ErrInvalid},
		{name: "v2 short body", in: string(v2(0x21, 0x11, inet[:8])), wantErr: proxyproto.ErrInvalid},
		{name: "v2 truncated", in: string(v2(0x21, 0x11, inet))[:20], wantErr: io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			br := bufio.NewReader(strings.NewReader(tc.in))
			h, err := proxyproto.Read(br)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) && !(tc.wantErr == io.ErrUnexpectedEOF && errors.Is(err, io.EOF)) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h != tc.want {
				t.Errorf("header = %+v, want %+v", h, tc.want)
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != tc.rest {
				t.Errorf("rest = %q, want %q", rest, tc.rest)
			}
		})
	}
}

func TestAppend_roundTrip(t *testing.T) {
	t.Parallel()
	for _, h := range []proxyproto.Header{
		{Source: netip.MustParseAddrPort("192.0.2.1:1234"), Dest: netip.MustParseAddrPort("192.0.2.2:25")},
		{Source: netip.MustParseAddrPort("[2001:db8::1]:1234"), Dest: netip.MustParseAddrPort("[2001:db8::2]:25")},
		{Local: true},
	} {
		for _, v := range []int{1, 2} {
			var b []byte
			if v == 1 {
				b = h.AppendV1(nil)
			} else {
				b = h.AppendV2(nil)
			}
			got, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(b)))
			want := h
			want.Version = v
			if err != nil || got != want {
				t.Errorf("v%d %+v: got %+v, %v", v, h, got, err)
			}
		}
	}
}

// TestRead_doesNotWaitPastTheHeader: a header that arrives alone is
// returned at once; Read does not block for bytes after it.
func TestRead_doesNotWaitPastTheHeader(t *testing.T) {
	t.Parallel()
	h := proxyproto.Header{Source: netip.MustParseAddrPort("192.0.2.1:1"), Dest: netip.MustParseAddrPort("192.0.2.2:25")}
	for _, raw := range [][]byte{h.AppendV1(nil), h.AppendV2(nil), []byte("PROXY UNKNOWN\r\n")} {
		pr, pw := io.Pipe()
		go func() { _, _ = pw.Write(raw) }() // then stays open, like a client awaiting the greeting
		done := make(chan error, 1)
		go func() { _, err := proxyproto.Read(bufio.NewReader(pr)); done <- err }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%q: %v", raw, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%q: Read still waiting", raw)
		}
		pw.Close()
	}
}
