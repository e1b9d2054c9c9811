//go:build interop

package interop

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// smtpConn is a minimal SMTP client that hands back every reply, so that
// tests can check codes at each step (net/smtp hides the final DATA reply).
type smtpConn struct {
	t    *testing.T
	conn net.Conn
	tp   *textproto.Conn
}

func dialSMTP(t *testing.T, addr string) *smtpConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return newSMTPConn(t, c)
}

// dialSMTPFrom connects from the local address local (e.g. 127.0.0.2, an
// address outside a proxy's trusted_networks).
func dialSMTPFrom(t *testing.T, local, addr string) *smtpConn {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, local, err)
	}
	return newSMTPConn(t, c)
}

// startTLS sends STARTTLS and runs the handshake, verifying the server's
// certificate (name 127.0.0.1) against caFile; the session then speaks TLS.
func (s *smtpConn) startTLS(caFile string) {
	s.t.Helper()
	s.must(220, "STARTTLS")
	tc := tls.Client(s.conn, tlsConfig(s.t, caFile))
	if err := tc.Handshake(); err != nil {
		s.t.Fatalf("STARTTLS handshake: %v", err)
	}
	s.conn, s.tp = tc, textproto.NewConn(tc)
}

// dialSMTPTLS connects with TLS from the first byte, trusting caFile.
func dialSMTPTLS(t *testing.T, addr, caFile string) *smtpConn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, tlsConfig(t, caFile))
	if err != nil {
		t.Fatalf("dial TLS %s: %v", addr, err)
	}
	return newSMTPConn(t, c)
}

func tlsConfig(t *testing.T, caFile string) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

func newSMTPConn(t *testing.T, c net.Conn) *smtpConn {
	t.Helper()
	s := &smtpConn{t: t, conn: c, tp: textproto.NewConn(c)}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if code, msg := s.read(); code != 220 {
		t.Fatalf("greeting: %d %s", code, msg)
	}
	return s
}

func (s *smtpConn) read() (int, string) {
	s.t.Helper()
	code, msg, err := s.tp.ReadResponse(0)
	if err != nil && code == 0 {
		s.t.Fatalf("read reply: %v", err)
	}
	return code, msg
}

// cmd sends one command line and returns the reply.
func (s *smtpConn) cmd(format string, args ...any) (int, string) {
	s.t.Helper()
	if _, err := s.tp.Cmd(format, args...); err != nil {
		s.t.Fatalf("send %q: %v", fmt.Sprintf(format, args...), err)
	}
	return s.read()
}

// must sends a command and fails the test unless the reply has code want.
func (s *smtpConn) must(want int, format string, args ...any) string {
	s.t.Helper()
	code, msg := s.cmd(format, args...)
	if code != want {
		s.t.Fatalf("%s: got %d %s, want %d", strings.Fields(fmt.Sprintf(format, args...))[0], code, msg, want)
	}
	return msg
}

