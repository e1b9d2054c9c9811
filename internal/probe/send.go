package probe

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"strings"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

// Message is the test message Send builds.
type Message struct {
	From    string   // envelope sender and From header; "" means the account's email
	To      []string // one or more recipients
	Subject string
	Body    string // plain text; line ends become CRLF
	// Date is the Date header; zero means now.
	Date time.Time
}

// Step is one upstream command and the provider's reply to it.
type Step struct {
	Command string
	Reply   reply.Reply
}

// SendReport is the outcome of Send.
type SendReport struct {
	Account *config.Account
	// Session is how long opening the upstream session took: connect,
	// TLS, EHLO, token, AUTH.
	Session time.Duration
	Steps   []Step
	// Final is the provider's reply after the message, nil when the
	// transaction ended before DATA was accepted.
	Final *reply.Reply
}

// Delivered reports whether the provider accepted the message.
func (r SendReport) Delivered() bool { return r.Final != nil && r.Final.Positive() }

// Send opens an upstream session for the account (email or account_id),
// exactly as the proxy's pool does, and sends one message over it: MAIL,
// RCPT for each recipient and DATA as one pipelined batch, then the body.
// The report holds every reply received; the error says why the
// transaction could not be completed (a session that would not open, a
// connection lost). A refusal by the provider is not an error: it is in
// the report, and Delivered is false.
func (p *Probe) Send(ctx context.Context, name string, m Message) (SendReport, error) {
	a, err := p.account(name)
	if err != nil {
		return SendReport{}, err
	}
	rep := SendReport{Account: a.Cfg}
	if a.Cfg.Disabled {
		return rep, fmt.Errorf("%s is disabled (\"disabled\": true in accounts.json): the proxy would refuse it", a.Cfg.Email)
	}
	if m.From == "" {
		m.From = a.Cfg.Email
	}
	for _, addr := range append([]string{m.From}, m.To...) {
		if err := checkAddr(addr); err != nil {
			return rep, err
		}
	}
	if len(m.To) == 0 {
		return rep, errors.New("no recipient")
	}
	data := m.build(a.Cfg.Email)

	start := time.Now()
	lease, err := a.Sessions().Lease(ctx, p.svc.Snapshot().Global.Timeouts.ConnectionAcquire)
	if err != nil {
		// The cause, not the reply a client would get (which hides it).
		if oe, ok := errors.AsType[*account.OpenError](err); ok {
			err = oe.Err
		}
		return rep, fmt.Errorf("open upstream session to %s: %w", a.Cfg.SMTPAddr, err)
	}
	rep.Session = time.Since(start)
	sess := lease.Session()
	healthy := false
	defer func() {
		if healthy {
			lease.Release() // Close QUITs it
		} else {
			lease.Discard()
		}
	}()

	mail := "FROM:<" + m.From + ">"
	if _, ok := sess.Extension("8BITMIME"); ok && !isASCII(data) {
		mail += " BODY=8BITMIME"
	}
	cmds := []upstream.Cmd{{Verb: "MAIL", Arg: mail}}
	for _, to := range m.To {
		cmds = append(cmds, upstream.Cmd{Verb: "RCPT", Arg: "TO:<" + to + ">"})
	}
	cmds = append(cmds, upstream.Cmd{Verb: "DATA"})
	replies, err := sess.Batch(ctx, cmds)
	for i, r := range replies {
		rep.Steps = append(rep.Steps, Step{Command: strings.TrimSpace(cmds[i].Verb + " " + cmds[i].Arg), Reply: r})
	}
	if err != nil {
		return rep, fmt.Errorf("upstream %s: %w", a.Cfg.SMTPAddr, err)
	}
	if replies[len(replies)-1].Code != 354 {
		healthy = !sess.Broken()
		return rep, nil
	}
	final, err := sess.Body(ctx, bytes.NewReader(data))
	if err != nil {
		if upstream.Ambiguous(err) {
			return rep, fmt.Errorf("upstream %s: connection lost after the message was sent; it may or may not have been delivered: %w", a.Cfg.SMTPAddr, err)
		}
		return rep, fmt.Errorf("upstream %s: %w", a.Cfg.SMTPAddr, err)
	}
	rep.Final = &final
	healthy = !sess.Broken()
	return rep, nil
}

// checkAddr refuses what cannot go into MAIL FROM:<...> or RCPT TO:<...>.
func checkAddr(a string) error {
	if strings.Count(a, "@") != 1 || strings.HasPrefix(a, "@") || strings.HasSuffix(a, "@") ||
		strings.ContainsAny(a, "<> \t\r\n") {
		return fmt.Errorf("%q is not an email address", a)
	}
	return nil
}

// build renders the message with CRLF line ends.
func (m Message) build(account string) []byte {
	date := m.Date
	if date.IsZero() {
		date = time.Now()
	}
	var id [12]byte
	_, _ = rand.Read(id[:])
	_, domain, _ := strings.Cut(account, "@")
	subject := strings.Join(strings.Fields(m.Subject), " ") // no CR/LF: one header line
	if !isASCII([]byte(subject)) {
		subject = mime.QEncoding.Encode("utf-8", subject)
	}
	var b bytes.Buffer
	hdr := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	hdr("From", m.From)
	hdr("To", strings.Join(m.To, ", "))
	hdr("Subject", subject)
	hdr("Date", date.Format(time.RFC1123Z))
	hdr("Message-ID", "<"+hex.EncodeToString(id[:])+"."+"xoauth2-proxy-send@"+domain+">")
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "8bit")
	b.WriteString("\r\n")
	body := strings.ReplaceAll(strings.ReplaceAll(m.Body, "\r\n", "\n"), "\r", "\n")
	for _, l := range strings.Split(strings.TrimSuffix(body, "\n"), "\n") {
		b.WriteString(l + "\r\n")
	}
	return b.Bytes()
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
