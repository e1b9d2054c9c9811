package dsn_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/dsn"
)

func read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestParse reads each sample in testdata: the failed recipients with
// status, class and diagnostic, the reporting MTA, arrival and the
// original Message-ID; the messages that are not bounces are refused.
func TestParse(t *testing.T) {
	t.Parallel()
	type rcpt struct {
		addr, status string
		class        dsn.Class
		diagHas      string
	}
	tests := []struct {
		file      string
		notReport bool
		from      string
		mta       string
		arrival   time.Time
		origID    string
		origRef   string
		failed    []rcpt
		delayed   int
	}{
		{file: "rfc3464.eml", from: "mailer-daemon@mx.example.net", mta: "mx.example.net",
			arrival: time.Date(2026, 12, 1, 10, 15, 1, 0, time.UTC), origID: "<job42.1@sender.example.com>", origRef: "job42-batch7",
			failed: []rcpt{{"nobody@example.net", "5.1.1", dsn.Hard, "User unknown in local recipient table"}}},
		{file: "gmail.eml", from: "mailer-daemon@googlemail.com", mta: "googlemail.com",
			arrival: time.Date(2026, 12, 1, 10, 3, 4, 0, time.UTC), origID: "<offer-2026-12.77@sender.example.com>",
			failed: []rcpt{{"ghost.user@example.org", "5.1.1", dsn.Hard, "for typos or 550-5.1.1 unnecessary spaces"}}},
		{file: "microsoft.eml", from: "postmaster@outlook.com", mta: "SN6PR05MB1234.namprd05.prod.outlook.com",
			arrival: time.Date(2026, 12, 1, 11, 20, 29, 0, time.UTC), origID: "<promo.9911@contoso-mail.example>",
			failed: []rcpt{{"missing@fabrikam.example", "5.1.10", dsn.Hard, "RESOLVER.ADR.RecipientNotFound"}}},
		{file: "multi.eml", from: "mailer-daemon@googlemail.com", mta: "googlemail.com",
			arrival: time.Date(2026, 12, 2, 7, 59, 50, 0, time.UTC), origID: "<weekly.5@sender.example.com>",
			failed: []rcpt{
				{"a@example.net", "5.1.1", dsn.Hard, "no such user"},
				{"b@example.net", "4.4.7", dsn.Soft, "expired"},
				{"c@example.net", "5.5.0", dsn.Policy, "spam"},
				{"d@example.net", "5.2.2", dsn.Soft, "mailbox full"},
			}},
		{file: "delayed.eml", from: "mailer-daemon@googlemail.com", mta: "googlemail.com",
			arrival: time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC), origID: "<slow.1@sender.example.com>", delayed: 1},
		{file: "autoreply.eml", notReport: true},
		{file: "ordinary.eml", notReport: true},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			rep, err := dsn.Parse(read(t, tc.file))
			if tc.notReport {
				if !errors.Is(err, dsn.ErrNotReport) {
					t.Fatalf("Parse = %+v, %v; want ErrNotReport", rep, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rep.From != tc.from || rep.ReportingMTA != tc.mta || !rep.Arrival.Equal(tc.arrival) || rep.OriginalID != tc.origID || rep.OriginalRef != tc.origRef {
				t.Errorf("report = from %q mta %q arrival %v orig %q ref %q; want %q %q %v %q %q",
					rep.From, rep.ReportingMTA, rep.Arrival, rep.OriginalID, rep.OriginalRef, tc.from, tc.mta, tc.arrival, tc.origID, tc.origRef)
			}
			if len(rep.Failed) != len(tc.failed) {
				t.Fatalf("failed = %+v, want %d", rep.Failed, len(tc.failed))
			}
			for i, w := range tc.failed {
				g := rep.Failed[i]
				if g.Recipient != w.addr || g.Status != w.status || g.Class != w.class || !strings.Contains(g.Diagnostic, w.diagHas) || g.Action != "failed" {
					t.Errorf("failed[%d] = %+v, want %+v", i, g, w)
				}
			}
			if len(rep.Delayed) != tc.delayed {
				t.Errorf("delayed = %+v, want %d", rep.Delayed, tc.delayed)
			}
		})
	}
}

// TestClassify: the class of a failed recipient from its status and
// diagnostic.
func TestClassify(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status, diag string
		want         dsn.Class
	}{
		{"5.1.1", "smtp; 550 5.1.1 user unknown", dsn.Hard},
		{"5.1.10", "smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound", dsn.Hard},
		{"5.2.1", "smtp; 550 5.2.1 account disabled", dsn.Hard},
		{"5.4.4", "", dsn.Hard},
		{"5.2.2", "smtp; 552 5.2.2 over quota", dsn.Soft},
		{"5.3.4", "smtp; 552 5.3.4 message too big", dsn.Soft},
		{"4.4.7", "", dsn.Soft},
		{"5.7.1", "smtp; 550 5.7.1 Message rejected", dsn.Policy},
		{"5.7.26", "smtp; 550 5.7.26 unauthenticated email from example.com", dsn.Policy},
		{"4.7.0", "smtp; 421 4.7.0 try again later", dsn.Policy},
		{"5.0.0", "smtp; 554 5.0.0 blocked using a blocklist", dsn.Policy},
		{"", "smtp; 550 mailbox unavailable", dsn.Hard},
		{"", "", dsn.Soft},
	} {
		raw := "From: mailer-daemon@x\r\nContent-Type: multipart/report; boundary=b\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n" +
			"Reporting-MTA: dns; x\r\n\r\nFinal-Recipient: rfc822; r@x\r\nAction: failed\r\nStatus: " + tc.status + "\r\nDiagnostic-Code: " + tc.diag + "\r\n--b--\r\n"
		rep, err := dsn.Parse([]byte(raw))
		if err != nil || len(rep.Failed) != 1 {
			t.Fatalf("%s %q: %+v %v", tc.status, tc.diag, rep, err)
		}
		if got := rep.Failed[0].Class; got != tc.want {
			t.Errorf("%s %q: class %s, want %s", tc.status, tc.diag, got, tc.want)
		}
	}
}

// BenchmarkParse: one Gmail-shaped report (go test -bench Parse ./internal/dsn).
func BenchmarkParse(b *testing.B) {
	raw := read(b, "gmail.eml")
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := dsn.Parse(raw); err != nil {
			b.Fatal(err)
		}
	}
}
