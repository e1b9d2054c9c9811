//go:build chaos

package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/loadgen"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/redistest"
)

const (
	accounts    = 4
	capSessions = 2   // max_connections_per_account
	budget      = 100 // messages_per_day, per account
	perMinute   = 60  // messages_per_minute, per account: binding all along
	password    = "chaos-pw"
	tokenTTL    = 20 * time.Second // renewed about tokenTTL/2 before it expires
)

// proxy is one xoauth2-proxy serve process.
type proxy struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
	log  *bytes.Buffer
}

func TestChaos(t *testing.T) {
	duration := 80 * time.Second
	if d, err := time.ParseDuration(os.Getenv("CHAOS_DURATION")); err == nil {
		duration = d
	}
	rs := redistest.Start(t, redistest.Options{})
	dir := t.TempDir()
	bin := build(t, dir)

	tlsCfg, _, caPEM, err := fakeprovider.SelfSignedTLS("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	// Refresh tokens rotate at each refresh, as Microsoft's do, and the
	// old one is refused from then on: a rotation lost anywhere in the
	// cluster leaves the account unable to get a token.
	// Access tokens live tokenTTL, so the cluster renews (and rotates)
	// each account's several times in the run, also around the moment
	// Redis comes back empty.
	fp, err := fakeprovider.Start(fakeprovider.Options{TLSConfig: tlsCfg, DiscardBodies: false,
		RotateRefreshTokens: true, AccessTokenTTL: tokenTTL})
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	ca := filepath.Join(dir, "ca.pem")
	must(t, os.WriteFile(ca, caPEM, 0o600))
	var accts []map[string]any
	for i := range accounts {
		email := fmt.Sprintf("acct%d@example.com", i)
		fp.AddAccount(fakeprovider.Account{Email: email, ClientID: "cid", ClientSecret: "cs", RefreshToken: fmt.Sprint("rt", i)})
		accts = append(accts, map[string]any{
			"account_id": fmt.Sprint("acct", i), "email": email, "provider": "gmail",
			"client_id": "cid", "client_secret": "cs", "refresh_token": fmt.Sprint("rt", i),
			"oauth_token_url": fp.TokenURL(), "oauth_endpoint": fp.SMTPAddr(), "smtp_password": password,
			"connection_settings": map[string]any{"max_connections_per_account": capSessions, "max_messages_per_connection": 5},
			"rate_limiting":       map[string]any{"enabled": true, "messages_per_day": budget, "messages_per_minute": perMinute},
		})
	}
	writeJSON(t, filepath.Join(dir, "accounts.json"), map[string]any{"accounts": accts})
	writeJSON(t, filepath.Join(dir, "config.json"), map[string]any{"global": map[string]any{
		"smtp":    map[string]any{"server_hostname": "chaos.test", "upstream_ca_file": ca},
		"cluster": map[string]any{"redis_url": "redis://" + rs.Addr},
	}})

	proxies := make([]*proxy, 3)
	for i := range proxies {
		proxies[i] = start(t, bin, dir, i)
	}
	defer func() {
		for _, p := range proxies {
			p.stop()
		}
	}()

	// Load: 4 clients per proxy, each on one account at a time, until
	// the end; a client whose proxy died moves to the next one.
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var (
		mu       sync.Mutex
		accepted = map[string]string{}      // message id → account email
		times    = map[string][]time.Time{} // account email → when its 250s came
		sent     atomic.Int64
		refused  atomic.Int64
		errs     atomic.Int64
		seq      atomic.Int64
		wg       sync.WaitGroup
	)
	for w := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			target := w % len(proxies)
			for ctx.Err() == nil {
				p := proxies[target]
				email := fmt.Sprintf("acct%d@example.com", (w+int(seq.Load()))%accounts)
				c, err := loadgen.Dial(ctx, p.addr, 10*time.Second)
				if err != nil {
					errs.Add(1)
					target = (target + 1) % len(proxies)
					sleep(ctx, 100*time.Millisecond)
					continue
				}
				if err := c.Auth(email, password); err != nil {
					c.Close()
					errs.Add(1)
					sleep(ctx, 100*time.Millisecond)
					continue
				}
				for i := 0; i < 20 && ctx.Err() == nil; i++ {
					id := fmt.Sprintf("chaos-%d", seq.Add(1))
					body := []byte("Message-ID: <" + id + ">\r\nSubject: chaos\r\n\r\nhello\r\n")
					sent.Add(1)
					res, err := c.Send(email, []string{"rcpt@example.net"}, body)
					if err != nil {
						errs.Add(1)
						break
					}
					if res.OK() {
						mu.Lock()
						accepted[id] = email
						times[email] = append(times[email], time.Now())
						mu.Unlock()
					} else {
						refused.Add(1)
						sleep(ctx, 50*time.Millisecond)
					}
				}
				c.Close()
			}
		}()
	}
	// Mid-load: Redis restarted empty, then a proxy killed.
	sleep(ctx, duration/4)
	t.Logf("t=%v: redis restarted empty", duration/4)
	rs.Restart()
	sleep(ctx, duration/4)
	t.Logf("t=%v: kill -9 proxy 2", duration/2)
	proxies[2].kill()
	wg.Wait()

	// The verdict.
	st := fp.Stats()
	delivered := map[string]int{}  // by message id
	perAccount := map[string]int{} // delivered, by account
	for _, m := range fp.Messages() {
		id := messageID(m.Data)
		delivered[id]++
		perAccount[strings.ToLower(m.AuthUser)]++
	}
	dup := 0
	for id, n := range delivered {
		if n > 1 {
			dup++
			t.Errorf("message %s delivered %d times", id, n)
		}
	}
	lost := 0
	for id := range accepted {
		if delivered[id] != 1 {
			lost++
			t.Errorf("message %s got 250 but was delivered %d times", id, delivered[id])
		}
	}
	acceptedPer := map[string]int{}
	for _, email := range accepted {
		acceptedPer[email]++
	}
	t.Logf("sent %d, accepted %d, refused %d, client errors %d; provider: %d messages, %d logins, peak %d sessions per account (cap %d)",
		sent.Load(), len(accepted), refused.Load(), errs.Load(), st.Messages, st.Logins, st.MaxConcurrentSessionsPerUser, capSessions)
	for i := range accounts {
		email := fmt.Sprintf("acct%d@example.com", i)
		t.Logf("%s: accepted %d, delivered %d (budget %d)", email, acceptedPer[email], perAccount[email], budget)
		if perAccount[email] > budget {
			t.Errorf("%s: %d delivered, over its budget of %d", email, perAccount[email], budget)
		}
		// The rolling minute: no 60 s span holds more 250s than the
		// limit (the proxy counts a message just before its 250, and its
		// window holds a count one bucket longer than the minute).
		ts := times[email]
		for i := range ts {
			n := 0
			for j := i; j < len(ts) && ts[j].Sub(ts[i]) < time.Minute; j++ {
				n++
			}
			if n > perMinute {
				t.Errorf("%s: %d messages accepted within a minute from %v; limit %d", email, n, ts[i].Format("15:04:05.000"), perMinute)
				break
			}
		}
	}
	if st.MaxConcurrentSessionsPerUser > capSessions {
		t.Errorf("provider saw %d sessions of one account at once; cap %d", st.MaxConcurrentSessionsPerUser, capSessions)
	}
	if len(accepted) == 0 {
		t.Error("no message accepted: the run proved nothing")
	}
	// One token per account for the whole cluster: each account's is
	// renewed about every tokenTTL/2, once for the cluster; three proxies
	// on their own would each renew it.
	renewals := int64(duration/(tokenTTL/2)) + 2
	t.Logf("token requests: %d for %d accounts and %d proxies over %v (one per account per renewal: about %d)",
		st.TokenRequests, accounts, len(proxies), duration, accounts*renewals)
	if st.TokenRequests > 2*accounts*renewals {
		t.Errorf("%d token requests: the proxies did not share their tokens (one per account per renewal is about %d)", st.TokenRequests, accounts*renewals)
	}
	// No rotated refresh token lost, Redis emptied and a proxy killed
	// on the way: once every proxy stopped and the last access tokens
	// expired, a new proxy with an empty state directory asks for a
	// token for each account with the refresh token the cluster kept.
	for _, p := range proxies {
		p.stop()
	}
	time.Sleep(tokenTTL + time.Second)
	fresh := filepath.Join(dir, "state-fresh")
	must(t, os.Mkdir(fresh, 0o700))
	for i := range accounts {
		before := fp.Stats().TokenRequests
		out, err := exec.Command(bin, "token", "--config", filepath.Join(dir, "config.json"), "--accounts", filepath.Join(dir, "accounts.json"),
			"--state-dir", fresh, fmt.Sprintf("acct%d@example.com", i)).CombinedOutput()
		if err != nil {
			t.Errorf("acct%d: no token for a new proxy (a rotated refresh token lost?): %v\n%s", i, err, out)
		}
		if n := fp.Stats().TokenRequests - before; n < 1 {
			t.Errorf("acct%d: the token command made no token request: it proved nothing about the refresh token", i)
		}
	}
	if t.Failed() {
		for i, p := range proxies {
			t.Logf("proxy %d log tail:\n%s", i, tail(p.log.String(), 40))
		}
	}
}

