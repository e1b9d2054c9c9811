package service_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/loadgen"
)

// body returns a message exercising dot lines, 8-bit bytes and a long line.
func testBody() []byte {
	var b bytes.Buffer
	b.WriteString("Subject: byte-exact\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString(".\r\n..\r\n.leading dot\r\n...three\r\n")
	b.WriteString("caf\xc3\xa9 \xff\xfe raw 8-bit\r\n")
	b.WriteString("<p>" + strings.Repeat("x", 9990) + "</p>\r\n")
	b.WriteString("\r\n \r\nlast line\r\n")
	return b.Bytes()
}

// stuff dot-stuffs a CRLF body for the wire.
func stuff(b []byte) string {
	var out strings.Builder
	for _, l := range strings.SplitAfter(string(b), "\r\n") {
		if strings.HasPrefix(l, ".") {
			out.WriteByte('.')
		}
		out.WriteString(l)
	}
	return out.String()
}

func TestRelay_byteExactPipelined(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.dial(t)
	c.authPlain(userA, password, "235 2.7.0")
	body := testBody()
	c.send("MAIL FROM:<" + userA + "> BODY=8BITMIME\r\nRCPT TO:<r1@example.net>\r\nRCPT TO:<reject-550@example.net>\r\nRCPT TO:<r2@example.net>\r\nDATA\r\n")
	c.expect("250 ")
	c.expect("250 ")
	c.expect("550 5.")
	c.expect("250 ")
	c.expect("354 ")
	c.send(stuff(body) + ".\r\n")
	c.expect("250 2.0.0 OK")
	msgs := e.fp.Messages()
	if len(msgs) != 1 {
		t.Fatalf("provider has %d messages", len(msgs))
	}
	m := msgs[0]
	if !bytes.Equal(m.Data, body) {
		i := 0
		for i < len(m.Data) && i < len(body) && m.Data[i] == body[i] {
			i++
		}
		t.Errorf("body differs at byte %d (len got %d want %d):\n got %q\nwant %q", i, len(m.Data), len(body), trunc(m.Data[max(0, i-20):]), trunc(body[max(0, i-20):]))
	}
	if m.AuthUser != userA || m.From != userA || strings.Join(m.Rcpts, ",") != "r1@example.net,r2@example.net" {
		t.Errorf("envelope: %+v", m)
	}
	if strings.Join(m.MailParams, " ") != "BODY=8BITMIME" {
		t.Errorf("MAIL params %q", m.MailParams)
	}
}

func trunc(b []byte) []byte {
	if len(b) > 300 {
		return append(append([]byte{}, b[:300]...), "..."...)
	}
	return b
}

// TestRelay_upstreamRepliesRelayed: the provider's own code reaches the
// client at every stage, and a failed body is not stored.
func TestRelay_upstreamRepliesRelayed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	tests := []struct {
		name, from, rcpt         string
		mail, rcptCode, dataCode string
		final                    string
	}{
		{name: "MAIL 5xx", from: "failmail-550@example.com", rcpt: "r@example.net", mail: "550 5.", rcptCode: "503", dataCode: "503"},
		{name: "MAIL 4xx", from: "failmail-451@example.com", rcpt: "r@example.net", mail: "451 4.", rcptCode: "503", dataCode: "503"},
		{name: "RCPT 4xx", from: userA, rcpt: "reject-452@example.net", mail: "250", rcptCode: "452 4.", dataCode: "554"},
		{name: "DATA cmd 5xx", from: userA, rcpt: "faildatacmd-554@example.net", mail: "250", rcptCode: "250", dataCode: "554 5."},
		{name: "end of data 5xx", from: userA, rcpt: "faildata-550@example.net", mail: "250", rcptCode: "250", dataCode: "354", final: "550 5."},
		{name: "end of data 4xx", from: userA, rcpt: "faildata-451@example.net", mail: "250", rcptCode: "250", dataCode: "354", final: "451 4."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := e.dial(t)
			c.authPlain(userA, password, "235")
			c.send("MAIL FROM:<" + tc.from + ">\r\nRCPT TO:<" + tc.rcpt + ">\r\nDATA\r\n")
			c.expect(tc.mail)
			c.expect(tc.rcptCode)
			c.expect(tc.dataCode)
			if tc.final != "" {
				c.send("Subject: x\r\n\r\nbody\r\n.\r\n")
				c.expect(tc.final)
			}
			// The session stays usable for the next transaction.
			c.deliver(userA, "ok@example.net", "Subject: y\r\n\r\nok\r\n")
		})
	}
}

