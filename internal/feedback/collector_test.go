package feedback_test

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeimap"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/feedback"
)

const box = "sender@example.com"

// samples are the dsn package's test messages: five reports (seven
// failed recipients, one delayed notice) and two messages that are not.
var samples = []string{"rfc3464.eml", "gmail.eml", "microsoft.eml", "multi.eml", "delayed.eml", "autoreply.eml", "ordinary.eml"}

func sample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "dsn", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func startIMAP(t *testing.T) *fakeimap.Server {
	t.Helper()
	srv, err := fakeimap.Start(fakeimap.Options{Check: func(u, tok string) bool { return u == box && tok == "tok" }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

func mailbox(srv *fakeimap.Server) feedback.Mailbox {
	return feedback.Mailbox{ID: "acct", Email: box, VMTA: "vmta-1", Addr: srv.Addr(),
		Token: func(context.Context) (string, error) { return "tok", nil }}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// lines reads a JSON lines file.
func lines(t *testing.T, path string) []feedback.Bounce {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []feedback.Bounce
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var b feedback.Bounce
		if err := json.Unmarshal(sc.Bytes(), &b); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, b)
	}
	return out
}

// TestCollector_eachReportOnceAcrossRestart: the reports in a mailbox
// become one JSON line and one CSV record per failed recipient; the
// other messages none; a restarted collector (same state file) reads
// nothing again, and then only what arrived since; processed reports
// are moved to the operator's folder.
func TestCollector_eachReportOnceAcrossRestart(t *testing.T) {
	t.Parallel()
	srv := startIMAP(t)
	for _, s := range samples {
		srv.Deliver(box, sample(t, s))
	}
	dir := t.TempDir()
	jl, cs := filepath.Join(dir, "b.jsonl"), filepath.Join(dir, "b.csv")
	newCollector := func() *feedback.Collector {
		c, err := feedback.New(feedback.Options{
			Mailboxes: func() []feedback.Mailbox { return nil }, StatePath: filepath.Join(dir, "state.json"),
			MoveTo: "Bounces", Outputs: []feedback.Output{feedback.NewJSONL(jl), feedback.NewCSV(cs)},
		})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := newCollector()
	if err := c.ReadOnce(ctx(t), mailbox(srv)); err != nil {
		t.Fatal(err)
	}
	got := lines(t, jl)
	want := map[string]string{"nobody@example.net": "hard", "ghost.user@example.org": "hard", "missing@fabrikam.example": "hard",
		"a@example.net": "hard", "b@example.net": "soft", "c@example.net": "policy", "d@example.net": "soft"}
	if len(got) != len(want) {
		t.Fatalf("%d bounces, want %d: %+v", len(got), len(want), got)
	}
	for _, b := range got {
		if want[b.Recipient] != string(b.Class) || b.Account != "acct" || b.Email != box || b.MessageID == "" || b.ID == "" {
			t.Errorf("bounce %+v", b)
		}
	}
	if st, ok := c.Status("acct"); !ok || !st.Readable || st.Reports != 5 || st.Bounced != 7 {
		t.Errorf("status %+v", st)
	}
	if n := srv.Fetches(box); n != len(samples) {
		t.Errorf("%d fetches, want %d", n, len(samples))
	}
	if srv.Count(box, "Bounces") != 5 || srv.Count(box, "INBOX") != 2 {
		t.Errorf("Bounces %d (want 5), INBOX %d (want 2: the auto-reply and the ordinary message)", srv.Count(box, "Bounces"), srv.Count(box, "INBOX"))
	}

	// A restart: nothing is read twice.
	c = newCollector()
	if err := c.ReadOnce(ctx(t), mailbox(srv)); err != nil {
		t.Fatal(err)
	}
	if n := len(lines(t, jl)); n != 7 || srv.Fetches(box) != len(samples) {
		t.Fatalf("after a restart: %d bounces, %d fetches; want 7 and %d", n, srv.Fetches(box), len(samples))
	}
	srv.Deliver(box, sample(t, "gmail.eml"))
	if err := c.ReadOnce(ctx(t), mailbox(srv)); err != nil {
		t.Fatal(err)
	}
	if n := len(lines(t, jl)); n != 8 {
		t.Errorf("after one more report: %d bounces, want 8", n)
	}

	f, err := os.Open(cs)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 9 || strings.Join(recs[0], ",") != strings.Join(feedback.CSVHeader, ",") {
		t.Fatalf("csv: %d records, header %v", len(recs), recs[0])
	}
	for _, r := range recs[1:] {
		if r[0] != "b" || r[3] != box || r[4] == "" || r[7] == "" || r[10] == "" {
			t.Errorf("csv record %v", r)
		}
	}
}

// TestCollector_unreadableMailbox: a mailbox whose login is refused (IMAP
// off, scope missing) shows the reason in the account's status; the next
// mailbox is read as usual.
func TestCollector_unreadableMailbox(t *testing.T) {
	t.Parallel()
	srv := startIMAP(t)
	srv.Deliver(box, sample(t, "gmail.eml"))
	dir := t.TempDir()
	c, err := feedback.New(feedback.Options{Mailboxes: func() []feedback.Mailbox { return nil },
		StatePath: filepath.Join(dir, "state.json"), Outputs: []feedback.Output{feedback.NewJSONL(filepath.Join(dir, "b.jsonl"))}})
	if err != nil {
		t.Fatal(err)
	}
	bad := mailbox(srv)
	bad.ID = "bad"
	bad.Token = func(context.Context) (string, error) { return "no-imap-scope", nil }
	if err := c.ReadOnce(ctx(t), bad); err == nil {
		t.Fatal("a refused login read the mailbox")
	}
	st, _ := c.Status("bad")
	if st.Readable || !strings.Contains(st.LastError, "IMAP.AccessAsUser.All") {
		t.Errorf("status %+v", st)
	}
	if err := c.ReadOnce(ctx(t), mailbox(srv)); err != nil {
		t.Fatal(err)
	}
	if n := len(lines(t, filepath.Join(dir, "b.jsonl"))); n != 1 {
		t.Errorf("%d bounces from the readable mailbox, want 1", n)
	}
}

// TestCollector_runStopsAndReads: Run reads a due mailbox and returns
// when its context ends.
func TestCollector_runStopsAndReads(t *testing.T) {
	t.Parallel()
	srv := startIMAP(t)
	srv.Deliver(box, sample(t, "rfc3464.eml"))
	c, err := feedback.New(feedback.Options{Mailboxes: func() []feedback.Mailbox { return []feedback.Mailbox{mailbox(srv)} },
		StatePath: filepath.Join(t.TempDir(), "state.json"), Interval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rc, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(rc); close(done) }()
	deadline := time.Now().Add(time.Minute)
	for srv.Fetches(box) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if st, _ := c.Status("acct"); st.Reports != 1 {
		t.Errorf("status %+v, want one report read", st)
	}
}

// TestCollector_shutdownFinishesTheMessageInHand: a shutdown during a
// read finishes the report being fetched (written, progress saved,
// moved) and reads no further; the next read takes the rest, each once.
func TestCollector_shutdownFinishesTheMessageInHand(t *testing.T) {
	t.Parallel()
	rc, shutdown := context.WithCancel(context.Background())
	defer shutdown()
	srv, err := fakeimap.Start(fakeimap.Options{
		Check:   func(u, tok string) bool { return u == box && tok == "tok" },
		OnFetch: func(string, uint32) { shutdown() }, // shut down while the first report is on its way
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, s := range []string{"rfc3464.eml", "gmail.eml", "microsoft.eml"} {
		srv.Deliver(box, sample(t, s))
	}
	dir := t.TempDir()
	jl := filepath.Join(dir, "b.jsonl")
	c, err := feedback.New(feedback.Options{Mailboxes: func() []feedback.Mailbox { return nil },
		StatePath: filepath.Join(dir, "state.json"), MoveTo: "Bounces", Outputs: []feedback.Output{feedback.NewJSONL(jl)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ReadOnce(rc, mailbox(srv)); err != nil {
		t.Fatalf("a read stopped by shutdown: %v", err)
	}
	if n, moved := len(lines(t, jl)), srv.Count(box, "Bounces"); n != 1 || moved != 1 || srv.Fetches(box) != 1 {
		t.Fatalf("after the shutdown: %d bounces, %d moved, %d fetches; want 1, 1, 1", n, moved, srv.Fetches(box))
	}
	if err := c.ReadOnce(ctx(t), mailbox(srv)); err != nil {
		t.Fatal(err)
	}
	if n, moved := len(lines(t, jl)), srv.Count(box, "Bounces"); n != 3 || moved != 3 || srv.Fetches(box) != 3 {
		t.Errorf("after the next read: %d bounces, %d moved, %d fetches; want 3, 3, 3", n, moved, srv.Fetches(box))
	}
}
