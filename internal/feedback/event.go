package feedback

import (
	"fmt"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/dsn"
)

// Bounce is one bounced recipient, as every output writes it.
type Bounce struct {
	ID           string    `json:"id"` // account/uidvalidity/uid/n: the same on a re-read
	Account      string    `json:"account"`
	Email        string    `json:"email"` // the account's mailbox: the envelope sender
	VMTA         string    `json:"vmta,omitempty"`
	CollectedAt  time.Time `json:"collected_at"`
	Arrival      time.Time `json:"arrival,omitzero"` // when the reporting MTA got the message
	Recipient    string    `json:"recipient"`
	Status       string    `json:"status"`
	Class        dsn.Class `json:"class"`
	Diagnostic   string    `json:"diagnostic,omitempty"`
	ReportingMTA string    `json:"reporting_mta,omitempty"`
	RemoteMTA    string    `json:"remote_mta,omitempty"`
	MessageID    string    `json:"original_message_id,omitempty"`
	Ref          string    `json:"original_ref,omitempty"`
	ReportFrom   string    `json:"report_from,omitempty"`
}

// bounces turns a report into its Bounces.
func bounces(m Mailbox, validity, uid uint32, rep *dsn.Report, now time.Time) []Bounce {
	out := make([]Bounce, 0, len(rep.Failed))
	for i, r := range rep.Failed {
		out = append(out, Bounce{
			ID:      fmt.Sprintf("%s/%d/%d/%d", m.ID, validity, uid, i),
			Account: m.ID, Email: m.Email, VMTA: m.VMTA, CollectedAt: now.UTC(), Arrival: rep.Arrival,
			Recipient: r.Recipient, Status: r.Status, Class: r.Class, Diagnostic: r.Diagnostic,
			ReportingMTA: rep.ReportingMTA, RemoteMTA: r.RemoteMTA, MessageID: rep.OriginalID,
			Ref: rep.OriginalRef, ReportFrom: rep.From,
		})
	}
	return out
}
