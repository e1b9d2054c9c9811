package service_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/saslmech"
)

// Timeouts of the fault-injection environment: short, so that every
// stall ends within seconds.
const (
	faultSMTPTimeout = 2 * time.Second // global.timeouts.smtp_timeout: one upstream command
	faultDataTimeout = 5 * time.Second // global.timeouts.client_data_timeout: a whole DATA
	// faultSlack is added to every time bound: the suite runs under -race
	// on a shared 2-core machine, where a healthy step can take a second.
	faultSlack = 3 * time.Second
	// faultParallel cases run at once.
	faultParallel = 8
)

// faultCase is one upstream failure: where it strikes, and what the client
// must see.
type faultCase struct {
	name string
	// fault strikes every session of the account's own provider.
	fault fakeprovider.Fault
	// endpoint, when set, replaces the account's oauth_endpoint (DNS,
	// refused and black-holed connects).
	endpoint string
	// untrusted gives the provider a certificate from an unknown CA.
	untrusted bool
	// from and rcpt choose transaction faults by local part; "" is an
	// ordinary address.
	from, rcpt string
	bodyBytes  int // 0: a few lines
	// want are reply prefixes for MAIL, RCPT, DATA and the final reply
	// ("" when DATA got no 354).
	want [4]string
	// stored is how many copies the provider keeps: 0 or 1.
	stored int
	// ambiguous: the dot went out and no reply came, counted as such;
	// "maybe" cases are left out of the count check.
	ambiguous, maybeAmbiguous bool
	// healthy: the provider is fine apart from this transaction, so the
	// next message on the account must get through on a fresh session.
	healthy bool
	// within bounds the whole transaction.
	within time.Duration
}

