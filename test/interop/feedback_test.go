//go:build interop

package interop

// Scenario (issue 15): the bounce collector against a real IMAP server.
// Dovecot serves the account's mailbox over implicit TLS with the same
// oauth2 passdb (introspection at the fosite issuer) as its SMTP side; the
// reports are the project's own samples (internal/dsn/testdata), written
// into the Maildir. The proxy reads each report once across a restart, the
// webhook receives each bounce once although it was down during the
// first run, and the CSV parses.

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hookReceiver counts each bounce id it accepted; while down it answers 503.
type hookReceiver struct {
	up      atomic.Bool
	secret  string
	mu      sync.Mutex
	seen    map[string]int
	badSig  int
	refused int
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.up.Load() {
		h.refused++
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	m := hmac.New(sha256.New, []byte(h.secret))
	m.Write(body)
	if r.Header.Get("X-Xoauth2-Proxy-Signature") != "sha256="+hex.EncodeToString(m.Sum(nil)) {
		h.badSig++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var p struct {
		Bounces []struct{ ID string } `json:"bounces"`
	}
	json.Unmarshal(body, &p)
	for _, b := range p.Bounces {
		h.seen[b.ID]++
	}
}

func (h *hookReceiver) counts() (ids, dups, badSig, refused int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, n := range h.seen {
		if n > 1 {
			dups++
		}
	}
	return len(h.seen), dups, h.badSig, h.refused
}

// maildirDeliver writes raw into the Maildir's new/ as Dovecot's user.
func maildirDeliver(t *testing.T, home, email string, n int, raw []byte) {
	t.Helper()
	md := filepath.Join(home, email, "Maildir")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(md, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	name := fmt.Sprintf("%d.M%dP%d.interop", time.Now().Unix(), n, os.Getpid())
	tmp := filepath.Join(md, "tmp", name)
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(md, "new", name)); err != nil {
		t.Fatal(err)
	}
	// The userdb's uid/gid (peers.sh).
	filepath.WalkDir(filepath.Join(home, email), func(p string, _ fs.DirEntry, err error) error {
		if err == nil {
			os.Lchown(p, 65534, 65534)
		}
		return nil
	})
}

func countLines(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
	}
	return n
}

func TestFeedback_dovecotIMAPEachReportOnce(t *testing.T) {
	p := getPeers(t)
	p.dumpOnFailure(t)
	imaps, home := os.Getenv("INTEROP_IMAPS"), os.Getenv("INTEROP_DOVECOT_HOME")
	if imaps == "" || home == "" {
		t.Fatal("INTEROP_IMAPS and INTEROP_DOVECOT_HOME are not set: run.sh starts Dovecot's IMAP service")
	}
	a := p.newAccount(t, uniq("fb"), acctOpts{endpoint: p.upStartTLS})
	samples := []string{"rfc3464.eml", "gmail.eml", "microsoft.eml", "multi.eml", "delayed.eml", "autoreply.eml", "ordinary.eml"}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("..", "..", "internal", "dsn", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for i, s := range samples {
		maildirDeliver(t, home, a.Email, i, read(s))
	}

	hook := &hookReceiver{secret: uniq("hook-"), seen: map[string]int{}}
	hs := httptest.NewServer(hook)
	defer hs.Close()
	out := t.TempDir()
	jsonl, csvPath := filepath.Join(out, "bounces.jsonl"), filepath.Join(out, "bounces.csv")
	cfg := p.proxyConfig(nil)
	cfg["feedback"] = map[string]any{
		"accounts": []string{a.ID}, "imap_servers": map[string]any{"gmail": imaps},
		"interval_seconds": 10, "move_to": "Processed",
		"jsonl_file": jsonl, "csv_file": csvPath, "webhook_url": hs.URL, "webhook_secret": hook.secret,
	}
	x := p.startProxy(t, "feedback", cfg, []*account{a}, 0)

	// 7 failed recipients in 4 reports; the delayed notice, the auto-reply
	// and the ordinary message give none.
	if !eventually(60*time.Second, func() bool { return countLines(jsonl) >= 7 }) {
		t.Fatalf("%d bounces in %s after 60 s, want 7", countLines(jsonl), jsonl)
	}
	if !eventually(30*time.Second, func() bool { _, _, _, refused := hook.counts(); return refused > 0 }) {
		t.Fatal("the webhook was never tried while the receiver was down")
	}
	// The webhook output comes after the JSON lines one: wait for it.
	queued := func() int {
		ents, _ := os.ReadDir(filepath.Join(x.stateDir, "feedback-webhook"))
		n := 0
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".json") && !strings.HasPrefix(e.Name(), ".") {
				n++
			}
		}
		return n
	}
	if !eventually(30*time.Second, func() bool { return queued() == 4 }) {
		t.Errorf("%d queued deliveries while the receiver is down, want 4 (one per report with bounces)", queued())
	}

	// Restart with the receiver up: the queue drains, nothing is read twice.
	x.stop()
	hook.up.Store(true)
	reads := strings.Count(x.log(), "feedback: mailbox read")
	x.start()
	if !eventually(60*time.Second, func() bool { ids, _, _, _ := hook.counts(); return ids == 7 }) {
		ids, _, _, _ := hook.counts()
		t.Fatalf("the webhook received %d of 7 bounces after the restart", ids)
	}
	if !eventually(60*time.Second, func() bool { return strings.Count(x.log(), "feedback: mailbox read") > reads }) {
		t.Fatal("the restarted proxy did not read the mailbox within 60 s")
	}
	if n := countLines(jsonl); n != 7 {
		t.Errorf("after the restart: %d bounces, want still 7", n)
	}

	// One more report: only it is read.
	maildirDeliver(t, home, a.Email, 99, read("microsoft.eml"))
	if !eventually(60*time.Second, func() bool { return countLines(jsonl) >= 8 }) {
		t.Fatalf("the new report was not read within 60 s (%d bounces)", countLines(jsonl))
	}
	if !eventually(60*time.Second, func() bool { ids, _, _, _ := hook.counts(); return ids == 8 }) {
		t.Fatal("the webhook did not receive the new bounce")
	}
	x.stop()
	ids, dups, badSig, _ := hook.counts()
	if ids != 8 || dups != 0 || badSig != 0 || countLines(jsonl) != 8 {
		t.Errorf("webhook: %d bounces, %d received twice, %d bad signatures; jsonl %d lines", ids, dups, badSig, countLines(jsonl))
	}

	// The processed reports were moved: the 4 with bounces, the delayed
	// notice and the later one.
	processed := 0
	for _, sub := range []string{"new", "cur"} { // BODY.PEEK left them unseen: Dovecot keeps them in new/
		ents, _ := os.ReadDir(filepath.Join(home, a.Email, "Maildir", ".Processed", sub))
		processed += len(ents)
	}
	if processed != 6 {
		t.Errorf("%d messages in Processed, want 6", processed)
	}
	f, err := os.Open(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("the CSV does not parse: %v", err)
	}
	if len(recs) != 9 || recs[0][0] != "type" || recs[1][0] != "b" || recs[1][3] != a.Email {
		t.Errorf("CSV: %d records, first %v / %v", len(recs), recs[0], recs[1])
	}
	t.Logf("SCENARIO feedback: 8 reports' bounces read once across a restart from Dovecot IMAP; webhook got each once after being down")
}
