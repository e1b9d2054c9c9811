package proxyproto_test

import (
	"bufio"
	"bytes"
	"io"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/proxyproto"
)

// FuzzRead: for any input, Read never panics, never consumes more than the
// header (a v1 line of at most 107 bytes ending in CRLF, or a v2 header of
// 16 bytes plus its length), and what it accepts re-encodes to the same
// addresses.
func FuzzRead(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 198.51.100.7 50000 25\r\nEHLO x\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x01\xc6\x33\x64\x07\xc3\x50\x00\x19EHLO"))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"))
	f.Add([]byte("EHLO client\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(in), 4096)
		h, err := proxyproto.Read(br)
		if err != nil {
			return
		}
		rest, _ := io.ReadAll(br)
		used := in[:len(in)-len(rest)]
		switch h.Version {
		case 1:
			if len(used) > 107 || !bytes.HasSuffix(used, []byte("\r\n")) || bytes.IndexByte(used, '\n') != len(used)-1 {
				t.Fatalf("v1 consumed %q", used)
			}
		case 2:
			if len(used) < 16 || len(used) != 16+int(used[14])<<8+int(used[15]) {
				t.Fatalf("v2 consumed %d bytes of %q", len(used), in)
			}
		default:
			t.Fatalf("version %d", h.Version)
		}
		if h.Local {
			if h.Source.IsValid() || h.Dest.IsValid() {
				t.Fatalf("local header with addresses: %+v", h)
			}
			return
		}
		if !h.Source.IsValid() || !h.Dest.IsValid() || h.Source.Addr().Zone() != "" {
			t.Fatalf("invalid addresses: %+v", h)
		}
		enc := h.AppendV1(nil)
		if h.Version == 2 {
			enc = h.AppendV2(nil)
		}
		got, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(enc)))
		if err != nil || got != h {
			t.Fatalf("re-encoded %+v as %q: got %+v, %v", h, enc, got, err)
		}
	})
}