func (s *smtpConn) authPlain(user, pass string) (int, string) {
	s.t.Helper()
	return s.cmd("AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass)))
}

// data sends DATA, the message (dot-stuffed by textproto) and returns the
// final reply; a DATA refused with other than 354 is returned as is.
func (s *smtpConn) data(msg []byte) (int, string) {
	s.t.Helper()
	if code, text := s.cmd("DATA"); code != 354 {
		return code, text
	}
	w := s.tp.DotWriter()
	w.Write(msg)
	if err := w.Close(); err != nil {
		s.t.Fatalf("send message: %v", err)
	}
	return s.read()
}

// send runs one whole transaction and returns the final reply (or the
// first failing one).
func (s *smtpConn) send(from string, to []string, msg []byte) (int, string) {
	s.t.Helper()
	if code, text := s.cmd("MAIL FROM:<%s>", from); code != 250 {
		return code, text
	}
	ok := 0
	for _, r := range to {
		if code, _ := s.cmd("RCPT TO:<%s>", r); code == 250 || code == 251 {
			ok++
		}
	}
	if ok == 0 {
		s.cmd("RSET")
		return 554, "no recipient accepted"
	}
	return s.data(msg)
}

func (s *smtpConn) quit() { s.cmd("QUIT") }

// proxySession opens an authenticated client session to the proxy.
func proxySession(t *testing.T, x *proxy, a *account) *smtpConn {
	t.Helper()
	s := dialSMTP(t, x.addr())
	s.must(250, "EHLO client.interop.test")
	if code, msg := s.authPlain(a.Email, a.Password); code != 235 {
		t.Fatalf("AUTH PLAIN as %s: %d %s", a.Email, code, msg)
	}
	return s
}

// testMessage builds a message whose first header is the marker and whose
// body has what relays tend to damage: leading dots (dot-stuffing), a lone
// dot, trailing white space, tabs, 8-bit UTF-8, a 2,000-byte line, empty
// lines, and no trailing empty line. Lines end in CRLF.
func testMessage(marker, from, to string) []byte {
	var b bytes.Buffer
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	h("X-Interop-Marker", marker)
	h("From", "<"+from+">")
	h("To", "<"+to+">")
	h("Subject", "interop "+marker)
	h("Date", time.Now().UTC().Format(time.RFC1123Z))
	h("Message-ID", "<"+marker+"@interop.test>")
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=utf-8")
	h("Content-Transfer-Encoding", "8bit")
	b.WriteString("\r\n")
	for _, l := range []string{
		"First line of " + marker,
		".a line that starts with a dot",
		"..two dots",
		".",
		" leading space and trailing spaces   ",
		"tab\tseparated\tvalues\t",
		"UTF-8: Grüße, naïve café, 東京, ✓",
		"",
		strings.Repeat("0123456789", 200),
		"",
		"",
		"From the start of a line (mbox would quote this)",
		"last line without an empty line after it",
	} {
		b.WriteString(l + "\r\n")
	}
	return b.Bytes()
}

// maildir is the upstream's one Maildir: every recipient lands there, with
// a Delivered-To header naming it.
func (p *peers) maildir() string { return p.path("mail", "inbox", "new") }

// mailMeta is what the index keeps of one delivered message.
type mailMeta struct {
	path        string
	deliveredTo string // the first Delivered-To, lower case
	marker      string // X-Interop-Marker
	messageID   string
	subject     string
}

// mailIndex reads each new Maildir file once and remembers its headers.
type mailIndex struct {
	mu    sync.Mutex
	files map[string]*mailMeta
}

// scan indexes the files that appeared since the last scan.
func (p *peers) scan() []*mailMeta {
	ix := p.mail
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.files == nil {
		ix.files = map[string]*mailMeta{}
	}
	names, _ := filepath.Glob(filepath.Join(p.maildir(), "*"))
	for _, f := range names {
		if ix.files[f] != nil {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		m := &mailMeta{path: f}
		head, _, _ := bytes.Cut(b, []byte("\n\n"))
		for _, l := range strings.Split(string(head), "\n") {
			k, v, ok := strings.Cut(l, ":")
			if !ok || strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t") {
				continue
			}
			v = strings.TrimSpace(v)
			switch strings.ToLower(k) {
			case "delivered-to":
				if m.deliveredTo == "" {
					m.deliveredTo = strings.ToLower(v)
				}
			case "x-interop-marker":
				m.marker = v
			case "message-id":
				m.messageID = v
			case "subject":
				m.subject = v
			}
		}
		ix.files[f] = m
	}
	out := make([]*mailMeta, 0, len(ix.files))
	for _, m := range ix.files {
		out = append(out, m)
	}
	return out
}

// messagesTo returns the delivered messages whose recipient is box@dest.test.
func (p *peers) messagesTo(box string) []*mailMeta {
	var out []*mailMeta
	for _, m := range p.scan() {
		if m.deliveredTo == box+"@dest.test" {
			out = append(out, m)
		}
	}
	return out
}

// countMessages returns how many messages were delivered to box@dest.test.
func (p *peers) countMessages(box string) int { return len(p.messagesTo(box)) }

// findMessage waits up to d for a message carrying marker delivered to
// box@dest.test, and returns its file's content.
func (p *peers) findMessage(t *testing.T, box, marker string, d time.Duration) []byte {
	t.Helper()
	var found *mailMeta
	eventually(d, func() bool {
		for _, m := range p.messagesTo(box) {
			if m.marker == marker {
				found = m
				return true
			}
		}
		return false
	})
	if found == nil {
		t.Fatalf("no message with marker %s to %s@dest.test in %s within %v", marker, box, p.maildir(), d)
	}
	b, err := os.ReadFile(found.path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkIdentical checks that the delivered file ends with exactly the
// message that was sent (from its first header, the marker, on), with
// CRLF stored as LF as Maildir does, and that what comes before the marker
// is only header lines the upstream added.
func checkIdentical(t *testing.T, file, sent []byte, marker string) {
	t.Helper()
	want := bytes.ReplaceAll(sent, []byte("\r\n"), []byte("\n"))
	i := bytes.Index(file, []byte("X-Interop-Marker: "+marker+"\n"))
	if i < 0 {
		t.Fatalf("marker %s not in the delivered message", marker)
	}
	added, got := file[:i], file[i:]
	if !bytes.Equal(got, want) {
		n := 0
		for n < len(got) && n < len(want) && got[n] == want[n] {
			n++
		}
		lo := max(0, n-80)
		t.Errorf("delivered message differs from the sent one at byte %d of %d (sent %d):\n got: %q\nwant: %q",
			n, len(got), len(want), got[lo:min(len(got), n+80)], want[lo:min(len(want), n+80)])
	}
	sc := bufio.NewScanner(bytes.NewReader(added))
	for sc.Scan() {
		l := sc.Text()
		if l == "" || (l[0] != ' ' && l[0] != '\t' && !strings.Contains(l, ":")) {
			t.Errorf("before the marker, a line that is not a header: %q", l)
		}
	}
}
