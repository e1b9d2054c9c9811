package upstream

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
)

// Reply limits protect memory against a hostile or broken server. RFC 5321
// §4.5.3.1.5 allows 512 octets per reply line; 4 KiB leaves room for the
// long texts providers send. The read buffer has exactly this size, so a
// longer line shows up as bufio.ErrBufferFull.
const (
	maxReplyLine  = 4096 // bytes per line, CRLF included
	maxReplyLines = 100  // lines per reply
)

// readReply reads one reply (RFC 5321 §4.2): lines "NNN-text" continue,
// "NNN text" or a bare "NNN" ends it, and all lines carry the same code. An
// RFC 3463 enhanced code is split off every line's text; the first one is
// kept. Bare LF line ends are tolerated. br must have a buffer of
// maxReplyLine bytes.
func readReply(br *bufio.Reader) (reply.Reply, error) {
	var r reply.Reply
	for n := 0; ; n++ {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return reply.Reply{}, fmt.Errorf("%w: line longer than %d bytes", ErrMalformedReply, maxReplyLine)
			}
			if err == io.EOF && (len(line) > 0 || n > 0) {
				err = io.ErrUnexpectedEOF
			}
			return reply.Reply{}, err
		}
		if n == maxReplyLines {
			return reply.Reply{}, fmt.Errorf("%w: more than %d lines", ErrMalformedReply, maxReplyLines)
		}
		code, last, text, ok := parseReplyLine(trimEOL(line))
		if !ok {
			return reply.Reply{}, fmt.Errorf("%w: %q", ErrMalformedReply, clip(line))
		}
		if n == 0 {
			r.Code = code
		} else if code != r.Code {
			return reply.Reply{}, fmt.Errorf("%w: code %d inside a %d reply", ErrMalformedReply, code, r.Code)
		}
		enh, rest := reply.SplitEnhanced(code, string(text))
		if r.Enhanced == "" {
			r.Enhanced = enh
		}
		r.Lines = append(r.Lines, rest)
		if last {
			return r, nil
		}
	}
}

// parseReplyLine splits "250-text", "250 text" or "250" into its parts.
// The first digit must be 2 to 5 (RFC 5321 §4.2.1); SMTP has no 1yz.
func parseReplyLine(l []byte) (code int, last bool, text []byte, ok bool) {
	if len(l) < 3 {
		return 0, false, nil, false
	}
	c0, c1, c2 := l[0]-'0', l[1]-'0', l[2]-'0'
	if c0 < 2 || c0 > 5 || c1 > 9 || c2 > 9 {
		return 0, false, nil, false
	}
	code = int(c0)*100 + int(c1)*10 + int(c2)
	if len(l) == 3 {
		return code, true, nil, true
	}
	switch l[3] {
	case ' ':
		return code, true, l[4:], true
	case '-':
		return code, false, l[4:], true
	}
	return 0, false, nil, false
}

func trimEOL(l []byte) []byte {
	l = l[:len(l)-1] // the '\n' ReadSlice stopped at
	if len(l) > 0 && l[len(l)-1] == '\r' {
		l = l[:len(l)-1]
	}
	return l
}

// clip shortens a bad line for an error message.
func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
