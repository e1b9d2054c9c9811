package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/service"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/tokenstore"
)

// BenchmarkStartup10k measures a restart of a 10,000-account proxy, from
// nothing to a listening socket: config.json and accounts.json loaded and
// validated, the token state file (an access token for every account)
// loaded, 10,000 token sources and pools built, the listener open. The
// setup runs the proxy once against a fake provider with
// "token_prewarm": "all" to write that state file; the measured starts
// make no token request (the fake would count them).
func BenchmarkStartup10k(b *testing.B) {
	const n = 10_000
	fp, err := fakeprovider.Start(fakeprovider.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer fp.Close()
	dir := b.TempDir()
	accts := make([]map[string]any, n)
	for i := range accts {
		email := fmt.Sprintf("sender%05d@example.com", i)
		fp.AddAccount(fakeprovider.Account{Email: email, ClientID: "cid", ClientSecret: "cs", RefreshToken: fmt.Sprint("rt-", i)})
		accts[i] = map[string]any{
			"account_id": fmt.Sprint("acct_", i), "email": email, "provider": "gmail",
			"client_id": "cid", "client_secret": "cs", "refresh_token": fmt.Sprint("rt-", i),
			"oauth_token_url": fp.TokenURL(), "oauth_endpoint": fp.SMTPAddr(),
		}
	}
	benchJSON(b, filepath.Join(dir, "accounts.json"), map[string]any{"accounts": accts})
	writeConfig := func(prewarm string) {
		benchJSON(b, filepath.Join(dir, "config.json"), map[string]any{
			"global": map[string]any{"oauth2": map[string]any{"token_prewarm": prewarm, "num_token_fetching_workers": 50}},
		})
	}
	opts := service.Options{
		Load: config.LoadOptions{
			ConfigPath: filepath.Join(dir, "config.json"), AccountsPath: filepath.Join(dir, "accounts.json"),
			ConfigExplicit: true, SearchDirs: []string{},
		},
		Listen: "127.0.0.1:0",
	}

	// Setup: one run that fetches every token and writes the state file.
	writeConfig("all")
	svc, err := service.New(opts)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	for deadline := time.Now().Add(2 * time.Minute); fp.Stats().TokenRefreshes < n; {
		if time.Now().After(deadline) {
			b.Fatalf("pre-warm fetched %d of %d tokens", fp.Stats().TokenRefreshes, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	st, err := tokenstore.Open(tokenstore.Options{Dir: dir})
	if err != nil || st.Len() != n {
		b.Fatalf("state file: %v, %d entries", err, st.Len())
	}
	writeConfig("recent")
	requests := fp.Stats().TokenRequests

	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		svc, err := service.New(opts)
		if err != nil {
			b.Fatal(err)
		}
		if c, err := net.Dial("tcp", svc.Addr().String()); err != nil { // listening
			b.Fatal(err)
		} else {
			c.Close()
		}
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms-to-listen")
		b.StopTimer()
		// The heap the started proxy holds, by account (issue 17, target
		// 7: 100,000 accounts within 500 MB).
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapInuse)/n, "heap-bytes/account")
		runtime.KeepAlive(svc)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := svc.Run(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	if got := fp.Stats().TokenRequests - requests; got != 0 {
		b.Fatalf("restarts made %d token requests, want 0", got)
	}
	if fi, err := os.Stat(filepath.Join(dir, tokenstore.DefaultFileName)); err == nil {
		b.ReportMetric(float64(fi.Size())/n, "state-bytes/account")
	}
}

func benchJSON(b *testing.B, path string, v any) {
	b.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		b.Fatal(err)
	}
}
