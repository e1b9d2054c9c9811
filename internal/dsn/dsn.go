package dsn

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"time"
)

// ErrNotReport is returned for a message that is not a delivery status
// notification: it has no message/delivery-status part.
var ErrNotReport = errors.New("not a delivery status notification")

// Class is what a failed recipient means for the sender's list.
type Class string

const (
	// Hard is a permanent failure of the address: 5.x.x other than
	// policy and the transient 5.2.2/5.3.4 (user unknown 5.1.1, Exchange's
	// 5.1.10, domain not found 5.1.2, disabled 5.2.1, unroutable 5.4.4).
	Hard Class = "hard"
	// Soft is a failure that may pass later: 4.x.x (given up after
	// retries), mailbox full 5.2.2, message too big 5.3.4 / 5.2.3.
	Soft Class = "soft"
	// Policy is a refusal for the message or the sender, not the address:
	// x.7.x (spam, DMARC 5.7.26, blocked 5.7.1), or a diagnostic that
	// speaks of spam, policy, reputation or blocking.
	Policy Class = "policy"
)

// Recipient is one recipient a report says failed (or was delayed).
type Recipient struct {
	Recipient  string    `json:"recipient"`             // Final-Recipient (or Original-Recipient) address
	Action     string    `json:"action"`                // failed, delayed
	Status     string    `json:"status"`                // enhanced status code, e.g. 5.1.1
	Diagnostic string    `json:"diagnostic,omitempty"`  // Diagnostic-Code text, e.g. "smtp; 550 5.1.1 …", unfolded
	RemoteMTA  string    `json:"remote_mta,omitempty"`  // Remote-MTA, e.g. "mx.example.net"
	LastTry    time.Time `json:"last_attempt,omitzero"` // Last-Attempt-Date
	Class      Class     `json:"class"`
}

// Report is one parsed delivery status notification.
type Report struct {
	From         string      `json:"from"`                    // the report's From address
	Subject      string      `json:"subject,omitempty"`       // decoded
	MessageID    string      `json:"message_id,omitempty"`    // the report's own Message-ID
	ReportingMTA string      `json:"reporting_mta,omitempty"` // e.g. "googlemail.com"
	Arrival      time.Time   `json:"arrival,omitzero"`        // Arrival-Date, else the report's Date
	OriginalID   string      `json:"original_message_id,omitempty"`
	OriginalFrom string      `json:"original_from,omitempty"`
	OriginalRef  string      `json:"original_ref,omitempty"` // X-Xoauth2-Proxy-Ref, when the original carried one
	Failed       []Recipient `json:"failed"`                 // Action: failed
	Delayed      []Recipient `json:"delayed,omitempty"`      // Action: delayed (not failures)
}

// RefHeader is a header a sender may put on its messages to find them
// again in a report (e.g. PowerMTA's job id); Parse copies it from the
// attached original into Report.OriginalRef.
const RefHeader = "X-Xoauth2-Proxy-Ref"

// Limits on the MIME tree, so a hostile message costs bounded work.
const (
	maxDepth = 6
	maxParts = 64
)

// Parse reads one whole message. It returns ErrNotReport for a message
// that holds no delivery-status part, and another error for one that
// claims to be a report and cannot be read.
func Parse(raw []byte) (*Report, error) {
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotReport, err)
	}
	rep := &Report{Subject: decodeWord(m.Header.Get("Subject")), MessageID: msgID(m.Header.Get("Message-Id"))}
	if a, err := mail.ParseAddress(m.Header.Get("From")); err == nil {
		rep.From = strings.ToLower(a.Address)
	}
	w := &walker{rep: rep}
	if err := w.walk(m.Header.Get("Content-Type"), m.Header.Get("Content-Transfer-Encoding"), m.Body, 0); err != nil {
		return nil, err
	}
	if !w.found {
		return nil, ErrNotReport
	}
	if rep.Arrival.IsZero() {
		if d, err := m.Header.Date(); err == nil {
			rep.Arrival = d.UTC()
		}
	}
	return rep, nil
}

// walker visits the MIME tree once.
type walker struct {
	rep   *Report
	found bool // a message/delivery-status part was read
	parts int
}

