package service_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/redistest"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/service"
)

// propagation is the promise (issue 12: Account states and the
// account set): an admin change on one proxy takes effect on every proxy
// within 2 s. The account set is polled every 500 ms.
const propagation = 2 * time.Second

// clusterEnv is a proxy of a cluster: the usual env with global.cluster
// pointing at the Redis at addr and the admin API on.
func clusterEnv(t *testing.T, addr string) *env {
	t.Helper()
	return newEnv(t, envOptions{
		admin: service.AdminOptions{Listen: "127.0.0.1:0", Token: newAdminEnvToken(), Version: "test"},
		edit: func(cfg map[string]any, _ []map[string]any) {
			cfg["global"].(map[string]any)["cluster"] = map[string]any{"redis_url": "redis://" + addr}
		},
	})
}

// restart stops e's proxy and starts another on the same files, as a
// restart of the host's service would.
func (e *env) restart(t *testing.T) {
	t.Helper()
	if err := e.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	svc, err := service.New(service.Options{
		Load: config.LoadOptions{
			ConfigPath: filepath.Join(e.dir, "config.json"), AccountsPath: filepath.Join(e.dir, "accounts.json"),
			ConfigExplicit: true, SearchDirs: []string{},
		},
		Listen: "127.0.0.1:0", TLSPort: -1, AuthFailDelay: -1,
		Admin: service.AdminOptions{Listen: "127.0.0.1:0", Token: newAdminEnvToken(), Version: "test"},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.svc, e.stop = svc, runService(t, svc)
	e.addr, e.tlsAddr = svc.Addr().String(), svc.TLSAddr().String()
}

// within polls cond until it holds or d has passed (no sleep decides).
func within(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%s after %v", what, time.Since(start).Round(time.Millisecond))
}

// TestCluster_accountSetIsShared: accounts added, changed, disabled or
// removed through the admin API of either proxy take effect on the other
// within 2 s, and survive the restart of either, also an edit made while
// one was down. Without the shared account set (control) the other proxy
// never sees the change.
func TestCluster_accountSetIsShared(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t, redistest.Options{})
	a, b := clusterEnv(t, r.Addr), clusterEnv(t, r.Addr)
	find := func(e *env, name string) *config.Account {
		if acc := e.svc.Registry().Find(name); acc != nil {
			return acc.Cfg
		}
		return nil
	}
	call := func(e *env, method, path string, body any) {
		t.Helper()
		if code, m, _ := e.call(t, method, path, adminToken, body); code != 200 {
			t.Fatalf("%s %s: %d %v", method, path, code, m)
		}
	}
	add := func(e *env, email string) map[string]any {
		e.fp.AddAccount(fakeprovider.Account{Email: email, ClientID: "cid", ClientSecret: "csecret", RefreshToken: "rt-new"})
		return map[string]any{"email": email, "provider": "gmail", "client_id": "cid", "client_secret": "csecret",
			"refresh_token": "rt-new", "oauth_token_url": e.fp.TokenURL(), "oauth_endpoint": e.fp.SMTPAddr()}
	}
	const added, fromB, whileDown = "added@example.com", "from-b@example.com", "while-down@example.com"

	steps := []struct {
		name   string
		do     func()
		on     *env
		holds  func(e *env) bool
		before bool // the condition must not already hold on the other proxy
	}{
		{"add on a", func() { call(a, "POST", "/admin/accounts", add(a, added)) }, b,
			func(e *env) bool { return find(e, added) != nil }, true},
		{"add on b", func() { call(b, "POST", "/admin/accounts", add(a, fromB)) }, a,
			func(e *env) bool { return find(e, fromB) != nil }, true},
		{"change on b", func() { call(b, "PATCH", "/admin/accounts/"+added, map[string]any{"vmta_name": "vmta-edited"}) }, a,
			func(e *env) bool { c := find(e, added); return c != nil && c.VMTAName == "vmta-edited" }, true},
		{"disable on a", func() { call(a, "POST", "/admin/accounts/"+userA+"/disable", nil) }, b,
			func(e *env) bool { c := find(e, userA); return c != nil && c.Disabled }, true},
		{"remove on b", func() { call(b, "DELETE", "/admin/accounts/"+userPlain, nil) }, a,
			func(e *env) bool { return find(e, userPlain) == nil }, true},
	}
	for _, s := range steps {
		if s.before && s.holds(s.on) {
			t.Fatalf("%s: holds before the change", s.name)
		}
		s.do()
		within(t, propagation, s.name, func() bool { return s.holds(s.on) })
	}

	// Restarts: b restarts and keeps every change; an edit on a while b is
	// down is there when b is back, from its first snapshot on.
	b.restart(t)
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	call(a, "POST", "/admin/accounts", add(a, whileDown))
	b.restart(t)
	a.restart(t)
	for _, s := range steps {
		for _, e := range []*env{a, b} {
			if !s.holds(e) {
				t.Errorf("after the restarts: %s does not hold", s.name)
			}
		}
	}
	if find(b, whileDown) == nil {
		t.Error("an account added while b was down is missing after b's restart")
	}
}

// TestCluster_controlAccountSetNotSharedWithoutRedis: two proxies without
// global.cluster do not see each other's edits (the shared test's
// control: its condition fails without the code under test).
func TestCluster_controlAccountSetNotSharedWithoutRedis(t *testing.T) {
	t.Parallel()
	a, b := newAdminEnv(t), newAdminEnv(t)
	const added = "added@example.com"
	a.fp.AddAccount(fakeprovider.Account{Email: added, ClientID: "cid", ClientSecret: "csecret", RefreshToken: "rt-new"})
	body := map[string]any{"email": added, "provider": "gmail", "client_id": "cid", "client_secret": "csecret",
		"refresh_token": "rt-new", "oauth_token_url": a.fp.TokenURL(), "oauth_endpoint": a.fp.SMTPAddr()}
	if code, m, _ := a.call(t, "POST", "/admin/accounts", adminToken, body); code != 200 {
		t.Fatalf("add: %d %v", code, m)
	}
	// Reloading b reads only b's own file.
	if code, m, _ := b.call(t, "POST", "/admin/reload", adminToken, nil); code != 200 {
		t.Fatalf("reload: %d %v", code, m)
	}
	if b.svc.Registry().Find(added) != nil {
		t.Fatal("without a cluster, b sees a's account")
	}
}

// TestCluster_oneTokenRequestForTwoProxies: both proxies of a cluster
// need alice's token; the provider sees one request. Her needs_consent
// verdict, reached on one, is the other's without a request.
func TestCluster_oneTokenRequestForTwoProxies(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t, redistest.Options{})
	a, b := clusterEnv(t, r.Addr), clusterEnv(t, r.Addr)
	// Both now serve a's accounts (b took the cluster's account set at
	// start), so a's provider is the one both ask.
	tokA, err := a.svc.Registry().Find(userA).Tokens().Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	tokB, err := b.svc.Registry().Find(userA).Tokens().Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if tokA.Access != tokB.Access {
		t.Fatal("the proxies hold different access tokens for one account")
	}
	before := a.fp.Stats().TokenRequests
	if before != 1 {
		t.Fatalf("token requests = %d, want 1", before)
	}

	a.fp.Revoke(userNoPW)
	if _, err := a.svc.Registry().Find(userNoPW).Tokens().Token(t.Context()); err == nil {
		t.Fatal("revoked account got a token")
	}
	if _, err := b.svc.Registry().Find(userNoPW).Tokens().Token(t.Context()); err == nil {
		t.Fatal("revoked account got a token on b")
	}
	if got := a.fp.Stats().TokenRequests - before; got != 1 {
		t.Fatalf("token requests for the revoked account = %d, want 1 (b takes a's verdict)", got)
	}
	if st := b.svc.Registry().Find(userNoPW).Tokens().Status(); st.State != "needs_consent" {
		t.Fatalf("b's state = %s", st.State)
	}

	// The grant is fixed at the provider and an operator resets the
	// account on a: b lifts its verdict within 2 s and takes a's token
	// without a request of its own.
	a.fp.AddAccount(fakeprovider.Account{Email: userNoPW, ClientID: "cid", ClientSecret: "csecret", RefreshToken: "rt-nopw"})
	if code, m, _ := a.call(t, "POST", "/admin/accounts/"+userNoPW+"/refresh", adminToken, nil); code != 200 {
		t.Fatalf("refresh on a: %d %v", code, m)
	}
	afterReset := a.fp.Stats().TokenRequests
	srcB := b.svc.Registry().Find(userNoPW).Tokens()
	within(t, propagation, "verdict lifted on b", func() bool { return srcB.Status().State == "ok" })
	tokA, err = a.svc.Registry().Find(userNoPW).Tokens().Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if tokB, err = srcB.Token(t.Context()); err != nil || tokB.Access != tokA.Access {
		t.Fatalf("b after the lift: %v (same token as a: %v)", err, tokB.Access == tokA.Access)
	}
	if got := a.fp.Stats().TokenRequests - afterReset; got != 0 {
		t.Fatalf("b made %d token requests after the lift, want 0", got)
	}
}