func faultCases(refused string) []faultCase {
	const (
		lost   = "451 4.4.2"
		noSend = "503 5.5.1"
		open   = "451 4.4.1" // cannot connect / no answer
	)
	fp := fakeprovider.Fault{}
	at := func(st fakeprovider.Stage, a fakeprovider.Action) fakeprovider.Fault {
		return fakeprovider.Fault{Stage: st, Action: a}
	}
	say := func(st fakeprovider.Stage, r reply.Reply) fakeprovider.Fault {
		return fakeprovider.Fault{Stage: st, Action: fakeprovider.ActReply, Reply: r}
	}
	// A fault answered at once, one that waits for a command timeout (a
	// stall can cost a timeout at connect and one per command), one that
	// waits for the DATA timeout.
	quick, slow, data := faultSlack, 3*faultSMTPTimeout+faultSlack, faultDataTimeout+faultSlack
	sess := func(name string, f fakeprovider.Fault, mail string) faultCase {
		return faultCase{name: name, fault: f, want: [4]string{mail, noSend, noSend, ""}, within: slow}
	}
	txn := func(name, from, rcpt string, want [4]string, stored int, within time.Duration) faultCase {
		return faultCase{name: name, fault: fp, from: from, rcpt: rcpt, want: want, stored: stored, healthy: true, within: within}
	}
	cases := []faultCase{
		{name: "DNS name not found", endpoint: "nxdomain.invalid:587", want: [4]string{open, noSend, noSend, ""}, within: quick},
		{name: "connect refused", endpoint: refused, want: [4]string{open, noSend, noSend, ""}, within: quick},
		{name: "connect black-holed", endpoint: "blackhole.invalid:587", want: [4]string{open, noSend, noSend, ""}, within: slow},
		sess("greeting: connection closed", at(fakeprovider.StageGreeting, fakeprovider.ActDrop), open),
		sess("greeting: connection reset", at(fakeprovider.StageGreeting, fakeprovider.ActReset), open),
		sess("greeting: stall", at(fakeprovider.StageGreeting, fakeprovider.ActStall), open),
		sess("greeting: one byte per second", at(fakeprovider.StageGreeting, fakeprovider.ActTrickle), open),
		sess("greeting: garbage", at(fakeprovider.StageGreeting, fakeprovider.ActGarbage), open),
		sess("greeting: 554", say(fakeprovider.StageGreeting, reply.New(554, "5.3.2", "no service")), "451 4.4.0"),
		sess("EHLO: 421", say(fakeprovider.StageEHLO, reply.New(421, "4.7.0", "go away")), "451 4.7.0"),
		sess("EHLO: stall", at(fakeprovider.StageEHLO, fakeprovider.ActStall), open),
		sess("STARTTLS: 454", say(fakeprovider.StageSTARTTLS, reply.New(454, "", "TLS not available due to temporary reason")), "451 4.4.0"),
		sess("TLS handshake: garbage", at(fakeprovider.StageTLS, fakeprovider.ActGarbage), open),
		sess("TLS handshake: stall", at(fakeprovider.StageTLS, fakeprovider.ActStall), open),
		sess("TLS handshake: reset", at(fakeprovider.StageTLS, fakeprovider.ActReset), open),
		{name: "TLS handshake: untrusted certificate", untrusted: true, want: [4]string{open, noSend, noSend, ""}, within: quick},
		sess("AUTH: 535", say(fakeprovider.StageAuth, reply.New(535, "5.7.8", "Username and Password not accepted")), "454 4.7.0"),
		sess("AUTH: 454 too many logins", say(fakeprovider.StageAuth, reply.New(454, "4.7.0", "Too many login attempts")), "451 4.7.0"),
		sess("AUTH: connection closed", at(fakeprovider.StageAuth, fakeprovider.ActDrop), open),
		sess("AUTH: stall", at(fakeprovider.StageAuth, fakeprovider.ActStall), open),
		txn("MAIL: 550", "failmail-550@example.com", "", [4]string{"550 5.", noSend, noSend, ""}, 0, quick),
		txn("MAIL: 451", "failmail-451@example.com", "", [4]string{"451 4.", noSend, noSend, ""}, 0, quick),
		txn("MAIL: connection closed", "drop-at-mail@example.com", "", [4]string{lost, lost, lost, ""}, 0, quick),
		txn("MAIL: stall", "stall-at-mail@example.com", "", [4]string{lost, lost, lost, ""}, 0, slow),
		txn("RCPT: 550", "", "reject-550@example.net", [4]string{"250", "550 5.1.1", "554 5.5.1", ""}, 0, quick),
		txn("RCPT: connection closed", "", "drop-at-rcpt@example.net", [4]string{"250", lost, lost, ""}, 0, quick),
		txn("RCPT: stall", "", "stall-at-rcpt@example.net", [4]string{"250", lost, lost, ""}, 0, slow),
		txn("RCPT: one byte per second", "", "trickle@example.net", [4]string{lost, lost, lost, ""}, 0, slow),
		txn("DATA: 554", "", "faildatacmd-554@example.net", [4]string{"250", "250", "554 5.", ""}, 0, quick),
		txn("DATA: connection closed", "", "drop-at-data@example.net", [4]string{"250", "250", lost, ""}, 0, quick),
		txn("DATA: stall", "", "stall-at-data@example.net", [4]string{"250", "250", lost, ""}, 0, slow),
		txn("end of data: 451", "", "faildata-451@example.net", [4]string{"250", "250", "354", "451 4.3.0"}, 0, quick),
		txn("end of data: slow but in time", "", "slow-1500@example.net", [4]string{"250", "250", "354", "250 2.0.0"}, 1, data),
		txn("mid-body: connection reset", "", "reset-in-body@example.net", [4]string{"250", "250", "354", lost}, 0, slow),
		txn("mid-body: connection closed", "", "drop-in-body@example.net", [4]string{"250", "250", "354", lost}, 0, slow),
		txn("mid-body: server stops reading", "", "stall-in-body@example.net", [4]string{"250", "250", "354", lost}, 0, slow),
		txn("after the dot: dropped, message kept", "", "drop-after-dot@example.net", [4]string{"250", "250", "354", lost}, 1, quick),
		txn("after the dot: no reply, message lost", "", "stall-after-dot@example.net", [4]string{"250", "250", "354", lost}, 0, data),
	}
	for i := range cases {
		c := &cases[i]
		switch {
		case strings.HasPrefix(c.name, "mid-body: connection closed"):
			// 4 KiB, past the 1 KiB where the provider hangs up, but small
			// enough that the dot may be out before the close is seen.
			c.bodyBytes, c.maybeAmbiguous = 4<<10, true
		case strings.HasPrefix(c.name, "mid-body"):
			c.bodyBytes = 8 << 20 // larger than the socket buffers: the failure comes before the dot
		case strings.HasPrefix(c.name, "after the dot"):
			c.ambiguous = true
		}
	}
	return cases
}

// faultDial is the network towards providers: two made-up hosts fail the
// way DNS and a black hole do, everything else is dialed for real.
func faultDial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, _ := net.SplitHostPort(addr)
	switch host {
	case "nxdomain.invalid":
		return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}}
	case "blackhole.invalid":
		// A SYN that is never answered: nothing happens until the dialer's
		// timeout, which the proxy sets to smtp_timeout.
		t := time.NewTimer(faultSMTPTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			return nil, &net.OpError{Op: "dial", Net: network, Err: os.ErrDeadlineExceeded}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count descriptors: %v", err)
	}
	return len(ents)
}

