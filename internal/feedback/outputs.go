package feedback

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/dsn"
)

// Output receives the bounces of one report. Write returns once they are
// durable (fsynced, or queued on disk); an error keeps the report unread,
// so it is read again at the next interval.
type Output interface {
	Write(ctx context.Context, bs []Bounce) error
}

// appendFile appends lines to a file (0600, created when missing) and
// fsyncs it; one writer at a time.
type appendFile struct {
	mu   sync.Mutex
	path string
}

func (a *appendFile) append(b []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// JSONL writes one JSON object per bounced recipient and line.
type JSONL struct{ f appendFile }

// NewJSONL appends to path.
func NewJSONL(path string) *JSONL { return &JSONL{f: appendFile{path: path}} }

func (j *JSONL) Write(_ context.Context, bs []Bounce) error {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	for _, x := range bs {
		if err := enc.Encode(x); err != nil {
			return err
		}
	}
	if err := j.f.append([]byte(b.String())); err != nil {
		return fmt.Errorf("jsonl %s: %w", j.f.path, err)
	}
	return nil
}

// CSVHeader is the header line of the accounting CSV: the fields of
// PowerMTA's default accounting file that a "b" (bounce) record fills,
// in its order, then header_Message-Id (PowerMTA's header_<name>
// convention for a logged header) and our id.
var CSVHeader = []string{"type", "timeLogged", "timeQueued", "orig", "rcpt", "orcpt", "dsnAction", "dsnStatus",
	"dsnDiag", "dsnMta", "bounceCat", "srcType", "srcMta", "dlvType", "dlvSourceIp", "dlvDestinationIp",
	"dlvEsmtpAvailable", "dlvSize", "vmta", "jobId", "envId", "queue", "vmtaPool", "header_Message-Id", "feedbackId"}

// PowerMTA writes times as "2006-01-02 15:04:05-0700".
const pmtaTime = "2006-01-02 15:04:05-0700"

// CSV writes PowerMTA-shaped accounting records of type "b", with a
// header line when it creates the file.
type CSV struct{ f appendFile }

// NewCSV appends to path.
func NewCSV(path string) *CSV { return &CSV{f: appendFile{path: path}} }

func (c *CSV) Write(_ context.Context, bs []Bounce) error {
	var b strings.Builder
	w := csv.NewWriter(&b)
	if fi, err := os.Stat(c.f.path); err != nil || fi.Size() == 0 {
		w.Write(CSVHeader)
	}
	for _, x := range bs {
		queued := ""
		if !x.Arrival.IsZero() {
			queued = x.Arrival.Format(pmtaTime)
		}
		w.Write([]string{"b", x.CollectedAt.Format(pmtaTime), queued, x.Email, x.Recipient, "", "failed", x.Status,
			x.Diagnostic, x.RemoteMTA, BounceCategory(x.Status, x.Class, x.Diagnostic), "smtp", x.ReportingMTA, "", "", "",
			"", "", x.VMTA, x.Ref, "", domainOf(x.Recipient), "", x.MessageID, x.ID})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	if err := c.f.append([]byte(b.String())); err != nil {
		return fmt.Errorf("csv %s: %w", c.f.path, err)
	}
	return nil
}

// BounceCategory is PowerMTA's bounceCat for a bounce: bad-mailbox,
// bad-domain, inactive-mailbox, quota-issues, message-expired,
// spam-related, policy-related, or other.
func BounceCategory(status string, class dsn.Class, diag string) string {
	d := strings.ToLower(diag)
	switch {
	case class == dsn.Policy && strings.Contains(d, "spam"):
		return "spam-related"
	case class == dsn.Policy:
		return "policy-related"
	case status == "5.1.1" || status == "5.1.10" || status == "5.1.0" || status == "5.1.6":
		return "bad-mailbox"
	case status == "5.1.2" || status == "5.4.4" || status == "5.4.1":
		return "bad-domain"
	case status == "5.2.1":
		return "inactive-mailbox"
	case status == "5.2.2" || status == "4.2.2":
		return "quota-issues"
	case status == "4.4.7" || status == "5.4.7":
		return "message-expired"
	}
	return "other"
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return ""
}
