package service_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/saslmech"
)

// Soak bounds: 20,000 messages or 20 s by default, whichever comes first;
// XOAUTH2_SOAK_MESSAGES and XOAUTH2_SOAK_DURATION (a Go duration) raise
// them for a long run (docs/RELIABILITY.md).
func soakBounds(t *testing.T) (int64, time.Duration) {
	n, d := int64(20_000), 20*time.Second
	if v := os.Getenv("XOAUTH2_SOAK_MESSAGES"); v != "" {
		var err error
		if n, err = strconv.ParseInt(v, 10, 64); err != nil || n < 1 {
			t.Fatalf("XOAUTH2_SOAK_MESSAGES=%q", v)
		}
	}
	if v := os.Getenv("XOAUTH2_SOAK_DURATION"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil || d <= 0 {
			t.Fatalf("XOAUTH2_SOAK_DURATION=%q", v)
		}
	}
	return n, d
}

const (
	soakWorkers  = 32 // client connections at once
	soakAccounts = 8
)

// outcome is what the client learnt about one message.
type outcome uint8

const (
	outAccepted  outcome = iota + 1 // final 250
	outRefused                      // a 4xx/5xx other than the ambiguous one
	outAmbiguous                    // 451 4.4.2 "may or may not have been delivered"
	outUnknown                      // the client hung up (or lost the line) after its dot
	outAbandoned                    // the client hung up before its dot
)

var outcomeNames = map[outcome]string{outAccepted: "accepted (250)", outRefused: "refused (4xx/5xx)",
	outAmbiguous: "ambiguous (451 after the dot)", outUnknown: "client gone after its dot", outAbandoned: "client gone before its dot"}

// soakFaults are the recipient local parts that choose an upstream
// failure, with their weights out of 1000; the rest are ordinary.
var soakFaults = []struct {
	local  string
	weight int
}{
	{"reject-550", 15}, {"reject-452", 5}, {"faildatacmd-451", 5}, {"faildata-451", 10}, {"faildata-550", 5},
	{"drop-at-rcpt", 5}, {"drop-at-data", 5}, {"drop-in-body", 10}, {"reset-in-body", 10},
	{"drop-after-dot", 10}, {"slow-50", 10}, {"stall-after-dot", 1}, {"stall-at-rcpt", 1}, {"trickle", 1},
}

// soakSessionFault fails about 2% of upstream sessions at a random stage.
func soakSessionFault(int64) fakeprovider.Fault {
	if rand.IntN(100) >= 2 {
		return fakeprovider.Fault{}
	}
	stages := []fakeprovider.Stage{fakeprovider.StageGreeting, fakeprovider.StageEHLO, fakeprovider.StageSTARTTLS,
		fakeprovider.StageTLS, fakeprovider.StageAuth}
	f := fakeprovider.Fault{Stage: stages[rand.IntN(len(stages))]}
	switch rand.IntN(10) {
	case 0, 1, 2:
		f.Action = fakeprovider.ActDrop
	case 3, 4:
		f.Action = fakeprovider.ActReset
	case 5, 6:
		f.Action, f.Reply = fakeprovider.ActReply, reply.New(421, "4.7.0", "Try again later, closing connection.")
	case 7:
		f.Action, f.Reply = fakeprovider.ActReply, reply.New(554, "5.7.0", "go away")
	case 8:
		f.Action = fakeprovider.ActGarbage
	default:
		f.Action = fakeprovider.ActStall
	}
	return f
}

// soakBody makes message id: dot lines, long lines, 8-bit bytes and NUL,
// CRLF line ends only (bare ones are normalised, so not byte-identical).
func soakBody(r *rand.Rand, id int64) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Message-ID: <soak-%d@soak.test>\r\nSubject: soak %d\r\n\r\n", id, id)
	for range 3 + r.IntN(40) {
		switch r.IntN(14) {
		case 0:
			b.WriteString(".\r\n")
		case 1:
			b.WriteString("..two dots\r\n")
		case 2:
			b.WriteString(strings.Repeat("long ", r.IntN(1900)) + "\r\n")
		case 3:
			b.WriteString("8-bit caf\xc3\xa9 \xff\xfe \x00 nul\r\n")
		case 4:
			b.WriteString("\r\n")
		default:
			b.WriteString(strings.Repeat("lorem ipsum dolor sit amet ", 1+r.IntN(3)) + strconv.Itoa(r.IntN(1e6)) + "\r\n")
		}
	}
	return b.Bytes()
}

