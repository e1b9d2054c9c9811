package loadgen_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/loadgen"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
)

// provider starts a fake provider that wants STARTTLS before AUTH, with
// one mailbox per email, and returns it with the client TLS config.
func provider(t *testing.T, emails ...string) (*fakeprovider.Provider, *tls.Config) {
	t.Helper()
	srv, roots, _, err := fakeprovider.SelfSignedTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	fp, err := fakeprovider.Start(fakeprovider.Options{TLSConfig: srv, RequireTLSForAuth: true, DiscardBodies: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fp.Close() })
	for _, e := range emails {
		fp.AddAccount(fakeprovider.Account{Email: e, ClientID: "cid", ClientSecret: "sec", RefreshToken: "rt-" + e})
	}
	return fp, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
}

func token(t *testing.T, fp *fakeprovider.Provider, email string) string {
	t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok, err := loadgen.FetchToken(ctx, &http.Client{Transport: tr}, loadgen.TokenRequest{
		URL: fp.TokenURL(), ClientID: "cid", ClientSecret: "sec", RefreshToken: "rt-" + email,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestFetchToken_refusedRefreshToken(t *testing.T) {
	t.Parallel()
	fp, _ := provider(t, "a@example.com")
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	_, err := loadgen.FetchToken(context.Background(), &http.Client{Transport: tr}, loadgen.TokenRequest{
		URL: fp.TokenURL(), ClientID: "cid", ClientSecret: "sec", RefreshToken: "wrong",
	})
	if err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("err = %v, want invalid_grant", err)
	}
}

func TestClient_authXOAUTH2(t *testing.T) {
	t.Parallel()
	fp, tlsCfg := provider(t, "a@example.com")
	tok := token(t, fp, "a@example.com")
	for _, tc := range []struct {
		name, user, token string
		want              int // 0: success
	}{
		{"valid", "a@example.com", tok, 0},
		{"wrong token", "a@example.com", "ya29.not-issued", 535},
		{"token of another user", "b@example.com", tok, 535},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadgen.Dial(context.Background(), fp.SMTPAddr(), 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.StartTLS(tlsCfg); err != nil {
				t.Fatal(err)
			}
			err = c.AuthXOAUTH2(tc.user, tc.token)
			var r reply.Reply
			switch {
			case tc.want == 0 && err != nil:
				t.Fatalf("AuthXOAUTH2: %v", err)
			case tc.want != 0 && (!asReply(err, &r) || r.Code != tc.want):
				t.Fatalf("AuthXOAUTH2 = %v, want a %d reply", err, tc.want)
			}
		})
	}
}

func asReply(err error, r *reply.Reply) bool {
	rr, ok := err.(reply.Reply)
	if ok {
		*r = rr
	}
	return ok
}

// A fleet over STARTTLS and XOAUTH2 sends exactly the capped number of
// messages, all stored by the provider, with a latency for each.
func TestFleet_runsToMessageCap(t *testing.T) {
	t.Parallel()
	emails := []string{"a@example.com", "b@example.com"}
	fp, tlsCfg := provider(t, emails...)
	toks := []string{token(t, fp, emails[0]), token(t, fp, emails[1])}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, noPipe := range []bool{false, true} {
		f, err := loadgen.Open(ctx, loadgen.FleetOptions{
			Addr: fp.SMTPAddr(), Connections: 3, TLS: tlsCfg, NoPipelining: noPipe,
			Login: func(c *loadgen.Client, i int) (string, error) {
				return emails[i%2], c.AuthXOAUTH2(emails[i%2], toks[i%2])
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		before := fp.Stats().Messages
		sum, err := f.Run(ctx, loadgen.Load{Rcpts: []string{"r1@example.net", "r2@example.net"}, Body: []byte("Subject: x\r\n\r\n.dot\r\n"), Messages: 40})
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if sum.OK != 40 || sum.Attempted != 40 || len(sum.Latencies) != 40 {
			t.Errorf("pipelining off=%v: %+v, want 40 accepted with 40 latencies", noPipe, sum)
		}
		if got := fp.Stats().Messages - before; got != 40 {
			t.Errorf("pipelining off=%v: provider stored %d, want 40", noPipe, got)
		}
		if p50, p99 := sum.Percentile(50), sum.Percentile(99); p50 <= 0 || p99 < p50 {
			t.Errorf("percentiles p50 %v p99 %v", p50, p99)
		}
	}
	for _, m := range fp.Messages() {
		if string(m.Data) != "" {
			t.Fatalf("bodies kept with DiscardBodies")
		}
		if m.Size != len("Subject: x\r\n\r\n.dot\r\n") {
			t.Fatalf("size %d: the body was not dot-stuffed and unstuffed faithfully", m.Size)
		}
	}
}

// Run ends promptly when its context ends, however long its duration.
func TestFleet_runStopsOnCancel(t *testing.T) {
	t.Parallel()
	fp, tlsCfg := provider(t, "a@example.com")
	tok := token(t, fp, "a@example.com")
	f, err := loadgen.Open(context.Background(), loadgen.FleetOptions{
		Addr: fp.SMTPAddr(), Connections: 2, TLS: tlsCfg,
		Login: func(c *loadgen.Client, _ int) (string, error) {
			return "a@example.com", c.AuthXOAUTH2("a@example.com", tok)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once messages flow.
		wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer wcancel()
		_ = fp.WaitMessages(wctx, 5)
		cancel()
	}()
	start := time.Now()
	sum, err := f.Run(ctx, loadgen.Load{Body: []byte("x\r\n"), Rcpts: []string{"r@example.net"}, Duration: time.Hour})
	if err == nil {
		t.Fatal("Run returned no error after cancel")
	}
	if el := time.Since(start); el > 15*time.Second {
		t.Fatalf("Run took %v after cancel", el)
	}
	if sum.Attempted < 5 {
		t.Errorf("only %d messages attempted before cancel", sum.Attempted)
	}
}

func TestFleet_openFailsOnBadLogin(t *testing.T) {
	t.Parallel()
	fp, tlsCfg := provider(t, "a@example.com")
	_, err := loadgen.Open(context.Background(), loadgen.FleetOptions{
		Addr: fp.SMTPAddr(), Connections: 2, TLS: tlsCfg,
		Login: func(c *loadgen.Client, i int) (string, error) {
			return "", c.AuthXOAUTH2("a@example.com", fmt.Sprintf("bad-%d", i))
		},
	})
	if err == nil || !strings.Contains(err.Error(), "login") {
		t.Fatalf("Open = %v, want a login error", err)
	}
}
