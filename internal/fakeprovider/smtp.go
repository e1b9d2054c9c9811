package fakeprovider

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
)

const (
	hostname = "fake.provider"
	// maxCommandBytes bounds command lines other than AUTH. RFC 5321
	// §4.5.3.1.4 says 512 octets; like Gmail we accept more.
	maxCommandBytes = 4096
	// maxAuthResponseBytes bounds a SASL response line sent after "334 ".
	maxAuthResponseBytes = 16 << 10
	// maxRecipients per message: PROVIDERS.md, Gmail via SMTP.
	maxRecipients   = 100
	readBufferBytes = 32 << 10
)

var errLineTooLong = errors.New("line too long")

// acceptSMTP runs the SMTP accept loop until Close.
func (p *Provider) acceptSMTP() {
	for {
		c, err := p.smtpLn.Accept()
		if err != nil {
			select {
			case <-p.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			p.log.Warn("smtp accept", "err", err)
			select { // back off on errors such as EMFILE
			case <-p.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.mu.Lock()
		p.smtpConns[c] = struct{}{}
		p.mu.Unlock()
		p.connections.Add(1)
		p.wg.Go(func() { p.serveSMTP(c) })
	}
}

// session is one SMTP connection.
type session struct {
	p      *Provider
	id     string // "c<N>", in logs and reply ids
	ok     string // "OK <id> - gsmtp", Gmail's text for 250 to MAIL and RCPT
	raw    net.Conn
	conn   net.Conn // raw, or the TLS connection on top of it
	r      *bufio.Reader
	w      *bufio.Writer
	tls    bool
	helo   bool
	acct   *account // nil until AUTH succeeds
	key    string   // acct's key, for the session count
	mech   string   // the SASL mechanism acct logged in with
	nmsg   int      // messages in this session, for ids
	t      txn
	line   []byte   // assembles lines longer than the read buffer
	out    []byte   // scratch for replies
	body   body     // the DATA being read; its hash is reused
	sum    [32]byte // scratch for the hash sum
	closed bool     // the handler asked to end the session

	fault   Fault // Options.SessionFault's choice for this session
	faulted bool  // the fault has struck
	trickle bool  // replies go out one byte per Options.TrickleInterval
}

// txn is the mail transaction between MAIL and the end of DATA or RSET.
type txn struct {
	active bool
	bdat   bool // a BDAT chunk was received: the body is being assembled
	from   string
	params []string
	rcpts  []string
	fx     effects
}

func (p *Provider) serveSMTP(c net.Conn) {
	seq := p.connSeq.Add(1)
	id := "c" + strconv.FormatInt(seq, 10)
	s := &session{
		p:    p,
		id:   id,
		ok:   "OK " + id + " - gsmtp",
		raw:  c,
		conn: c,
		body: body{h: sha256.New()},
	}
	defer func() {
		if s.acct != nil {
			p.releaseSession(s.key)
		}
		c.Close()
		p.untrack(c)
	}()
	if p.opts.SessionFault != nil {
		s.fault = p.opts.SessionFault(seq)
	}
	s.w = bufio.NewWriterSize(sessionWriter{s}, 4096)
	if p.opts.ImplicitTLS && !s.handshakeTLS() {
		return
	}
	s.r = bufio.NewReaderSize(s.conn, readBufferBytes)
	s.run()
}

func (s *session) run() {
	if s.sessionFault(StageGreeting) && s.closed {
		return
	}
	s.reply(220, "", hostname+" ESMTP")
	limit := max(maxAuthResponseBytes, s.p.opts.MaxAuthLineBytes)
	for !s.closed {
		if s.r.Buffered() == 0 {
			// Flush only when the client waits for us: a pipelined batch
			// gets its replies in one write (RFC 2920 §3.1).
			if s.w.Flush() != nil {
				return
			}
		}
		line, err := s.readLine(limit)
		if errors.Is(err, errLineTooLong) {
			if hasVerb(line, "AUTH") {
				s.reply(555, "5.5.2", "Syntax error, command line too long")
			} else {
				s.reply(500, "5.5.2", "Line too long.")
			}
			continue
		}
		if err != nil {
			return
		}
		s.dispatch(line)
	}
	s.w.Flush()
}

// readLine returns the next line without its line end. The slice is valid
// until the next read. Lines over limit bytes are consumed whole and give
// errLineTooLong along with their first bytes, so the caller can tell
// which command it was.
func (s *session) readLine(limit int) ([]byte, error) {
	b, err := s.r.ReadSlice('\n')
	if err == nil {
		if len(b) > limit+2 {
			return b[:16], errLineTooLong
		}
		return trimEOL(b), nil
	}
	if err != bufio.ErrBufferFull {
		return nil, err
	}
	s.line = append(s.line[:0], b...)
	for {
		b, err = s.r.ReadSlice('\n')
		if len(s.line)+len(b) > limit+2 {
			head := s.line[:16]
			for err == bufio.ErrBufferFull {
				_, err = s.r.ReadSlice('\n')
			}
			if err != nil {
				return nil, err
			}
			return head, errLineTooLong
		}
		s.line = append(s.line, b...)
		if err == nil {
			return trimEOL(s.line), nil
		}
		if err != bufio.ErrBufferFull {
			return nil, err
		}
	}
}

func trimEOL(b []byte) []byte {
	b = b[:len(b)-1] // the '\n'
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}

// hasVerb reports whether line starts with verb, case-insensitively, as a
// whole word.
func hasVerb(line []byte, verb string) bool {
	if len(line) < len(verb) || !strings.EqualFold(string(line[:len(verb)]), verb) {
		return false
	}
	return len(line) == len(verb) || line[len(verb)] == ' '
}

func (s *session) dispatch(line []byte) {
	var vb [8]byte
	n := 0
	for n < len(line) && line[n] != ' ' && n < len(vb) {
		c := line[n]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		vb[n] = c
		n++
	}
	verb := string(vb[:n])
	if n < len(line) && line[n] != ' ' {
		verb = "" // longer than any verb we know
	}
	if verb != "AUTH" && len(line) > maxCommandBytes {
		s.reply(500, "5.5.2", "Line too long.")
		return
	}
	arg := ""
	if n < len(line) {
		arg = strings.TrimSpace(string(line[n+1:]))
	}
	if s.nmsg > 0 && s.sessionFault(StageReuse) {
		return
	}
	switch verb {
	case "EHLO", "HELO":
		s.cmdHello(verb, arg)
	case "STARTTLS":
		s.cmdStartTLS(arg)
	case "AUTH":
		s.cmdAuth(arg, len(line))
	case "MAIL":
		s.cmdMail(arg)
	case "RCPT":
		s.cmdRcpt(arg)
	case "DATA":
		s.cmdData(arg)
	case "BDAT":
		s.cmdBdat(arg)
	case "RSET":
		s.t = txn{}
		s.reply(250, "2.1.5", "Flushed")
	case "NOOP":
		s.reply(250, "2.0.0", "OK")
	case "VRFY":
		s.reply(252, "2.1.5", "Send some mail, I'll try my best")
	case "HELP":
		s.reply(214, "2.0.0", "https://www.google.com/search?btnI&q=RFC+5321")
	case "QUIT":
		s.p.quits.Add(1)
		s.reply(221, "2.0.0", "closing connection")
		s.closed = true
	default:
		s.reply(502, "5.5.1", "Unrecognized command.")
	}
}

func (s *session) cmdHello(verb, arg string) {
	if s.sessionFault(StageEHLO) {
		return
	}
	if arg == "" {
		s.reply(501, "5.5.4", "Empty HELO/EHLO argument not allowed")
		return
	}
	s.helo = true
	s.t = txn{} // RFC 5321 §4.1.4: EHLO implies RSET
	if verb == "HELO" {
		s.reply(250, "", hostname+" at your service")
		return
	}
	o := &s.p.opts
	b := append(s.out[:0], "250-"+hostname+" at your service\r\n250-SIZE "...)
	b = strconv.AppendInt(b, o.MaxMessageBytes, 10)
	b = append(b, "\r\n"...)
	if !o.No8BITMIME {
		b = append(b, "250-8BITMIME\r\n"...)
	}
	if o.TLSConfig != nil && !s.tls {
		b = append(b, "250-STARTTLS\r\n"...)
	}
	if s.tls || !o.RequireTLSForAuth {
		b = append(b, "250-AUTH XOAUTH2 OAUTHBEARER\r\n"...)
	}
	b = append(b, "250-ENHANCEDSTATUSCODES\r\n"...)
	if !o.NoPipelining {
		b = append(b, "250-PIPELINING\r\n"...)
	}
	if !o.NoSMTPUTF8 {
		b = append(b, "250-SMTPUTF8\r\n"...)
	}
	if o.Chunking {
		b = append(b, "250-CHUNKING\r\n"...)
	}
	// The last line carries a space, not a hyphen, after the code.
	last := bytes.LastIndex(b[:len(b)-2], []byte("\r\n")) + 2
	b[last+3] = ' '
	s.out = b
	s.w.Write(b)
}

// cmdStartTLS implements RFC 3207. Everything learnt before it (EHLO,
// AUTH, the transaction, pipelined bytes) is forgotten (§4.2).
func (s *session) cmdStartTLS(arg string) {
	switch {
	case s.p.opts.TLSConfig == nil:
		s.reply(502, "5.5.1", "Unrecognized command.")
		return
	case s.tls:
		s.reply(503, "5.5.1", "TLS already active.")
		return
	case arg != "":
		s.reply(501, "5.5.4", "Syntax error, no parameters allowed")
		return
	}
	if s.sessionFault(StageSTARTTLS) {
		return
	}
	s.reply(220, "2.0.0", "Ready to start TLS")
	if s.w.Flush() != nil {
		s.closed = true
		return
	}
	if !s.handshakeTLS() {
		s.closed = true
		return
	}
	s.helo, s.t = false, txn{}
	s.r.Reset(s.conn)
	if s.acct != nil {
		s.p.releaseSession(s.key)
		s.acct, s.key, s.mech = nil, "", ""
	}
}

func (s *session) cmdMail(arg string) {
	switch {
	case !s.helo:
		s.reply(503, "5.5.1", "EHLO/HELO first.")
		return
	case s.acct == nil:
		s.reply(530, "5.7.0", "Authentication Required.")
		return
	case s.t.active:
		s.reply(503, "5.5.1", "Nested MAIL command.")
		return
	}
	addr, params, ok := parsePath(arg, "FROM:")
	if !ok {
		s.reply(555, "5.5.2", "Syntax error.")
		return
	}
	for _, prm := range params {
		k, v, _ := strings.Cut(prm, "=")
		switch strings.ToUpper(k) {
		case "BODY":
			if s.p.opts.No8BITMIME {
				s.reply(555, "5.5.4", "Unsupported option: BODY")
				return
			}
			if !strings.EqualFold(v, "7BIT") && !strings.EqualFold(v, "8BITMIME") {
				s.reply(555, "5.5.4", "Unsupported BODY type.")
				return
			}
		case "SIZE":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				s.reply(501, "5.5.4", "Invalid SIZE parameter.")
				return
			}
			if n > s.p.opts.MaxMessageBytes {
				s.reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
				return
			}
		case "SMTPUTF8":
			if s.p.opts.NoSMTPUTF8 {
				s.reply(555, "5.5.4", "Unsupported option: SMTPUTF8")
				return
			}
		case "AUTH":
		default:
			s.reply(555, "5.5.4", "Unsupported option: "+k)
			return
		}
	}
	in := parseInjection(addr)
	switch in.kind {
	case injFailMail:
		s.replyR(in.reply)
		return
	case injDropAtMail:
		s.drop("drop-at-mail")
		return
	case injStallAtMail:
		s.stall("stall-at-mail")
		return
	case injTrickle:
		s.trickle = true
	}
	s.t = txn{active: true, from: addr, params: params}
	s.t.fx.add(in)
	s.reply(250, "2.1.0", s.ok)
}

func (s *session) cmdRcpt(arg string) {
	if !s.t.active {
		s.reply(503, "5.5.1", "need MAIL before RCPT")
		return
	}
	addr, params, ok := parsePath(arg, "TO:")
	switch {
	case !ok || addr == "":
		s.reply(555, "5.5.2", "Syntax error.")
		return
	case len(params) > 0:
		// No DSN or other RCPT extension is advertised.
		s.reply(555, "5.5.4", "Unsupported option: "+params[0])
		return
	case len(s.t.rcpts) >= maxRecipients:
		s.reply(452, "4.5.3", "Your message has too many recipients.")
		return
	}
	in := parseInjection(addr)
	switch in.kind {
	case injReject:
		s.replyR(in.reply)
		return
	case injDropAtRcpt:
		s.drop("drop-at-rcpt")
		return
	case injStallAtRcpt:
		s.stall("stall-at-rcpt")
		return
	case injTrickle:
		s.trickle = true
	}
	s.t.rcpts = append(s.t.rcpts, addr)
	s.t.fx.add(in)
	s.reply(250, "2.1.5", s.ok)
}

// parsePath reads "FROM:<addr> PARAMS" (kw is "FROM:" or "TO:"). A space
// after the colon is tolerated, as most servers do.
func parsePath(arg, kw string) (addr string, params []string, ok bool) {
	if len(arg) < len(kw) || !strings.EqualFold(arg[:len(kw)], kw) {
		return "", nil, false
	}
	rest := strings.TrimLeft(arg[len(kw):], " ")
	if rest == "" || rest[0] != '<' {
		return "", nil, false
	}
	end := strings.IndexByte(rest, '>')
	if end < 0 {
		return "", nil, false
	}
	addr = rest[1:end]
	if strings.ContainsAny(addr, " <") {
		return "", nil, false
	}
	if p := strings.TrimSpace(rest[end+1:]); p != "" {
		if rest[end+1] != ' ' {
			return "", nil, false
		}
		params = strings.Fields(p)
	}
	return addr, params, true
}

// drop ends the connection without a reply, after flushing the replies to
// the commands before this one.
func (s *session) drop(why string) {
	s.p.log.Info("connection dropped", "conn_id", s.id, "reason", why)
	s.w.Flush()
	s.closed = true
	s.raw.Close()
}

// reply appends one single-line reply to the output buffer; the command
// loop flushes it.
func (s *session) reply(code int, enhanced, text string) {
	b := strconv.AppendInt(s.out[:0], int64(code), 10)
	b = append(b, ' ')
	if enhanced != "" {
		b = append(b, enhanced...)
		b = append(b, ' ')
	}
	b = append(b, text...)
	b = append(b, '\r', '\n')
	s.out = b
	s.w.Write(b)
}

// replyR writes an injected reply; a 421 also closes the connection, as
// RFC 5321 §3.8 describes.
func (s *session) replyR(r reply.Reply) {
	s.out = r.Append(s.out[:0])
	s.w.Write(s.out)
	if r.Code == 421 {
		s.closed = true
	}
}
