package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Header is a parsed PROXY protocol header.
type Header struct {
	Version int // 1 or 2
	// Local is set for a v2 LOCAL command, a v1 "UNKNOWN" line and a v2
	// header of an address family we do not use (AF_UNSPEC, AF_UNIX):
	// Source and Dest are then invalid and the connection's own addresses
	// apply.
	Local bool
	// Source is the client's address, Dest the address it connected to;
	// both are valid unless Local. IPv4-mapped IPv6 addresses are unmapped.
	Source, Dest netip.AddrPort
}

// Limits of the specification.
const (
	// maxV1Bytes is the longest v1 line, CRLF included (spec §2.1).
	maxV1Bytes    = 107
	v2HeaderBytes = 16
)

// v2Sig is the 12-byte signature that starts every v2 header (spec §2.2).
var v2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

var (
	// ErrNoHeader means the connection does not start with a PROXY
	// header of either version.
	ErrNoHeader = errors.New("proxyproto: no PROXY protocol header")
	// ErrInvalid means the connection starts like a PROXY header but the
	// header is malformed; the error wrapping it says what is wrong.
	ErrInvalid = errors.New("proxyproto: invalid header")
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Read reads one PROXY protocol header, v1 or v2, from the start of br and
// consumes exactly that header. br must have a buffer of at least 128
// bytes (bufio's default is 4096). I/O errors from br are returned as they
// are; a deadline on the underlying connection bounds the wait.
func Read(br *bufio.Reader) (Header, error) {
	// Every header is at least 15 bytes ("PROXY UNKNOWN\r\n", or the 16
	// of v2), so 12 bytes can be waited for without risking a hang on a
	// valid header.
	sig, err := br.Peek(len(v2Sig))
	if err != nil {
		if len(sig) > 0 && !bytes.HasPrefix(v2Sig, sig) && !bytes.HasPrefix([]byte("PROXY "), sig[:min(len(sig), 6)]) {
			return Header{}, ErrNoHeader
		}
		return Header{}, err
	}
	switch {
	case bytes.Equal(sig, v2Sig):
		return readV2(br)
	case bytes.HasPrefix(sig, []byte("PROXY ")):
		return readV1(br)
	}
	return Header{}, ErrNoHeader
}

// readV1 parses "PROXY TCP4|TCP6|UNKNOWN src dst sport dport\r\n".
func readV1(br *bufio.Reader) (Header, error) {
	// Look for the LF within the first 107 bytes, waiting for one more
	// byte at a time so as to consume nothing after the line.
	n := 0
	for {
		buf, _ := br.Peek(br.Buffered())
		buf = buf[:min(len(buf), maxV1Bytes)]
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			n = i + 1
			break
		}
		if len(buf) >= maxV1Bytes {
			return Header{}, invalid("v1 line longer than %d bytes", maxV1Bytes)
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			return Header{}, err
		}
	}
	line, _ := br.Peek(n)
	h, err := parseV1(string(line))
	if err != nil {
		return Header{}, err
	}
	_, _ = br.Discard(n)
	return h, nil
}

func parseV1(line string) (Header, error) {
	body, ok := strings.CutSuffix(line, "\r\n")
	if !ok {
		return Header{}, invalid("v1 line does not end in CRLF")
	}
	f := strings.Split(body, " ")
	if len(f) < 2 || f[0] != "PROXY" {
		return Header{}, invalid("v1 line malformed")
	}
	h := Header{Version: 1}
	switch f[1] {
	case "UNKNOWN":
		// Spec §2.1: anything up to the CRLF is ignored.
		h.Local = true
		return h, nil
	case "TCP4", "TCP6":
	default:
		return Header{}, invalid("v1 protocol %q", f[1])
	}
	if len(f) != 6 {
		return Header{}, invalid("v1 line has %d fields, want 6", len(f))
	}
	src, err1 := netip.ParseAddr(f[2])
	dst, err2 := netip.ParseAddr(f[3])
	if err1 != nil || err2 != nil || src.Zone() != "" || dst.Zone() != "" {
		return Header{}, invalid("v1 addresses %q %q", f[2], f[3])
	}
	if want4 := f[1] == "TCP4"; src.Is4() != want4 || dst.Is4() != want4 {
		return Header{}, invalid("v1 addresses do not match %s", f[1])
	}
	sp, ok1 := parsePort(f[4])
	dp, ok2 := parsePort(f[5])
	if !ok1 || !ok2 {
		return Header{}, invalid("v1 ports %q %q", f[4], f[5])
	}
	h.Source = netip.AddrPortFrom(src.Unmap(), sp)
	h.Dest = netip.AddrPortFrom(dst.Unmap(), dp)
	return h, nil
}

// parsePort reads a decimal port without sign or leading zeros.
func parsePort(s string) (uint16, bool) {
	if s == "" || len(s) > 5 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 16)
	return uint16(n), err == nil
}

