package fakeimap

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/saslmech"
)

// Options configure a Server.
type Options struct {
	// Check accepts an XOAUTH2 user and access token; nil refuses all.
	Check func(user, token string) bool
	// TLS serves implicit TLS (as port 993 does); nil: plain TCP.
	TLS *tls.Config
	// NoMove hides MOVE, so clients use COPY + STORE + EXPUNGE.
	NoMove bool
	// UIDValidity of every INBOX; default 1.
	UIDValidity uint32
	// OnFetch, when set, is called before a message is sent in answer to
	// UID FETCH (tests: shut the client down in the middle of a read).
	OnFetch func(user string, uid uint32)
}

// Server is a running fake.
type Server struct {
	o  Options
	ln net.Listener
	wg sync.WaitGroup

	mu       sync.Mutex
	boxes    map[string]*mailbox // by lowercased user
	disabled map[string]bool
	fetches  map[string]int
	conns    map[net.Conn]bool
}

type message struct {
	uid uint32
	raw []byte
}

type mailbox struct {
	next    uint32
	folders map[string][]message
}

// Start listens on 127.0.0.1 and serves until Close.
func Start(o Options) (*Server, error) {
	if o.UIDValidity == 0 {
		o.UIDValidity = 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if o.TLS != nil {
		ln = tls.NewListener(ln, o.TLS)
	}
	s := &Server{o: o, ln: ln, boxes: map[string]*mailbox{}, disabled: map[string]bool{}, fetches: map[string]int{}, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the listening address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server and waits for its connections.
func (s *Server) Close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Deliver appends a message to user's INBOX and returns its UID.
func (s *Server) Deliver(user string, raw []byte) uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.box(user)
	b.next++
	b.folders["INBOX"] = append(b.folders["INBOX"], message{uid: b.next, raw: raw})
	return b.next
}

// Count is the number of messages in user's folder.
func (s *Server) Count(user, folder string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.box(user).folders[folder])
}

// Fetches is how many messages were fetched from user's mailbox.
func (s *Server) Fetches(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches[strings.ToLower(user)]
}

// Disable refuses user's logins, as a tenant that turned IMAP off does.
func (s *Server) Disable(user string, off bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.disabled[strings.ToLower(user)] = off
}

func (s *Server) box(user string) *mailbox {
	k := strings.ToLower(user)
	b := s.boxes[k]
	if b == nil {
		b = &mailbox{folders: map[string][]message{"INBOX": nil}}
		s.boxes[k] = b
	}
	return b
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			s.serve(c)
		}()
	}
}

// session is one connection's state.
type session struct {
	s      *Server
	w      *bufio.Writer
	user   string // after AUTHENTICATE
	folder string // after SELECT
}

func (s *Server) serve(c net.Conn) {
	br := bufio.NewReader(c)
	ss := &session{s: s, w: bufio.NewWriter(c)}
	ss.line("* OK fakeimap ready")
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		tag, rest, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		cmd, args, _ := strings.Cut(rest, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "UID" {
			sub, a, _ := strings.Cut(args, " ")
			cmd, args = "UID "+strings.ToUpper(sub), a
		}
		if !ss.do(br, tag, cmd, args) {
			return
		}
	}
}

func (ss *session) line(format string, a ...any) {
	fmt.Fprintf(ss.w, format+"\r\n", a...)
	ss.w.Flush()
}

func (ss *session) caps() string {
	c := "IMAP4rev1 SASL-IR AUTH=XOAUTH2 UIDPLUS"
	if !ss.s.o.NoMove {
		c += " MOVE"
	}
	return c
}