// TestFaults_everyUpstreamStage gives each failure its own account and
// provider, runs them all at once while a healthy account keeps sending,
// and checks the replies, the stored copies, the ambiguous count, that
// broken sessions are gone, and that no goroutine or descriptor is left.
// Not parallel: the descriptor and goroutine counts must be its own.
func TestFaults_everyUpstreamStage(t *testing.T) {
	fds := openFDs(t)
	t.Run("suite", runFaultSuite)
	waitUntil(t, "descriptors to be released", func() bool { return openFDs(t) <= fds })
	goleak.VerifyNone(t)
	t.Logf("descriptors before %d, after %d", fds, openFDs(t))
}

func runFaultSuite(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close() // nothing listens there any more: connections are refused
	cases := faultCases(refused)

	serverTLS, _, caPEM, err := fakeprovider.SelfSignedTLS("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	strangerTLS, _, _, err := fakeprovider.SelfSignedTLS("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	providers := make([]*fakeprovider.Provider, len(cases))
	for i, fc := range cases {
		o := fakeprovider.Options{TLSConfig: serverTLS, DiscardBodies: true, MaxMessageBytes: 60 << 20}
		if fc.untrusted {
			o.TLSConfig = strangerTLS
		}
		if fc.fault.Stage != 0 {
			f := fc.fault
			o.SessionFault = func(int64) fakeprovider.Fault { return f }
		}
		p, err := fakeprovider.Start(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		providers[i] = p
	}
	e := newEnv(t, envOptions{
		upstreamDial: faultDial,
		edit: func(cfg map[string]any, accts []map[string]any) {
			g := cfg["global"].(map[string]any)
			g["timeouts"] = map[string]any{
				"smtp_timeout":        faultSMTPTimeout.Seconds(),
				"client_data_timeout": faultDataTimeout.Seconds(),
			}
			// Budgets would stop the healthy account's stream of mail.
			cfg["providers"] = map[string]any{"gmail": map[string]any{"rate_limiting": map[string]any{"enabled": false}}}
			smtp := g["smtp"].(map[string]any)
			// The providers' CA joins the env's in upstream_ca_file.
			ca := smtp["upstream_ca_file"].(string)
			pem, err := os.ReadFile(ca)
			if err != nil {
				t.Fatal(err)
			}
			both := filepath.Join(filepath.Dir(ca), "ca-both.pem")
			if err := os.WriteFile(both, append(pem, caPEM...), 0o600); err != nil {
				t.Fatal(err)
			}
			smtp["upstream_ca_file"] = both
		},
	})
	accts := e.accts
	for i, p := range providers {
		email := fmt.Sprintf("fault%02d@example.com", i)
		p.AddAccount(fakeprovider.Account{Email: email, ClientID: "cid", ClientSecret: "csecret", RefreshToken: "rt-f"})
		endpoint := p.SMTPAddr()
		if cases[i].endpoint != "" {
			endpoint = cases[i].endpoint
		}
		accts = append(accts, map[string]any{
			"account_id": fmt.Sprintf("fault%02d", i), "email": email, "provider": "gmail",
			"client_id": "cid", "client_secret": "csecret", "refresh_token": "rt-f",
			"oauth_token_url": p.TokenURL(), "oauth_endpoint": endpoint, "smtp_password": hash,
		})
	}
	e.writeAccounts(t, accts)
	if err := e.svc.Reload(); err != nil {
		t.Fatal(err)
	}

	// A healthy account sends all along; no fault elsewhere may slow it.
	ctx, cancel := context.WithCancel(context.Background())
	var healthy, slowest atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			<-tick.C
			start := time.Now()
			got, err := sendFault(e.addr, userA, "<"+userA+">", "<ok@example.net>", 0)
			if err == nil && strings.HasPrefix(got[3], "250 ") {
				healthy.Add(1)
			} else {
				t.Errorf("healthy account got %q, %v during the faults", got, err)
			}
			if d := time.Since(start); int64(d) > slowest.Load() {
				slowest.Store(int64(d))
			}
		}
	})

	ambiguous0 := e.svc.Relay.Stats.Ambiguous.Load()
	var wantAmbiguous, maybe int64
	// faultParallel cases at a time, in goroutines rather than parallel
	// subtests, which -parallel (GOMAXPROCS) would run two at a time.
	var cwg sync.WaitGroup
	sem := make(chan struct{}, faultParallel)
	for i, fc := range cases {
		if fc.ambiguous {
			wantAmbiguous++
		}
		if fc.maybeAmbiguous {
			maybe++
		}
		sem <- struct{}{}
		cwg.Go(func() {
			defer func() { <-sem }()
			for _, err := range runFaultCase(e, providers[i], fmt.Sprintf("fault%02d@example.com", i), fc) {
				t.Errorf("%s: %v", fc.name, err)
			}
		})
	}
	cwg.Wait()
	cancel()
	wg.Wait()
	if got := e.svc.Relay.Stats.Ambiguous.Load() - ambiguous0; got < wantAmbiguous || got > wantAmbiguous+maybe {
		t.Errorf("ambiguous count %d, want %d (+%d maybe)", got, wantAmbiguous, maybe)
	}
	if healthy.Load() == 0 {
		t.Error("the healthy account sent nothing")
	}
	t.Logf("%d fault cases; healthy account meanwhile: %d messages, slowest %v",
		len(cases), healthy.Load(), time.Duration(slowest.Load()).Round(time.Millisecond))
	if d := time.Duration(slowest.Load()); d > faultSlack {
		t.Errorf("a message of the healthy account took %v", d)
	}
}