// Address families and transports of v2 (spec §2.2).
const (
	famUnspec = 0x0
	famInet   = 0x1
	famInet6  = 0x2
	famUnix   = 0x3

	protoUnspec = 0x0
	protoStream = 0x1
	protoDgram  = 0x2

	cmdLocal = 0x0
	cmdProxy = 0x1
)

func readV2(br *bufio.Reader) (Header, error) {
	hdr, err := br.Peek(v2HeaderBytes)
	if err != nil {
		return Header{}, err
	}
	verCmd, famProto := hdr[12], hdr[13]
	length := int(binary.BigEndian.Uint16(hdr[14:16]))
	if verCmd>>4 != 2 {
		return Header{}, invalid("v2 version %d", verCmd>>4)
	}
	cmd := verCmd & 0xf
	if cmd != cmdLocal && cmd != cmdProxy {
		return Header{}, invalid("v2 command %d", cmd)
	}
	fam, proto := famProto>>4, famProto&0xf
	if fam > famUnix || proto > protoDgram {
		return Header{}, invalid("v2 family/protocol 0x%02x", famProto)
	}
	var addrLen int
	switch fam {
	case famInet:
		addrLen = 12
	case famInet6:
		addrLen = 36
	case famUnix:
		addrLen = 216
	}
	if cmd == cmdProxy && length < addrLen {
		return Header{}, invalid("v2 length %d too short for family %d", length, fam)
	}
	h := Header{Version: 2}
	if cmd == cmdLocal || fam == famUnspec || fam == famUnix || proto != protoStream {
		// No TCP client address to use: the connection's own applies
		// (spec §2.2: LOCAL, UNSPEC; we serve TCP only).
		h.Local = true
	} else {
		var a [36]byte
		if _, err := br.Discard(v2HeaderBytes); err != nil {
			return Header{}, err
		}
		if _, err := readFull(br, a[:addrLen]); err != nil {
			return Header{}, err
		}
		if fam == famInet {
			h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[0:4])), binary.BigEndian.Uint16(a[8:10]))
			h.Dest = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[4:8])), binary.BigEndian.Uint16(a[10:12]))
		} else {
			h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[0:16])).Unmap(), binary.BigEndian.Uint16(a[32:34]))
			h.Dest = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[16:32])).Unmap(), binary.BigEndian.Uint16(a[34:36]))
		}
		// TLVs (spec §2.2.7) are not used: skip them.
		if _, err := br.Discard(length - addrLen); err != nil {
			return Header{}, err
		}
		return h, nil
	}
	if _, err := br.Discard(v2HeaderBytes + length); err != nil {
		return Header{}, err
	}
	return h, nil
}

// readFull is io.ReadFull on a bufio.Reader.
func readFull(br *bufio.Reader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := br.Read(p[n:])
		n += m
		if err != nil && n < len(p) {
			return n, err
		}
	}
	return n, nil
}

// AppendV1 appends h as a version 1 line: "PROXY UNKNOWN\r\n" when Local,
// TCP4 when both addresses are IPv4, else TCP6.
func (h Header) AppendV1(b []byte) []byte {
	if h.Local || !h.Source.IsValid() || !h.Dest.IsValid() {
		return append(b, "PROXY UNKNOWN\r\n"...)
	}
	src, dst := h.Source.Addr(), h.Dest.Addr()
	if src.Is4() && dst.Is4() {
		b = append(b, "PROXY TCP4 "...)
	} else {
		// Mixed families go out as TCP6, the IPv4 one IPv4-mapped.
		b = append(b, "PROXY TCP6 "...)
		src, dst = netip.AddrFrom16(src.As16()), netip.AddrFrom16(dst.As16())
	}
	b = src.AppendTo(b)
	b = append(b, ' ')
	b = dst.AppendTo(b)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(h.Source.Port()), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(h.Dest.Port()), 10)
	return append(b, "\r\n"...)
}

// AppendV2 appends h as a version 2 header without TLVs: LOCAL when
// Local, else PROXY over TCP on IPv4 or IPv6 by the source address (an
// IPv4 destination with an IPv6 source is written IPv4-mapped).
func (h Header) AppendV2(b []byte) []byte {
	b = append(b, v2Sig...)
	if h.Local || !h.Source.IsValid() || !h.Dest.IsValid() {
		return append(b, 0x20|cmdLocal, famUnspec<<4|protoUnspec, 0, 0)
	}
	src, dst := h.Source.Addr(), h.Dest.Addr()
	if src.Is4() && dst.Is4() {
		b = append(b, 0x20|cmdProxy, famInet<<4|protoStream, 0, 12)
		s4, d4 := src.As4(), dst.As4()
		b = append(b, s4[:]...)
		b = append(b, d4[:]...)
	} else {
		b = append(b, 0x20|cmdProxy, famInet6<<4|protoStream, 0, 36)
		s16, d16 := src.As16(), dst.As16()
		b = append(b, s16[:]...)
		b = append(b, d16[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, h.Source.Port())
	return binary.BigEndian.AppendUint16(b, h.Dest.Port())
}