func (w *walker) walk(ctype, cte string, body io.Reader, depth int) error {
	if w.parts++; w.parts > maxParts || depth > maxDepth {
		return nil
	}
	mt, params, err := mime.ParseMediaType(ctype)
	if err != nil {
		mt = "text/plain"
	}
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		if params["boundary"] == "" {
			return nil
		}
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err != nil {
				return nil // end, or a broken tail: keep what was read
			}
			if err := w.walk(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p, depth+1); err != nil {
				return err
			}
		}
	case mt == "message/delivery-status" || mt == "message/global-delivery-status":
		b, err := io.ReadAll(decoded(cte, body))
		if err != nil {
			return fmt.Errorf("read delivery-status: %w", err)
		}
		w.found = true
		w.status(b)
	case mt == "message/rfc822" || mt == "text/rfc822-headers" || mt == "message/global" || mt == "message/global-headers":
		w.original(decoded(cte, body))
	}
	return nil
}

// status reads the delivery-status fields (RFC 3464 §2.2, §2.3).
func (w *walker) status(b []byte) {
	groups := fieldGroups(b)
	if len(groups) == 0 {
		return
	}
	msg := groups[0]
	if w.rep.ReportingMTA == "" {
		w.rep.ReportingMTA = typedValue(msg.get("reporting-mta"))
	}
	if t, err := mail.ParseDate(msg.get("arrival-date")); err == nil && w.rep.Arrival.IsZero() {
		w.rep.Arrival = t.UTC()
	}
	for _, g := range groups[1:] {
		r := Recipient{
			Recipient:  address(typedValue(cmpOr(g.get("final-recipient"), g.get("original-recipient")))),
			Action:     strings.ToLower(strings.TrimSpace(g.get("action"))),
			Status:     statusCode(g.get("status")),
			Diagnostic: g.get("diagnostic-code"),
			RemoteMTA:  typedValue(g.get("remote-mta")),
		}
		if t, err := mail.ParseDate(g.get("last-attempt-date")); err == nil {
			r.LastTry = t.UTC()
		}
		if r.Recipient == "" {
			continue
		}
		r.Class = classify(r.Status, r.Diagnostic)
		switch r.Action {
		case "failed":
			w.rep.Failed = append(w.rep.Failed, r)
		case "delayed":
			w.rep.Delayed = append(w.rep.Delayed, r)
		}
	}
}

// original reads the headers of the message that bounced.
func (w *walker) original(r io.Reader) {
	if w.rep.OriginalID != "" {
		return
	}
	// text/rfc822-headers has no body; add the blank line ReadMessage wants.
	m, err := mail.ReadMessage(io.MultiReader(io.LimitReader(r, 1<<20), strings.NewReader("\r\n\r\n")))
	if err != nil {
		return
	}
	w.rep.OriginalID = msgID(m.Header.Get("Message-Id"))
	w.rep.OriginalRef = strings.TrimSpace(m.Header.Get(RefHeader))
	if a, err := mail.ParseAddress(m.Header.Get("From")); err == nil {
		w.rep.OriginalFrom = strings.ToLower(a.Address)
	}
}

// decoded undoes a part's Content-Transfer-Encoding.
func decoded(cte string, r io.Reader) io.Reader {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		return base64.NewDecoder(base64.StdEncoding, &lineDropper{r: r})
	case "quoted-printable":
		return quotedprintable.NewReader(r)
	}
	return r
}

// lineDropper removes CR and LF, which base64.NewDecoder does skip, and
// blanks, which it does not (a trailing space after a base64 line).
type lineDropper struct{ r io.Reader }

func (l *lineDropper) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	j := 0
	for _, c := range p[:n] {
		if c != ' ' && c != '\t' {
			p[j] = c
			j++
		}
	}
	return j, err
}

// typedValue drops the type of "rfc822; a@b" or "dns; mx.example".
func typedValue(v string) string {
	if _, after, ok := strings.Cut(v, ";"); ok {
		v = after
	}
	return strings.TrimSpace(v)
}

// address lowercases a recipient and strips angle brackets.
func address(v string) string {
	v = strings.Trim(strings.TrimSpace(v), "<>")
	if a, err := mail.ParseAddress(v); err == nil {
		v = a.Address
	}
	return strings.ToLower(v)
}

// statusCode keeps the "5.1.1" of "5.1.1 (user unknown)".
func statusCode(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.IndexAny(v, " \t("); i >= 0 {
		v = v[:i]
	}
	return v
}

// msgID trims a Message-ID of blanks; the angle brackets stay, as the
// sender wrote them.
func msgID(v string) string { return strings.TrimSpace(v) }

func decodeWord(s string) string {
	d, err := new(mime.WordDecoder).DecodeHeader(s)
	if err != nil {
		return s
	}
	return d
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