// build compiles the proxy binary.
func build(t *testing.T, dir string) string {
	t.Helper()
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "xoauth2-proxy")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/xoauth2-proxy")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(root)))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func start(t *testing.T, bin, dir string, i int) *proxy {
	t.Helper()
	state := filepath.Join(dir, fmt.Sprint("state", i))
	must(t, os.Mkdir(state, 0o700))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	p := &proxy{addr: addr, done: make(chan struct{}), log: &bytes.Buffer{}}
	p.cmd = exec.Command(bin, "serve", "--config", filepath.Join(dir, "config.json"), "--accounts", filepath.Join(dir, "accounts.json"),
		"--state-dir", state, "--host", "127.0.0.1", "--port", port, "--admin-host", "", "--log-level", "warn")
	p.cmd.Stdout, p.cmd.Stderr = &lockedWriter{w: p.log}, &lockedWriter{w: p.log}
	must(t, p.cmd.Start())
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("proxy %d exited at start:\n%s", i, p.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy %d not listening", i)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *proxy) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *proxy) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.kill()
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func messageID(data []byte) string {
	s := string(data)
	i := strings.Index(s, "Message-ID: <")
	if i < 0 {
		return ""
	}
	s = s[i+len("Message-ID: <"):]
	return s[:strings.IndexByte(s, '>')]
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	must(t, err)
	must(t, os.WriteFile(path, b, 0o600))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
