//go:build interop

package interop

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The client Postfix stands in for PowerMTA: it takes mail from
// smtp-source (or swaks) on INTEROP_CLIENT_SMTP and relays it to the proxy
// on INTEROP_CLIENT_PROXY_PORT with mandatory STARTTLS and AUTH PLAIN as
// INTEROP_CLIENT_SASL_USER; what it takes on INTEROP_CLIENT_SMTP_PLAIN it
// relays the same way without TLS.
// Its log tells each message's fate, as does the upstream Postfix's.

// mtaAccount is the account the client Postfix authenticates as: its
// password map names INTEROP_CLIENT_SASL_USER with INTEROP_CLIENT_SASL_PASS.
func (p *peers) mtaAccount(t *testing.T) *account {
	t.Helper()
	if p.clientUser == "" || p.clientProxyPort == 0 {
		t.Skip("INTEROP_CLIENT_* not set: use test/interop/run.sh")
	}
	return p.newAccount(t, uniq("mta"), acctOpts{endpoint: p.upStartTLS, email: p.clientUser, password: p.clientPass})
}

var (
	reQueued = regexp.MustCompile(`queued as ([0-9A-Za-z]+)\)`)
	// Long queue ids (enable_long_queue_ids, peers.sh): short ones are
	// reused within a run, and a reused id once made a correct relay look
	// like a crossed reply.
	reQID     = regexp.MustCompile(`postfix/[a-z]+\[\d+\]: ([0-9A-Za-z]{12,}): `)
	reMsgID   = regexp.MustCompile(`: message-id=(<[^>]*>)`)
	reStatus  = regexp.MustCompile(`status=([a-z]+) `)
	reToField = regexp.MustCompile(`: to=<([^>]*)>`)
)

// delivery is one recipient's outcome in a Postfix log.
type delivery struct {
	qid, to, status, line string
}

// postfixLog is the parts of a Postfix log that say what became of mail.
type postfixLog struct {
	msgID      map[string]string // queue id → Message-ID
	reusedQID  map[string]bool   // queue ids seen with two Message-IDs
	deliveries []delivery
}

func parsePostfixLog(text string) postfixLog {
	pl := postfixLog{msgID: map[string]string{}, reusedQID: map[string]bool{}}
	for _, l := range strings.Split(text, "\n") {
		q := reQID.FindStringSubmatch(l)
		if q == nil {
			continue
		}
		if m := reMsgID.FindStringSubmatch(l); m != nil {
			if old, ok := pl.msgID[q[1]]; ok && old != m[1] {
				pl.reusedQID[q[1]] = true
			}
			pl.msgID[q[1]] = m[1]
			continue
		}
		to, st := reToField.FindStringSubmatch(l), reStatus.FindStringSubmatch(l)
		if to != nil && st != nil {
			pl.deliveries = append(pl.deliveries, delivery{qid: q[1], to: to[1], status: st[1], line: l})
		}
	}
	return pl
}

// batchReport is what relayBatch found.
type batchReport struct {
	injected       int
	clientSent     int            // client Postfix: status=sent to the proxy
	clientOther    map[string]int // client Postfix: other final statuses
	deferrals      int            // client Postfix: status=deferred (retried later)
	firstDeferral  string         // the first such log line
	upstreamStored int            // upstream Postfix: delivered to the Maildir
	maildir        int            // files for the batch's recipient
	uniqueIDs      int            // distinct Message-IDs among them
	duplicates     int            // files beyond the first per Message-ID
	missing        int            // client-sent Message-IDs not in the Maildir
	mismatched     int            // client "queued as" whose upstream Message-ID differs
	proxyOK        int            // proxy "message" lines with code=250
	proxyOther     int            // proxy "message" lines with another code
	sessions       int            // proxy "upstream session opened"
	upConnects     int            // upstream Postfix "connect from" lines
	clientAuths    int            // client sessions the proxy authenticated
	tlsSessions    int            // of them, sessions under TLS (proxy "tls" lines)
	trustedTLS     int            // client Postfix (tlsproxy): "Trusted TLS connection established" to the proxy
	tlsReused      int            // client Postfix: "Trusted TLS connection reused" (connection cache)
	otherTLS       []string       // client Postfix: TLS connections it did not trust, or TLS failures
	elapsed        time.Duration
}

