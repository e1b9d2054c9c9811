package relay_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/loadgen"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/service"
)

// startProxy runs the whole proxy in-process in front of a plain fake
// provider with the given accounts, and returns its address.
func startProxy(b *testing.B, accounts int) string {
	b.Helper()
	fp, err := fakeprovider.Start(fakeprovider.Options{DiscardBodies: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { fp.Close() })
	var list []string
	for i := range accounts {
		email := fmt.Sprintf("sender%d@bench.example", i)
		rt := fmt.Sprintf("refresh-%d", i)
		fp.AddAccount(fakeprovider.Account{Email: email, ClientID: "c", ClientSecret: "s", RefreshToken: rt})
		list = append(list, fmt.Sprintf(`{"account_id":"a%d","email":%q,"provider":"gmail","client_id":"c",`+
			`"client_secret":"s","refresh_token":%q,"oauth_token_url":%q,"oauth_endpoint":%q,"smtp_tls":"none"}`,
			i, email, rt, fp.TokenURL(), fp.SMTPAddr()))
	}
	dir := b.TempDir()
	cfg, accts := filepath.Join(dir, "config.json"), filepath.Join(dir, "accounts.json")
	// Budgets on, every window checked, limits out of reach: gmail's
	// 2,000 messages a day per account would end the benchmark, and the
	// bookkeeping is part of the cost (a limit of 0 skips its window).
	budgets := `{"providers": {"gmail": {"rate_limiting": {"enabled": true, "messages_per_minute": 1000000000, ` +
		`"messages_per_hour": 1000000000, "messages_per_day": 1000000000, "recipients_per_day": 1000000000}}}}`
	if err := os.WriteFile(cfg, []byte(budgets), 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(accts, []byte("["+strings.Join(list, ",")+"]"), 0o600); err != nil {
		b.Fatal(err)
	}
	svc, err := service.New(service.Options{
		Load:   config.LoadOptions{ConfigPath: cfg, AccountsPath: accts, ConfigExplicit: true, SearchDirs: []string{}},
		Listen: "127.0.0.1:0",
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- svc.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-errc })
	return svc.Addr().String()
}

// client connects and logs in as the account (no smtp_password: from
// loopback any password does).
func client(addr string, account int) (*loadgen.Client, string, error) {
	c, err := loadgen.Dial(context.Background(), addr, 30*time.Second)
	if err != nil {
		return nil, "", err
	}
	from := fmt.Sprintf("sender%d@bench.example", account)
	if err := c.Auth(from, "any"); err != nil {
		c.Close()
		return nil, "", err
	}
	return c, from, nil
}

// BenchmarkRelay_message sends 2 KiB messages through the whole proxy
// (smtpd, relay, pool, upstream client) to an in-process fake provider:
// ns/op is one message's cost in all three together, so read a CPU
// profile of it by function (go test -run '^$' -bench Relay -cpuprofile
// cpu.out ./internal/relay; go tool pprof -top cpu.out).
func BenchmarkRelay_message(b *testing.B) {
	line := "The quick brown fox jumps over the lazy dog. 0123456789 ABCDEFGHIJKLMNOPQRS\r\n"
	body := []byte(strings.Repeat(line, 2048/len(line)))
	rcpts := []string{"rcpt1@example.net"}

	b.Run("sequential", func(b *testing.B) {
		addr := startProxy(b, 1)
		c, from, err := client(addr, 0)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Quit()
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if r, err := c.Send(from, rcpts, body); err != nil || !r.OK() {
				b.Fatal(r, err)
			}
		}
	})
	// 50 client connections over 10 accounts, as in the load benchmark.
	b.Run("parallel", func(b *testing.B) {
		addr := startProxy(b, 10)
		var next atomic.Int64
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		b.SetParallelism(25) // × GOMAXPROCS (2) = 50 connections
		b.RunParallel(func(pb *testing.PB) {
			c, from, err := client(addr, int(next.Add(1)%10))
			if err != nil {
				b.Error(err)
				return
			}
			defer c.Quit()
			for pb.Next() {
				if r, err := c.Send(from, rcpts, body); err != nil || !r.OK() {
					b.Error(r, err)
					return
				}
			}
		})
	})
}
