package smtpd

import (
	"strconv"
	"strings"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
)

// splitVerb returns the upper-cased verb and the rest of a command line
// (CRLF already removed).
func splitVerb(line string) (verb, arg string) {
	i := strings.IndexByte(line, ' ')
	if i < 0 {
		return strings.ToUpper(line), ""
	}
	return strings.ToUpper(line[:i]), strings.TrimLeft(line[i+1:], " ")
}

var (
	errSyntaxMail  = reply.New(501, "5.5.4", "Syntax: MAIL FROM:<address> [parameters]")
	errSyntaxRcpt  = reply.New(501, "5.5.4", "Syntax: RCPT TO:<address> [parameters]")
	errBadAddress  = reply.New(501, "5.1.7", "Bad address syntax")
	errBadRcptAddr = reply.New(501, "5.1.3", "Bad recipient address syntax")
	errNeedUTF8    = reply.New(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
)

// pathArg parses "FROM:<addr> params" (prefix "FROM:" or "TO:"). It accepts
// a space after the colon, which many clients send.
func pathArg(arg, prefix string) (addr string, params []string, ok bool) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return "", nil, false
	}
	rest := strings.TrimLeft(arg[len(prefix):], " ")
	if !strings.HasPrefix(rest, "<") {
		return "", nil, false
	}
	end := closingBracket(rest)
	if end < 0 {
		return "", nil, false
	}
	addr = rest[1:end]
	// A source route (RFC 5321 §4.1.2, obsolete) is accepted and dropped.
	if strings.HasPrefix(addr, "@") {
		if c := strings.IndexByte(addr, ':'); c >= 0 {
			addr = addr[c+1:]
		}
	}
	tail := rest[end+1:]
	if tail != "" && tail[0] != ' ' {
		return "", nil, false
	}
	for _, f := range strings.Fields(tail) {
		k, v, hasV := strings.Cut(f, "=")
		k = strings.ToUpper(k)
		if hasV {
			params = append(params, k+"="+v)
		} else {
			params = append(params, k)
		}
	}
	return addr, params, true
}

// closingBracket finds the '>' ending the path, skipping quoted local parts.
func closingBracket(s string) int {
	quoted := false
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if quoted {
				i++
			}
		case '"':
			quoted = !quoted
		case '>':
			if !quoted {
				return i
			}
		}
	}
	return -1
}

// validAddr checks a mailbox loosely: local@domain without spaces or
// control characters. Providers make the real decision; this only keeps
// garbage off the upstream session.
func validAddr(a string) bool {
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 || len(a) > 512 {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if c < 0x21 || c == 0x7f {
			if c == ' ' && strings.HasPrefix(a, "\"") {
				continue
			}
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// mailOpts is what the server needs to know about MAIL parameters.
type mailOpts struct {
	smtpUTF8 bool
}

// checkMailParams validates MAIL parameters against what we advertise
// (SIZE, BODY, SMTPUTF8) and the size limit.
func checkMailParams(params []string, maxSize int64) (mailOpts, *reply.Reply) {
	var o mailOpts
	for _, p := range params {
		k, v, _ := strings.Cut(p, "=")
		switch k {
		case "SIZE":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				r := reply.New(501, "5.5.4", "Bad SIZE parameter")
				return o, &r
			}
			if maxSize > 0 && n > maxSize {
				r := reply.New(552, "5.3.4", "Message size exceeds fixed maximum message size")
				return o, &r
			}
		case "BODY":
			switch strings.ToUpper(v) {
			case "7BIT", "8BITMIME":
			default:
				r := reply.New(555, "5.5.4", "Unsupported BODY type")
				return o, &r
			}
		case "SMTPUTF8":
			if v != "" {
				r := reply.New(555, "5.5.4", "SMTPUTF8 takes no value")
				return o, &r
			}
			o.smtpUTF8 = true
		case "AUTH":
			// RFC 4954 §5: accepted; the relay decides what goes upstream.
		default:
			r := reply.New(555, "5.5.4", "Unsupported parameter "+k)
			return o, &r
		}
	}
	return o, nil
}

// parseMail parses the argument of MAIL.
func parseMail(arg string, maxSize int64) (Command, mailOpts, *reply.Reply) {
	addr, params, ok := pathArg(arg, "FROM:")
	if !ok {
		return Command{}, mailOpts{}, &errSyntaxMail
	}
	opts, rp := checkMailParams(params, maxSize)
	if rp != nil {
		return Command{}, opts, rp
	}
	if addr != "" && !validAddr(addr) {
		return Command{}, opts, &errBadAddress
	}
	if !opts.smtpUTF8 && !isASCII(addr) {
		return Command{}, opts, &errNeedUTF8
	}
	return Command{Verb: VerbMail, Addr: addr, Params: params}, opts, nil
}

// parseRcpt parses the argument of RCPT. No RCPT parameters are advertised
// (no DSN), so any is refused.
func parseRcpt(arg string, utf8 bool) (Command, *reply.Reply) {
	addr, params, ok := pathArg(arg, "TO:")
	if !ok {
		return Command{}, &errSyntaxRcpt
	}
	if len(params) > 0 {
		r := reply.New(555, "5.5.4", "Unsupported RCPT parameter")
		return Command{}, &r
	}
	if !validAddr(addr) {
		return Command{}, &errBadRcptAddr
	}
	if !utf8 && !isASCII(addr) {
		return Command{}, &errNeedUTF8
	}
	return Command{Verb: VerbRcpt, Addr: addr}, nil
}