// relayBatch injects n messages with smtp-source into the client Postfix
// on via, all to box@dest.test, waits until every one has a final status
// in the client's log and the upstream stored them, and matches the two
// logs and the Maildir message by message.
func (p *peers) relayBatch(t *testing.T, x *proxy, a *account, via clientPath, n int, box string) batchReport {
	t.Helper()
	cl, ul, xl := markLog(p.path("client-postfix.log")), markLog(p.path("upstream-postfix.log")), markLog(x.logPath)
	msgFile := p.path(box + ".msg")
	// No Message-ID: the client Postfix adds a unique one to each message.
	body := fmt.Sprintf("From: <sender@client.test>\nTo: <%s@dest.test>\nSubject: batch %s\nX-Interop-Batch: %s\n\n"+
		"Message of batch %s, relayed by Postfix through xoauth2-proxy.\n.A line with a leading dot.\n", box, box, box, box)
	if err := os.WriteFile(msgFile, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "smtp-source", "-s", "10", "-m", fmt.Sprint(n),
		"-f", "sender@client.test", "-t", box+"@dest.test", "-F", msgFile,
		"-M", "source.interop.test", via.addr).CombinedOutput()
	if err != nil {
		t.Fatalf("smtp-source: %v\n%s", err, out)
	}

	final := func() (sent int, other map[string]int) {
		other = map[string]int{}
		for _, d := range parsePostfixLog(cl.since()).deliveries {
			if d.to != box+"@dest.test" || strings.Contains(d.line, "status=deferred") {
				continue
			}
			if d.status == "sent" {
				sent++
			} else {
				other[d.status]++
			}
		}
		return sent, other
	}
	deadline := time.Minute + time.Duration(n)*20*time.Millisecond
	done := eventually(deadline, func() bool {
		s, o := final()
		return s+len(o) >= n && p.countMessages(box) >= s
	})
	r := batchReport{injected: n, elapsed: time.Since(start)}
	r.clientSent, r.clientOther = final()
	if !done {
		t.Errorf("after %v: client Postfix has %d of %d messages sent, others %v; Maildir %d",
			deadline, r.clientSent, n, r.clientOther, p.countMessages(box))
	}
	// Let the upstream's log catch up with its Maildir.
	eventually(10*time.Second, func() bool {
		return len(linesWith(ul.since(), "to=<"+box+"@dest.test>", "status=sent (delivered to maildir)")) >= r.clientSent
	})

	client, up := parsePostfixLog(cl.since()), parsePostfixLog(ul.since())
	for _, d := range client.deliveries {
		if d.status == "deferred" {
			if r.deferrals == 0 {
				r.firstDeferral = d.line
			}
			r.deferrals++
		}
	}
	clientIDs := map[string]bool{}
	for _, d := range client.deliveries {
		if d.to != box+"@dest.test" || d.status != "sent" {
			continue
		}
		id := client.msgID[d.qid]
		clientIDs[id] = true
		// Fate match: the upstream queue id in the proxy's 250 reply is
		// a message the upstream stored under the same Message-ID.
		upQID := ""
		if m := reQueued.FindStringSubmatch(d.line); m != nil {
			upQID = m[1]
		}
		if upQID == "" || up.msgID[upQID] != id {
			r.mismatched++
			if r.mismatched <= 3 {
				t.Logf("client says %q; upstream has Message-ID %q for it (queue id reused: %v)",
					d.line, up.msgID[upQID], up.reusedQID[upQID])
			}
		}
	}
	for _, d := range up.deliveries {
		if d.to == box+"@dest.test" && strings.Contains(d.line, "delivered to maildir") {
			r.upstreamStored++
		}
	}
	seen := map[string]int{}
	for _, m := range p.messagesTo(box) {
		r.maildir++
		seen[m.messageID]++
	}
	r.uniqueIDs = len(seen)
	for id, c := range seen {
		r.duplicates += c - 1
		delete(clientIDs, id)
	}
	r.missing = len(clientIDs)

	px := xl.settled()
	r.proxyOK = len(messageLines(px, 250))
	r.proxyOther = len(messageLines(px, 0)) - r.proxyOK
	r.sessions = sessionsOpened(px, a.ID)
	auths := withField(linesWith(px, "msg=auth "), "account", a.ID)
	r.clientAuths = len(auths)
	for _, l := range auths {
		if connUsedTLS(px, fieldOf(l, "conn_id")) {
			r.tlsSessions++
		}
	}
	proxyPeer := fmt.Sprintf("127.0.0.1[127.0.0.1]:%d", x.port)
	// With smtp_tls_connection_reuse, tlsproxy does the handshakes (smtp
	// logs each one again) and smtp logs each reuse of a cached one.
	r.trustedTLS = len(linesWith(cl.since(), "postfix/tlsproxy[", "Trusted TLS connection established to "+proxyPeer))
	r.tlsReused = len(linesWith(cl.since(), "Trusted TLS connection reused to "+proxyPeer))
	for _, l := range linesWith(cl.since(), "TLS") {
		if (strings.Contains(l, "TLS connection established") && !strings.Contains(l, "Trusted TLS")) ||
			strings.Contains(l, "TLS is required") || strings.Contains(l, "TLS handshake failed") ||
			strings.Contains(l, "certificate verification failed") {
			r.otherTLS = append(r.otherTLS, l)
		}
	}
	r.upConnects = len(linesWith(ul.since(), "postfix/smtpd[", "connect from", "[127.0.0.1]")) -
		len(linesWith(ul.since(), "postfix/smtpd[", "disconnect from"))
	return r
}