// TestRelay_connectionDropsNeverGive250: an upstream that vanishes at any
// stage gives the client a 4xx, and no message is counted twice.
func TestRelay_connectionDropsNeverGive250(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	tests := []struct {
		rcpt      string
		rcptReply string
		dataReply string
		final     string
		delivered bool
	}{
		{rcpt: "drop-at-rcpt@example.net", rcptReply: "451 4.4.2", dataReply: "451 4.4.2"},
		{rcpt: "drop-at-data@example.net", rcptReply: "451 4.4.2", dataReply: "451 4.4.2"},
		{rcpt: "drop-in-body@example.net", rcptReply: "250", dataReply: "354", final: "451 4.4.2"},
		{rcpt: "drop-after-dot@example.net", rcptReply: "250", dataReply: "354", final: "451 4.4.2", delivered: true},
	}
	for _, tc := range tests {
		t.Run(tc.rcpt, func(t *testing.T) {
			t.Parallel()
			c := e.dial(t)
			c.authPlain(userA, password, "235")
			c.send("MAIL FROM:<" + userA + ">\r\nRCPT TO:<" + tc.rcpt + ">\r\nDATA\r\n")
			c.expect("250")
			got := c.expect("")
			if !strings.HasPrefix(got, tc.rcptReply) && !strings.HasPrefix(got, "250") {
				t.Fatalf("RCPT reply %q", got)
			}
			d := c.expect("")
			if !strings.HasPrefix(d, tc.dataReply) && !(tc.final == "" && strings.HasPrefix(d, "4")) {
				t.Fatalf("DATA reply %q, want %q", d, tc.dataReply)
			}
			if strings.HasPrefix(d, "354") {
				c.send("Subject: x\r\n\r\n" + strings.Repeat("body line\r\n", 500) + ".\r\n")
				c.expect(tc.final)
			}
			// Never retried: the provider has the message once (the
			// ambiguous drop-after-dot case) or not at all.
			n := 0
			for _, m := range e.fp.Messages() {
				if len(m.Rcpts) > 0 && m.Rcpts[0] == tc.rcpt {
					n++
				}
			}
			if want := map[bool]int{true: 1, false: 0}[tc.delivered]; n != want {
				t.Errorf("provider stored %d copies, want %d", n, want)
			}
		})
	}
}

func TestRelay_authOutcomes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{edit: func(cfg map[string]any, _ []map[string]any) {
		cfg["global"].(map[string]any)["smtp"].(map[string]any)["trusted_networks"] = []string{"127.0.0.2/32"}
	}})
	tests := []struct {
		name, src, user, pass, want string
	}{
		{"bcrypt ok", "", userA, password, "235 2.7.0"},
		{"bcrypt by account_id", "", "alice", password, "235 2.7.0"},
		{"email case-insensitive", "", "ALICE@Example.COM", password, "235 2.7.0"},
		{"wrong password", "", userA, "nope", "535 5.7.8 Authentication credentials invalid"},
		{"unknown account", "", "mallory@example.com", password, "535 5.7.8 Authentication credentials invalid"},
		{"plain-text password ok", "", userPlain, password, "235"},
		{"plain-text password wrong", "", userPlain, "x", "535 5.7.8"},
		{"no password, trusted source", "127.0.0.2", userNoPW, "anything", "235"},
		{"no password, untrusted source", "127.0.0.1", userNoPW, "anything", "535 5.7.8 Authentication credentials invalid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := e.dialFrom(t, tc.src)
			c.authPlain(tc.user, tc.pass, tc.want)
		})
	}
	t.Run("AUTH LOGIN", func(t *testing.T) {
		t.Parallel()
		c := e.dial(t)
		c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6")
		c.cmd(base64.StdEncoding.EncodeToString([]byte(userA)), "334 UGFzc3dvcmQ6")
		c.cmd(base64.StdEncoding.EncodeToString([]byte(password)), "235")
		c.cmd("AUTH LOGIN", "503")
	})
}

