package reply

import (
	"errors"
	"strconv"
	"strings"
)

// Reply is one SMTP reply: a three-digit code, an optional RFC 3463
// enhanced status code and one or more text lines.
type Reply struct {
	Code     int    // e.g. 250
	Enhanced string // e.g. "2.1.0"; empty when the peer sent none
	Lines    []string
}

// New builds a single-line reply.
func New(code int, enhanced, text string) Reply {
	return Reply{Code: code, Enhanced: enhanced, Lines: []string{text}}
}

// Positive reports a 2xx reply.
func (r Reply) Positive() bool { return r.Code >= 200 && r.Code < 300 }

// Intermediate reports a 3xx reply (334, 354).
func (r Reply) Intermediate() bool { return r.Code >= 300 && r.Code < 400 }

// Temporary reports a 4xx reply.
func (r Reply) Temporary() bool { return r.Code >= 400 && r.Code < 500 }

// Permanent reports a 5xx reply.
func (r Reply) Permanent() bool { return r.Code >= 500 && r.Code < 600 }

// Text joins the text lines with a space; convenient for logs.
func (r Reply) Text() string { return strings.Join(r.Lines, " ") }

// Error makes a Reply usable as an error; the text is the reply as it would
// appear on one line.
func (r Reply) Error() string { return r.String() }

// String renders the reply on one line, e.g. "550 5.1.1 no such user".
func (r Reply) String() string {
	var b strings.Builder
	n := 4 + len(r.Enhanced) + len(r.Lines)
	for _, l := range r.Lines {
		n += len(l)
	}
	b.Grow(n)
	b.WriteString(strconv.Itoa(r.Code))
	if r.Enhanced != "" {
		b.WriteByte(' ')
		b.WriteString(r.Enhanced)
	}
	if t := r.Text(); t != "" {
		b.WriteByte(' ')
		b.WriteString(t)
	}
	return b.String()
}

// Append writes the reply in wire form (multi-line with "-" continuation,
// CRLF line ends) to dst. The enhanced code, when present, is repeated on
// every line as RFC 2034 requires.
func (r Reply) Append(dst []byte) []byte {
	lines := r.Lines
	if len(lines) == 0 {
		lines = []string{""}
	}
	for i, l := range lines {
		dst = strconv.AppendInt(dst, int64(r.Code), 10)
		if i == len(lines)-1 {
			dst = append(dst, ' ')
		} else {
			dst = append(dst, '-')
		}
		if r.Enhanced != "" {
			dst = append(dst, r.Enhanced...)
			if l != "" {
				dst = append(dst, ' ')
			}
		}
		// A CR or LF inside a line would let text inject extra replies.
		dst = appendClean(dst, l)
		dst = append(dst, '\r', '\n')
	}
	return dst
}

func appendClean(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		dst = append(dst, c)
	}
	return dst
}

// WithText returns a copy with the text replaced, keeping code and enhanced code.
func (r Reply) WithText(text string) Reply {
	return Reply{Code: r.Code, Enhanced: r.Enhanced, Lines: []string{text}}
}

// FromError turns any error into the reply a client should see. A Reply in
// the chain is returned as is. Anything else is a local failure whose text
// must not reach the client (it may name files, hosts or worse): the client
// gets a generic temporary failure carrying ref, an identifier operators can
// find in the log.
func FromError(err error, ref string) Reply {
	return FromErrorOr(err, New(451, "4.3.0", withRef("local error, try again later", ref)))
}

// FromErrorOr is FromError with the reply for a local failure given: a
// stage whose RFC names another code for it (AUTH: 454 4.7.0, RFC 4954
// §6) passes its own.
func FromErrorOr(err error, local Reply) Reply {
	var r Reply
	if errors.As(err, &r) {
		return r
	}
	var rp *Reply
	if errors.As(err, &rp) && rp != nil {
		return *rp
	}
	return local
}

func withRef(text, ref string) string {
	if ref != "" {
		text += " (ref " + ref + ")"
	}
	return text
}

// SplitEnhanced reads an enhanced status code from the start of the first text line
// of a reply received from a peer and splits it off. It accepts "x.y.z" with
// x matching the reply's class digit.
func SplitEnhanced(code int, text string) (enhanced, rest string) {
	sp := strings.IndexByte(text, ' ')
	cand := text
	if sp >= 0 {
		cand = text[:sp]
	}
	if !validEnhanced(code, cand) {
		return "", text
	}
	if sp < 0 {
		return cand, ""
	}
	return cand, text[sp+1:]
}

func validEnhanced(code int, s string) bool {
	// class "." subject "." detail: one digit matching the reply's class,
	// then two groups of 1 to 3 digits (RFC 3463). No allocation: this
	// runs for every upstream reply.
	if len(s) < 5 || s[0] < '0' || s[0] > '9' || int(s[0]-'0') != code/100 || s[1] != '.' {
		return false
	}
	groups, n := 1, 0
	for i := 2; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			n++
			if n > 3 {
				return false
			}
		case c == '.' && n > 0 && groups == 1:
			groups, n = 2, 0
		default:
			return false
		}
	}
	return groups == 2 && n > 0
}

// Is makes errors.Is match replies with the same code, enhanced code and
// text (Reply holds a slice, so == cannot be used).
func (r Reply) Is(target error) bool {
	t, ok := target.(Reply)
	return ok && t.Code == r.Code && t.Enhanced == r.Enhanced && t.Text() == r.Text()
}