// do runs one command; false ends the connection.
func (ss *session) do(br *bufio.Reader, tag, cmd, args string) bool {
	s := ss.s
	if ss.user == "" && cmd != "CAPABILITY" && cmd != "AUTHENTICATE" && cmd != "LOGOUT" && cmd != "NOOP" {
		ss.line("%s BAD authenticate first", tag)
		return true
	}
	switch cmd {
	case "CAPABILITY":
		ss.line("* CAPABILITY %s", ss.caps())
		ss.line("%s OK CAPABILITY completed", tag)
	case "NOOP":
		ss.line("%s OK NOOP completed", tag)
	case "LOGOUT":
		ss.line("* BYE logging out")
		ss.line("%s OK LOGOUT completed", tag)
		return false
	case "AUTHENTICATE":
		mech, ir, _ := strings.Cut(args, " ")
		if !strings.EqualFold(mech, "XOAUTH2") {
			ss.line("%s NO unsupported mechanism", tag)
			return true
		}
		if ir == "" {
			ss.line("+ ")
			l, err := br.ReadString('\n')
			if err != nil {
				return false
			}
			ir = strings.TrimRight(l, "\r\n")
		}
		raw, _ := base64.StdEncoding.DecodeString(ir)
		req, err := saslmech.DecodeXOAUTH2(raw)
		s.mu.Lock()
		off := s.disabled[strings.ToLower(req.User)]
		s.mu.Unlock()
		if err != nil || off || s.o.Check == nil || !s.o.Check(req.User, req.Token) {
			ss.line("+ %s", saslmech.EncodeChallenge(saslmech.Challenge{Status: "400", Schemes: "Bearer", Scope: "https://mail.google.com/"}))
			if _, err := br.ReadString('\n'); err != nil {
				return false
			}
			ss.line("%s NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)", tag)
			return true
		}
		ss.user = req.User
		ss.line("%s OK [CAPABILITY %s] authenticated", tag, ss.caps())
	case "SELECT":
		name := unquote(args)
		s.mu.Lock()
		msgs, ok := s.box(ss.user).folders[name]
		next := s.box(ss.user).next + 1
		s.mu.Unlock()
		if !ok {
			ss.line("%s NO [NONEXISTENT] no such mailbox", tag)
			return true
		}
		ss.folder = name
		ss.line("* %d EXISTS", len(msgs))
		ss.line("* OK [UIDVALIDITY %d] UIDs valid", s.o.UIDValidity)
		ss.line("* OK [UIDNEXT %d] predicted next UID", next)
		ss.line("%s OK [READ-WRITE] SELECT completed", tag)
	case "CREATE":
		name := unquote(args)
		s.mu.Lock()
		b := s.box(ss.user)
		_, exists := b.folders[name]
		if !exists {
			b.folders[name] = nil
		}
		s.mu.Unlock()
		if exists {
			ss.line("%s NO [ALREADYEXISTS] mailbox exists", tag)
		} else {
			ss.line("%s OK CREATE completed", tag)
		}
	case "UID SEARCH":
		// Only the form the client sends: "UID n:*".
		f := strings.Fields(args)
		lo := uint32(0)
		if len(f) == 2 && strings.EqualFold(f[0], "UID") {
			from, _, _ := strings.Cut(f[1], ":")
			n, _ := strconv.ParseUint(from, 10, 32)
			lo = uint32(n)
		}
		var out []string
		s.mu.Lock()
		msgs := s.box(ss.user).folders[ss.folder]
		for i, m := range msgs {
			if m.uid >= lo || i == len(msgs)-1 { // n:* includes the last message (RFC 3501 §6.4.8)
				out = append(out, strconv.FormatUint(uint64(m.uid), 10))
			}
		}
		s.mu.Unlock()
		ss.line("* SEARCH %s", strings.Join(out, " "))
		ss.line("%s OK SEARCH completed", tag)
	case "UID FETCH":
		uid, _, _ := strings.Cut(args, " ")
		n, _ := strconv.ParseUint(uid, 10, 32)
		s.mu.Lock()
		msgs := s.box(ss.user).folders[ss.folder]
		i := slices.IndexFunc(msgs, func(m message) bool { return m.uid == uint32(n) })
		var raw []byte
		if i >= 0 {
			raw = msgs[i].raw
			s.fetches[strings.ToLower(ss.user)]++
		}
		s.mu.Unlock()
		if i >= 0 && s.o.OnFetch != nil {
			s.o.OnFetch(ss.user, uint32(n))
		}
		if i >= 0 {
			fmt.Fprintf(ss.w, "* %d FETCH (UID %d BODY[] {%d}\r\n", i+1, n, len(raw))
			ss.w.Write(raw)
			ss.line(")")
		}
		ss.line("%s OK FETCH completed", tag)
	case "UID MOVE", "UID COPY":
		if cmd == "UID MOVE" && s.o.NoMove {
			ss.line("%s BAD unknown command", tag)
			return true
		}
		uid, dst, _ := strings.Cut(args, " ")
		n, _ := strconv.ParseUint(uid, 10, 32)
		dst = unquote(dst)
		s.mu.Lock()
		b := s.box(ss.user)
		_, ok := b.folders[dst]
		msgs := b.folders[ss.folder]
		i := slices.IndexFunc(msgs, func(m message) bool { return m.uid == uint32(n) })
		if ok && i >= 0 {
			b.next++
			b.folders[dst] = append(b.folders[dst], message{uid: b.next, raw: msgs[i].raw})
			if cmd == "UID MOVE" {
				b.folders[ss.folder] = slices.Delete(msgs, i, i+1)
			}
		}
		s.mu.Unlock()
		if !ok {
			ss.line("%s NO [TRYCREATE] no such mailbox", tag)
			return true
		}
		ss.line("%s OK done", tag)
	case "UID STORE":
		ss.line("%s OK STORE completed", tag) // \Deleted is implied by the EXPUNGE below
	case "UID EXPUNGE":
		n, _ := strconv.ParseUint(strings.TrimSpace(args), 10, 32)
		s.mu.Lock()
		b := s.box(ss.user)
		b.folders[ss.folder] = slices.DeleteFunc(b.folders[ss.folder], func(m message) bool { return m.uid == uint32(n) })
		s.mu.Unlock()
		ss.line("%s OK EXPUNGE completed", tag)
	default:
		ss.line("%s BAD unknown command", tag)
	}
	return true
}

func unquote(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = strings.NewReplacer(`\\`, `\`, `\"`, `"`).Replace(s[1 : len(s)-1])
	}
	return s
}