// check fails t unless every message went through exactly once, and over
// TLS exactly when via says so.
func (r batchReport) check(t *testing.T, via clientPath) {
	t.Helper()
	n := r.injected
	switch {
	case via.tls && (r.tlsSessions != r.clientAuths || r.trustedTLS == 0 || r.tlsReused == 0):
		t.Errorf("mandatory STARTTLS: %d of %d client sessions under TLS at the proxy; client Postfix: %d trusted TLS handshakes, %d reuses",
			r.tlsSessions, r.clientAuths, r.trustedTLS, r.tlsReused)
	case !via.tls && (r.tlsSessions != 0 || r.trustedTLS != 0):
		t.Errorf("plain relay: %d client sessions under TLS at the proxy, %d TLS connections in the client Postfix log; want none",
			r.tlsSessions, r.trustedTLS)
	}
	if len(r.otherTLS) != 0 {
		t.Errorf("client Postfix: %d TLS problems; the first: %s", len(r.otherTLS), r.otherTLS[0])
	}
	if r.clientSent != n || len(r.clientOther) != 0 {
		t.Errorf("client Postfix: %d of %d sent, others %v", r.clientSent, n, r.clientOther)
	}
	if r.deferrals != 0 {
		t.Errorf("client Postfix deferred %d deliveries; the first: %s", r.deferrals, r.firstDeferral)
	}
	if r.upstreamStored != n || r.maildir != n || r.uniqueIDs != n || r.duplicates != 0 || r.missing != 0 {
		t.Errorf("upstream: %d stored, Maildir %d files, %d unique Message-IDs, %d duplicates, %d missing; want %d once each",
			r.upstreamStored, r.maildir, r.uniqueIDs, r.duplicates, r.missing, n)
	}
	if r.mismatched != 0 {
		t.Errorf("%d client deliveries do not match the upstream message named in their 250 reply", r.mismatched)
	}
	if r.proxyOK != n || r.proxyOther != 0 {
		t.Errorf("proxy: %d messages with 250, %d with another code; want %d and 0", r.proxyOK, r.proxyOther, n)
	}
}

func (r batchReport) String() string {
	return fmt.Sprintf("%d injected; client Postfix %d status=sent, %d deferred; upstream stored %d, Maildir %d files, "+
		"%d unique Message-IDs, %d duplicates, %d missing, %d fate mismatches; proxy %d messages 250, %d other, "+
		"%d upstream logins (upstream Postfix saw %d connections), %d client sessions (%d under TLS; client Postfix: %d trusted TLS handshakes, %d reuses); %.1fs, %.0f msg/s",
		r.injected, r.clientSent, r.deferrals, r.upstreamStored, r.maildir, r.uniqueIDs, r.duplicates, r.missing, r.mismatched,
		r.proxyOK, r.proxyOther, r.sessions, r.upConnects, r.clientAuths, r.tlsSessions, r.trustedTLS, r.tlsReused, r.elapsed.Seconds(),
		float64(r.clientSent)/r.elapsed.Seconds())
}