func TestRelay_tokenEndpointDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.fp.SetTokenEndpointDown(true)
	c := e.dial(t)
	c.authPlain(userA, password, "235") // AUTH needs no token
	c.send("MAIL FROM:<" + userA + ">\r\nRCPT TO:<r@example.net>\r\nDATA\r\n")
	c.expect("454 4.7.0")
	c.expect("503")
	c.expect("503")
	e.fp.SetTokenEndpointDown(false)
	c.deliver(userA, "r@example.net", "x\r\n")
}

func TestRelay_revokedRefreshToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.fp.Revoke(userA)
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	c.cmd("MAIL FROM:<"+userA+">", "454 4.7.0 "+userA+": OAuth2 credentials rejected")
}

// TestRelay_expiredTokenRefreshedAndRetriedOnce: the provider rejects the
// cached token Gmail-style; the proxy refreshes once and logs in.
func TestRelay_expiredTokenRefreshedAndRetriedOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	send := func(c *conn) {
		c.deliver(userOne, "r@example.net", "x\r\n")
	}
	c := e.dial(t)
	c.authPlain(userOne, password, "235")
	send(c) // token 1, session 1 (retired after one message)
	before := e.fp.Stats()
	e.fp.ExpireAccessTokens()
	send(c) // session 2: token 1 rejected, refreshed, token 2 accepted
	after := e.fp.Stats()
	if got := after.TokenRefreshes - before.TokenRefreshes; got != 1 {
		t.Errorf("token refreshes = %d, want 1", got)
	}
	if got := after.LoginFailures - before.LoginFailures; got != 1 {
		t.Errorf("login failures = %d, want 1", got)
	}
	if after.Messages != 2 {
		t.Errorf("messages = %d", after.Messages)
	}
}

func TestRelay_size(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{edit: func(cfg map[string]any, _ []map[string]any) {
		cfg["global"].(map[string]any)["smtp"].(map[string]any)["max_message_size"] = 1000
	}})
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	c.cmd("MAIL FROM:<"+userA+"> SIZE=1001", "552 5.3.4")
	c.send("MAIL FROM:<" + userA + "> SIZE=10\r\nRCPT TO:<r@example.net>\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	c.send(strings.Repeat("0123456789\r\n", 200) + ".\r\n")
	c.expect("552 5.3.4")
	// The session is in step and can send again.
	c.deliver(userA, "r@example.net", "small\r\n")
	if n := len(e.fp.Messages()); n != 1 {
		t.Fatalf("provider stored %d messages, want only the small one", n)
	}
}

func TestRelay_smtpUTF8(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	c.send("MAIL FROM:<" + userA + "> SMTPUTF8\r\nRCPT TO:<josé@bücher.example>\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	c.send("Subject: Grüße\r\n\r\nñ\r\n.\r\n")
	c.expect("250")
	m := e.fp.Messages()
	if len(m) != 1 || m[0].Rcpts[0] != "josé@bücher.example" || !strings.Contains(strings.Join(m[0].MailParams, " "), "SMTPUTF8") {
		t.Fatalf("%+v", m)
	}
}

func TestRelay_dryRunContactsNoProvider(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{dryRun: true})
	c := e.dial(t)
	c.authPlain(userA, "wrong", "535")
	c.authPlain(userA, password, "235")
	c.deliver(userA, "r@example.net", "x\r\n")
	if st := e.fp.Stats(); st.Connections != 0 || st.TokenRequests != 0 {
		t.Fatalf("dry run contacted the provider: %+v", st)
	}
}