// runFaultCase sends one message as email and returns every way in
// which the outcome differs from what fc promises. It runs in its own
// goroutine, so it reports instead of failing the test.
func runFaultCase(e *env, p *fakeprovider.Provider, email string, fc faultCase) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	from, rcpt := email, "ok@example.net"
	if fc.from != "" {
		from = fc.from
	}
	if fc.rcpt != "" {
		rcpt = fc.rcpt
	}
	start := time.Now()
	got, err := sendFault(e.addr, email, "<"+from+">", "<"+rcpt+">", fc.bodyBytes)
	took := time.Since(start)
	if err != nil {
		return append(errs, err)
	}
	for i, w := range fc.want {
		if w == "" && got[i] != "" || !strings.HasPrefix(got[i], w) {
			fail("replies %q, want %q", got, fc.want)
			break
		}
	}
	if strings.HasPrefix(got[3], "250") && fc.stored == 0 {
		fail("250 for a message the provider did not take")
	}
	if took > fc.within {
		fail("took %v, want within %v", took, fc.within)
	}
	if n := len(p.Messages()); n != fc.stored {
		fail("provider holds %d copies, want %d", n, fc.stored)
	}
	a := e.svc.Reg.Lookup(email)
	if a == nil {
		return append(errs, fmt.Errorf("no account %s", email))
	}
	if n := a.Ambiguous.Load(); n > 0 != (fc.ambiguous || fc.maybeAmbiguous) || n > 1 {
		fail("counted %d ambiguous, want ambiguous %v", n, fc.ambiguous)
	}
	if !fc.healthy {
		if st := a.SessionStats(); st.Open != 0 {
			fail("failed sessions still open: %+v", st)
		}
		return errs
	}
	// The provider is fine otherwise: the next message goes through, on a
	// new session if the fault broke the old one.
	opened := a.SessionStats().Opened
	next, err := sendFault(e.addr, email, "<"+email+">", "<next@example.net>", 0)
	if err != nil || !strings.HasPrefix(next[3], "250 ") {
		fail("next message got %q, %v", next, err)
	}
	broke := slices.ContainsFunc(fc.want[:], func(w string) bool { return strings.HasPrefix(w, "451 4.4.2") })
	if reopened := a.SessionStats().Opened > opened; broke != reopened {
		fail("session broken: %v, but a new one opened: %v", broke, reopened)
	}
	return errs
}

// sendFault sends, as user from a trusted address, MAIL, RCPT and DATA
// pipelined and, after a 354, a body of about bodyBytes; it returns the
// last line of each reply, "" for none. It never fails the test itself.
func sendFault(addr, user, from, rcpt string, bodyBytes int) ([4]string, error) {
	var got [4]string
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return got, err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(nc)
	read := func() (string, error) { return readFinalLine(br) }
	expect := func(prefix string) error {
		l, err := read()
		if err == nil && !strings.HasPrefix(l, prefix) {
			err = fmt.Errorf("got %q, want %q", l, prefix)
		}
		return err
	}
	if err := expect("220 "); err != nil {
		return got, err
	}
	if _, err := nc.Write([]byte("EHLO fault.test\r\nAUTH PLAIN " + saslmech.EncodePlain(user, password) + "\r\n")); err != nil {
		return got, err
	}
	if err := expect("250 "); err != nil {
		return got, err
	}
	if err := expect("235 "); err != nil {
		return got, err
	}
	if _, err := nc.Write([]byte("MAIL FROM:" + from + "\r\nRCPT TO:" + rcpt + "\r\nDATA\r\n")); err != nil {
		return got, err
	}
	for i := range 3 {
		if got[i], err = read(); err != nil {
			return got, err
		}
	}
	if !strings.HasPrefix(got[2], "354") {
		return got, nil
	}
	line := "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n"
	body := "Subject: fault\r\n\r\n" + strings.Repeat(line, max(bodyBytes/len(line), 4)) + ".\r\n"
	if _, err := nc.Write([]byte(body)); err != nil {
		return got, err
	}
	got[3], err = read()
	return got, err
}

// waitUntil polls cond for up to 10s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