// soakMessage is one message's record.
type soakMessage struct {
	sum     [32]byte
	outcome outcome
}

// TestSoak sends messages over many connections while the upstream fails
// at random at every stage and clients hang up at random; then every
// message that got a 250 must be at the provider exactly once and
// byte-identical, and no refused or abandoned one may be there. Not
// parallel: it measures.
func TestSoak(t *testing.T) {
	limit, duration := soakBounds(t)
	p := fakeproviderDiscard()
	p.SessionFault = soakSessionFault
	p.TrickleInterval = 200 * time.Millisecond
	e := newEnv(t, envOptions{provider: p, edit: func(cfg map[string]any, _ []map[string]any) {
		cfg["providers"] = map[string]any{"gmail": map[string]any{"rate_limiting": map[string]any{"enabled": false}}}
		cfg["global"].(map[string]any)["timeouts"] = map[string]any{"smtp_timeout": 1, "client_data_timeout": 3}
	}})
	accts := e.accts
	var users []string
	for i := range soakAccounts {
		email := fmt.Sprintf("soak%d@example.com", i)
		e.fp.AddAccount(fakeprovider.Account{Email: email, ClientID: "cid", ClientSecret: "csecret", RefreshToken: fmt.Sprintf("rt-soak%d", i)})
		accts = append(accts, map[string]any{
			"account_id": fmt.Sprintf("soak%d", i), "email": email, "provider": "gmail",
			"client_id": "cid", "client_secret": "csecret", "refresh_token": fmt.Sprintf("rt-soak%d", i),
			"oauth_token_url": e.fp.TokenURL(), "oauth_endpoint": e.fp.SMTPAddr(), "smtp_password": hash,
		})
		users = append(users, email)
	}
	e.writeAccounts(t, accts)
	if err := e.svc.Reload(); err != nil {
		t.Fatal(err)
	}

	var (
		next     atomic.Int64 // message ids
		mu       sync.Mutex
		messages = map[int64]*soakMessage{}
		connErrs atomic.Int64
	)
	record := func(id int64, sum [32]byte, o outcome) {
		mu.Lock()
		messages[id] = &soakMessage{sum: sum, outcome: o}
		mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range soakWorkers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(start.UnixNano()), uint64(w)))
			for ctx.Err() == nil && next.Load() < limit {
				if err := soakConnection(ctx, r, e.addr, users[w%len(users)], &next, limit, record); err != nil {
					connErrs.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	ambiguousProxy := e.svc.Relay.Stats.Ambiguous.Load()
	if err := e.stop(); err != nil { // transactions in flight finish first
		t.Fatal(err)
	}

	copies := map[[32]byte]int{}
	for _, m := range e.fp.Messages() {
		copies[m.SHA256]++
	}
	count := map[outcome]int{}
	var ambiguousStored, unknownStored int
	bySum := map[[32]byte]bool{}
	for id, m := range messages {
		count[m.outcome]++
		bySum[m.sum] = true
		n := copies[m.sum]
		switch m.outcome {
		case outAccepted:
			if n != 1 {
				t.Errorf("message %d got 250 and is at the provider %d times", id, n)
			}
		case outRefused, outAbandoned:
			if n != 0 {
				t.Errorf("message %d (%s) is at the provider %d times", id, outcomeNames[m.outcome], n)
			}
		case outAmbiguous, outUnknown:
			if n > 1 {
				t.Errorf("message %d (%s) is at the provider %d times", id, outcomeNames[m.outcome], n)
			}
			if m.outcome == outAmbiguous {
				ambiguousStored += n
			} else {
				unknownStored += n
			}
		}
	}
	for sum := range copies {
		if !bySum[sum] {
			t.Errorf("the provider holds a message nobody sent (or not byte-identical): %x", sum[:8])
		}
	}
	// Every ambiguous reply the clients saw was counted; the proxy also
	// counts those whose client had already hung up.
	if a := int64(count[outAmbiguous]); ambiguousProxy < a || ambiguousProxy > a+int64(count[outUnknown]) {
		t.Errorf("proxy counted %d ambiguous, clients saw %d (+%d gone)", ambiguousProxy, a, count[outUnknown])
	}
	if count[outAccepted] == 0 {
		t.Error("nothing was accepted")
	}
	st := e.fp.Stats()
	t.Logf("soak: %d messages in %v (%.0f/s) over %d workers; provider: %d sessions, %d stored",
		len(messages), elapsed.Round(time.Millisecond), float64(len(messages))/elapsed.Seconds(), soakWorkers, st.Connections, st.Messages)
	for _, o := range []outcome{outAccepted, outRefused, outAmbiguous, outUnknown, outAbandoned} {
		t.Logf("  %-32s %6d", outcomeNames[o], count[o])
	}
	t.Logf("  ambiguous: %d stored, %d not; proxy counted %d; client-gone-after-dot stored: %d; connection errors: %d",
		ambiguousStored, count[outAmbiguous]-ambiguousStored, ambiguousProxy, unknownStored, connErrs.Load())
}

// soakConnection runs one client connection: AUTH, then up to 20
// messages, hanging up at random now and then. It returns an error when
// the connection failed in a way the client did not choose.
func soakConnection(ctx context.Context, r *rand.Rand, addr, user string, next *atomic.Int64, limit int64,
	record func(int64, [32]byte, outcome)) error {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(nc)
	read := func() (string, error) { return readFinalLine(br) }
	write := func(s string) error { _, err := nc.Write([]byte(s)); return err }
	if _, err := read(); err != nil {
		return err
	}
	if err := write("EHLO soak.test\r\nAUTH PLAIN " + saslmech.EncodePlain(user, password) + "\r\n"); err != nil {
		return err
	}
	if _, err := read(); err != nil {
		return err
	}
	if l, err := read(); err != nil || !strings.HasPrefix(l, "235") {
		return fmt.Errorf("AUTH: %q %v", l, err)
	}
	for range 1 + r.IntN(20) {
		if ctx.Err() != nil {
			return nil
		}
		id := next.Add(1)
		if id > limit {
			return nil
		}
		body := soakBody(r, id)
		sum := sha256.Sum256(body)
		from, rcpts := user, []string{fmt.Sprintf("r%d@example.net", id)}
		if local := pickFault(r); local != "" {
			rcpts = append(rcpts, fmt.Sprintf("%s+%d@example.net", local, id))
			if r.IntN(2) == 0 {
				rcpts = rcpts[1:] // the faulty one alone
			}
		} else if r.IntN(200) == 0 {
			from = fmt.Sprintf("failmail-451+%d@example.com", id)
		}
		cmds := "MAIL FROM:<" + from + ">\r\n"
		for _, rc := range rcpts {
			cmds += "RCPT TO:<" + rc + ">\r\n"
		}
		if err := write(cmds + "DATA\r\n"); err != nil {
			record(id, sum, outAbandoned)
			return err
		}
		var last string
		for range len(rcpts) + 2 {
			if last, err = read(); err != nil {
				record(id, sum, outAbandoned)
				return err
			}
		}
		if !strings.HasPrefix(last, "354") {
			record(id, sum, outRefused)
			continue
		}
		wire := stuff(body)
		switch r.IntN(100) {
		case 0: // hang up before the body
			record(id, sum, outAbandoned)
			return nil
		case 1: // hang up half-way through the body
			_ = write(wire[:len(wire)/2])
			record(id, sum, outAbandoned)
			return nil
		case 2: // hang up right after the dot
			_ = write(wire + ".\r\n")
			record(id, sum, outUnknown)
			return nil
		}
		if err := write(wire + ".\r\n"); err != nil {
			record(id, sum, outUnknown)
			return err
		}
		final, err := read()
		switch {
		case err != nil:
			record(id, sum, outUnknown)
			return err
		case strings.HasPrefix(final, "250"):
			record(id, sum, outAccepted)
		case strings.HasPrefix(final, "451 4.4.2") && strings.Contains(final, "may or may not"):
			record(id, sum, outAmbiguous)
		default:
			record(id, sum, outRefused)
		}
		if strings.HasPrefix(final, "421") {
			return nil
		}
	}
	_ = write("QUIT\r\n")
	return nil
}

// pickFault returns a fault local part for about 10% of messages.
func pickFault(r *rand.Rand) string {
	k := r.IntN(1000)
	for _, f := range soakFaults {
		if k < f.weight {
			return f.local
		}
		k -= f.weight
	}
	return ""
}