// TestRelay_largeMessageBoundedMemory relays 50 MB and watches the heap.
func TestRelay_largeMessageBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("50 MB transfer")
	}
	big := newEnvDiscard(t)
	c := big.dial(t)
	c.authPlain(userA, password, "235")
	c.send("MAIL FROM:<" + userA + ">\r\nRCPT TO:<r@example.net>\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("354")

	runtime.GC()
	base := heapBytes()
	var peak uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(5 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				if h := heapBytes(); h > peak {
					peak = h
				}
			}
		}
	}()
	line := []byte(strings.Repeat("abcdefghij", 99) + "\r\n") // 992 bytes
	chunk := bytes.Repeat(line, 64)
	const total = 50 << 20
	for sent := 0; sent < total; sent += len(chunk) {
		if _, err := c.nc.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	c.send(".\r\n")
	c.expect("250")
	close(stop)
	wg.Wait()
	growth := int64(peak) - int64(base)
	t.Logf("heap base %d KiB, peak %d KiB, growth %d KiB", base>>10, peak>>10, growth>>10)
	if growth > 16<<20 {
		t.Fatalf("heap grew by %d MiB while relaying 50 MB", growth>>20)
	}
	if m := big.fp.Messages(); len(m) != 1 || m[0].Size < total {
		t.Fatalf("provider got %+v", m)
	}
}

func newEnvDiscard(t *testing.T) *env {
	return newEnv(t, envOptions{provider: fakeproviderDiscard()})
}

func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func TestRelay_sourceAddress(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.dial(t)
	c.authPlain(userBadIP, password, "235")
	c.cmd("MAIL FROM:<"+userBadIP+">", "451 4.4.0 "+userBadIP+": configured source address unavailable")
	if st := e.fp.Stats(); st.Connections != 0 {
		t.Fatalf("an account with an unusable source address reached the provider: %+v", st)
	}
	c2 := e.dial(t)
	c2.authPlain(userBound, password, "235")
	c2.deliver(userBound, "r@example.net", "x\r\n")
}

// TestRelay_secretsNeverLogged plants every kind of secret, runs traffic
// including failures at debug level, and searches the log.
func TestRelay_secretsNeverLogged(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newEnv(t, envOptions{logger: log})
	c := e.dial(t)
	c.authPlain(userA, "wrong-"+password, "535")
	c.authPlain(userA, password, "235")
	c.deliver(userA, "r@example.net", "x\r\n")
	e.fp.Revoke(userOne)
	c2 := e.dial(t)
	c2.authPlain(userOne, password, "235")
	c2.cmd("MAIL FROM:<"+userOne+">", "454")
	out := logs.String()
	for _, s := range []string{password, "csecret", "rt-alice", "rt-one", hash} {
		if strings.Contains(out, s) {
			t.Errorf("log contains secret %q", s)
		}
	}
	for _, tok := range e.fp.IssuedAccessTokens() {
		if strings.Contains(out, tok) {
			t.Errorf("log contains an access token")
		}
	}
	if !strings.Contains(out, "msg=message") || !strings.Contains(out, "auth failed") {
		t.Errorf("expected message and auth lines in the log:\n%s", out)
	}
}

// TestRelay_deadPooledSessionReplaced: pooled sessions die silently; the
// next message moves to a fresh session and arrives exactly once.
func TestRelay_deadPooledSessionReplaced(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	send := func(subject string) {
		c.deliver(userA, "r@example.net", "Subject: "+subject+"\r\n\r\nx\r\n")
	}
	send("one")
	e.fp.DropConnections()
	send("two")
	msgs := e.fp.Messages()
	if len(msgs) != 2 {
		t.Fatalf("provider has %d messages, want 2", len(msgs))
	}
	for i, want := range []string{"Subject: one", "Subject: two"} {
		if !strings.HasPrefix(string(msgs[i].Data), want) {
			t.Errorf("message %d = %q", i, msgs[i].Data)
		}
	}
	if got := e.svc.Relay.Stats.Retried.Load(); got != 1 {
		t.Errorf("retried = %d, want 1", got)
	}
}

