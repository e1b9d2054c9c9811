package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/loadgen"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/redistest"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/service"
)

// TestCluster_twoProxiesShareCapAndBudget: two proxies on one Redis in
// front of one provider, both loaded at once: the provider never sees
// more sessions of the account at once than its cap, and the proxies
// together accept exactly the daily budget, each accepted message
// delivered once. One host without global.cluster is unchanged (every
// other test in this package).
func TestCluster_twoProxiesShareCapAndBudget(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t, redistest.Options{})
	tlsCfg, _, caPEM, err := fakeprovider.SelfSignedTLS("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	fp, err := fakeprovider.Start(fakeprovider.Options{TLSConfig: tlsCfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fp.Close() })
	const capSessions, budget = 2, 40
	fp.AddAccount(fakeprovider.Account{Email: "shared@example.com", ClientID: "cid", ClientSecret: "cs", RefreshToken: "rt"})
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	writeJSON(t, filepath.Join(dir, "accounts.json"), map[string]any{"accounts": []map[string]any{{
		"account_id": "shared", "email": "shared@example.com", "provider": "gmail",
		"client_id": "cid", "client_secret": "cs", "refresh_token": "rt",
		"oauth_token_url": fp.TokenURL(), "oauth_endpoint": fp.SMTPAddr(), "smtp_password": password,
		"connection_settings": map[string]any{"max_connections_per_account": capSessions, "max_messages_per_connection": 3},
		"rate_limiting":       map[string]any{"enabled": true, "messages_per_day": budget},
	}}})
	writeJSON(t, filepath.Join(dir, "config.json"), map[string]any{"global": map[string]any{
		"smtp":    map[string]any{"server_hostname": "proxy.test", "upstream_ca_file": ca},
		"cluster": map[string]any{"redis_url": "redis://" + rs.Addr},
	}})
	var addrs []string
	var svcs []*service.Service
	for i := range 2 {
		st := filepath.Join(dir, fmt.Sprint("state", i))
		if err := os.Mkdir(st, 0o700); err != nil {
			t.Fatal(err)
		}
		svc, err := service.New(service.Options{
			Load: config.LoadOptions{ConfigPath: filepath.Join(dir, "config.json"), AccountsPath: filepath.Join(dir, "accounts.json"),
				ConfigExplicit: true, SearchDirs: []string{}, StateDir: st},
			Listen: "127.0.0.1:0", AuthFailDelay: -1,
			Admin: service.AdminOptions{Listen: "127.0.0.1:0"},
		})
		if err != nil {
			t.Fatal(err)
		}
		runService(t, svc)
		addrs = append(addrs, svc.Addr().String())
		svcs = append(svcs, svc)
	}
	for _, svc := range svcs {
		waitFor(t, "two live proxies", func() bool { return svc.ReadyDetail()["cluster"].(map[string]any)["live_proxies"] == 2 })
	}
	var accepted, refused atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			c, err := loadgen.Dial(ctx, addrs[w%2], time.Minute)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			if err := c.Auth("shared@example.com", password); err != nil {
				t.Error(err)
				return
			}
			for i := range 10 {
				res, err := c.Send("shared@example.com", []string{fmt.Sprintf("r%d-%d@example.net", w, i)}, []byte("Subject: x\r\n\r\nhi\r\n"))
				if err != nil {
					t.Error(err)
					return
				}
				if res.OK() {
					accepted.Add(1)
				} else if refused.Add(1) == 1 {
					t.Logf("first refusal: %+v", res)
				}
			}
		}()
	}
	wg.Wait()
	st := fp.Stats()
	if st.MaxConcurrentSessionsPerUser > capSessions {
		t.Errorf("provider saw %d sessions at once, cap %d", st.MaxConcurrentSessionsPerUser, capSessions)
	}
	if accepted.Load() != budget || st.Messages != budget {
		t.Errorf("accepted %d, delivered %d; want the budget, %d (refused %d)", accepted.Load(), st.Messages, budget, refused.Load())
	}
	// /metrics shows the Redis state and the slots held.
	mresp, err := http.Get("http://" + svcs[0].AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, name := range []string{"cluster_redis_up 1", "cluster_proxies_live 2", "cluster_session_slots_held ",
		"cluster_session_slots_lost_total 0", "cluster_reconciled_messages_total 0"} {
		if !strings.Contains(string(metrics), "\n"+name) {
			t.Errorf("/metrics lacks %q", name)
		}
	}
	// /readyz shows the Redis state.
	resp, err := http.Get("http://" + svcs[0].AdminAddr().String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Cluster struct {
			Redis       string `json:"redis"`
			LiveProxies int    `json:"live_proxies"`
		} `json:"cluster"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Cluster.Redis != "up" || body.Cluster.LiveProxies != 2 {
		t.Errorf("/readyz cluster = %+v, %v", body.Cluster, err)
	}
}