// TestCluster_accountSetWhenRedisIsDownOrEmpty: while Redis is down an
// admin edit is refused and changes nothing; Redis back empty is re-seeded
// from the proxies' files at their version, and edits propagate again.
func TestCluster_accountSetWhenRedisIsDownOrEmpty(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t, redistest.Options{})
	a, b := clusterEnv(t, r.Addr), clusterEnv(t, r.Addr)
	version, err := redistest.Do(r.Addr, "HGET", "xp:accounts", "v")
	if err != nil {
		t.Fatal(err)
	}
	add := func(email string) (int, map[string]any) {
		a.fp.AddAccount(fakeprovider.Account{Email: email, ClientID: "cid", ClientSecret: "csecret", RefreshToken: "rt-new"})
		code, m, _ := a.call(t, "POST", "/admin/accounts", adminToken, map[string]any{"email": email, "provider": "gmail",
			"client_id": "cid", "client_secret": "csecret", "refresh_token": "rt-new",
			"oauth_token_url": a.fp.TokenURL(), "oauth_endpoint": a.fp.SMTPAddr()})
		return code, m
	}
	before, err := os.ReadFile(filepath.Join(a.dir, "accounts.json"))
	if err != nil {
		t.Fatal(err)
	}

	r.Stop()
	if code, m := add("refused@example.com"); code == 200 {
		t.Fatalf("edit with Redis down: %d %v", code, m)
	}
	after, err := os.ReadFile(filepath.Join(a.dir, "accounts.json"))
	if err != nil {
		t.Fatal(err)
	}
	if a.svc.Registry().Find("refused@example.com") != nil || string(after) != string(before) {
		t.Fatal("a refused edit changed the account set")
	}

	r.Restart() // empty: no persistence
	within(t, 30*time.Second, "account set re-seeded", func() bool {
		v, err := redistest.Do(r.Addr, "HGET", "xp:accounts", "v")
		return err == nil && v == version
	})
	if code, m := add("after@example.com"); code != 200 {
		t.Fatalf("edit after Redis is back: %d %v", code, m)
	}
	within(t, propagation, "edit after the re-seed on b", func() bool { return b.svc.Registry().Find("after@example.com") != nil })
}