// TestRelay_capHoldsUnderManyClients: 200 client connections of one
// account, cap 3 upstream sessions: every message arrives, the provider
// never sees more than 3 sessions, and logins stay far below messages.
func TestRelay_capHoldsUnderManyClients(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{edit: func(cfg map[string]any, accts []map[string]any) {
		cfg["global"].(map[string]any)["timeouts"] = map[string]any{"connection_acquire_timeout": 60}
		accts[0]["connection_settings"] = map[string]any{"max_connections_per_account": 3, "max_messages_per_connection": 1000}
		accts[0]["max_concurrent_messages"] = 1000
	}})
	const clients = 200
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := loadgen.Dial(context.Background(), e.addr, 60*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer c.Quit()
			if err := c.Auth(userA, password); err != nil {
				errs <- err
				return
			}
			res, err := c.Send(userA, []string{"r@example.net"}, []byte("Subject: cap\r\n\r\nx\r\n"))
			if err != nil || !res.OK() {
				errs <- fmt.Errorf("send: %v %+v", err, res)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := e.fp.Stats()
	if st.Messages != clients {
		t.Errorf("delivered %d, want %d", st.Messages, clients)
	}
	if st.MaxConcurrentSessionsPerUser > 3 {
		t.Errorf("provider saw %d concurrent sessions for one account, cap 3", st.MaxConcurrentSessionsPerUser)
	}
	if st.Logins > 3 {
		t.Errorf("%d upstream logins for %d messages", st.Logins, clients)
	}
}

// TestRelay_concurrencyRefusalShrinksCap: the provider allows 2 sessions
// per mailbox while the account is configured for 5 (Microsoft's 432
// 4.3.2); a refused session gives the client a 4xx, lowers the cap, and
// nothing is lost or duplicated.
func TestRelay_concurrencyRefusalShrinksCap(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{
		provider: fakeprovider.Options{MaxSessionsPerUser: 2},
		edit: func(cfg map[string]any, accts []map[string]any) {
			accts[0]["connection_settings"] = map[string]any{"max_connections_per_account": 5}
		},
	})
	const clients = 20
	var wg sync.WaitGroup
	var ok, temp atomic.Int64
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := loadgen.Dial(context.Background(), e.addr, 30*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Quit()
			if err := c.Auth(userA, password); err != nil {
				t.Error(err)
				return
			}
			for j := 0; j < 5; j++ {
				res, err := c.Send(userA, []string{"r@example.net"}, []byte("x\r\n"))
				switch {
				case err != nil:
					t.Error(err)
					return
				case res.OK():
					ok.Add(1)
				case res.Mail.Temporary():
					temp.Add(1)
				default:
					t.Errorf("unexpected %+v", res)
				}
			}
		}()
	}
	wg.Wait()
	st := e.fp.Stats()
	if st.Messages != ok.Load() {
		t.Errorf("client got %d 250s, provider has %d messages", ok.Load(), st.Messages)
	}
	if st.MaxConcurrentSessionsPerUser > 2 {
		t.Errorf("provider allowed %d sessions", st.MaxConcurrentSessionsPerUser)
	}
	if temp.Load() > 0 && st.LoginFailures == 0 {
		t.Errorf("temporary failures without refusals")
	}
	a := e.svc.Reg.Lookup(userA)
	if st.LoginFailures > 0 && a.SessionStats().Cap >= 5 {
		t.Errorf("cap not lowered after %d refusals: %d", st.LoginFailures, a.SessionStats().Cap)
	}
	t.Logf("ok %d, refused %d, provider refusals %d, cap now %d", ok.Load(), temp.Load(), st.LoginFailures, a.SessionStats().Cap)
}

// TestRelay_replacementSessionsResumeTLS: a session retired after its
// messages is replaced by one that resumes the TLS session instead of a
// full handshake.
func TestRelay_replacementSessionsResumeTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.dial(t)
	c.authPlain(userOne, password, "235") // one message per session
	for i := 0; i < 3; i++ {
		c.deliver(userOne, "r@example.net", "x\r\n")
	}
	st := e.fp.Stats()
	if st.TLSHandshakes != 3 || st.TLSResumed != 2 {
		t.Fatalf("TLS sessions %d, resumed %d; want 3 and 2", st.TLSHandshakes, st.TLSResumed)
	}
}
