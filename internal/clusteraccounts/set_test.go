package clusteraccounts_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/cluster"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/clusteraccounts"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/redistest"
)

// proxyFiles is one proxy's accounts.json (with one account) and state
// directory.
func proxyFiles(t *testing.T, emails ...string) (accounts, stateDir string) {
	t.Helper()
	dir := t.TempDir()
	var list []map[string]any
	for _, e := range emails {
		list = append(list, record(e))
	}
	b, err := json.Marshal(map[string]any{"accounts": list})
	if err != nil {
		t.Fatal(err)
	}
	accounts = filepath.Join(dir, "accounts.json")
	if err := os.WriteFile(accounts, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return accounts, filepath.Join(dir, "state")
}

func record(email string) map[string]any {
	id := strings.NewReplacer("@", "_", ".", "_", "-", "_").Replace(email)
	return map[string]any{"account_id": id, "email": email, "provider": "gmail", "client_id": "c", "client_secret": "s", "refresh_token": "r"}
}

func openSet(t *testing.T, addr, accounts, stateDir string) *clusteraccounts.Set {
	t.Helper()
	var c config.Cluster
	if err := c.SetURL("redis://" + addr); err != nil {
		t.Fatal(err)
	}
	c.Timeout, c.SessionLease, c.SessionRenew = 2*time.Second, 15*time.Second, 5*time.Second
	cl, err := cluster.Open(t.Context(), c, cluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := clusteraccounts.New(cl, clusteraccounts.Options{Path: accounts, VersionFile: filepath.Join(stateDir, clusteraccounts.VersionFileName)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Join(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

func emails(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := config.ReadAccountsFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range f.Emails() {
		out[e] = true
	}
	return out
}

// TestSet_concurrentEditsOnTwoProxiesAllLand: edits made at once on two
// proxies are committed one over the other, none lost; after a pull both
// files hold all of them. The second proxy's own file was replaced by the
// cluster's at Join (the first proxy imported its file).
func TestSet_concurrentEditsOnTwoProxiesAllLand(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t, redistest.Options{})
	pathA, stateA := proxyFiles(t, "first@example.com")
	pathB, stateB := proxyFiles(t, "only-on-b@example.com")
	a := openSet(t, r.Addr, pathA, stateA)
	b := openSet(t, r.Addr, pathB, stateB)
	if got := emails(t, pathB); !got["first@example.com"] || got["only-on-b@example.com"] {
		t.Fatalf("b's file after Join = %v, want the cluster's (a's import)", got)
	}
	const each = 6
	var wg sync.WaitGroup
	errs := make(chan error, 2*each)
	for i := range each {
		for name, s := range map[string]*clusteraccounts.Set{"a": a, "b": b} {
			wg.Go(func() {
				email := fmt.Sprintf("%s-%d@example.com", name, i)
				errs <- s.Edit(t.Context(), func(f *config.AccountsFile) error {
					rec := config.AccountRecord{}
					raw, _ := json.Marshal(record(email))
					if err := json.Unmarshal(raw, &rec); err != nil {
						return err
					}
					_, err := f.Upsert(&rec, false)
					return err
				})
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []*clusteraccounts.Set{a, b} {
		if _, err := s.Pull(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	for _, path := range []string{pathA, pathB} {
		got := emails(t, path)
		if len(got) != 1+2*each {
			t.Fatalf("%s has %d accounts, want %d: %v", path, len(got), 1+2*each, got)
		}
	}
	if a.Version() != b.Version() || a.Version() != 1+2*each {
		t.Fatalf("versions a=%d b=%d, want %d", a.Version(), b.Version(), 1+2*each)
	}
}

// TestSet_emptiedRedisIsReseeded: after FLUSHALL, the next pull writes
// the proxy's document back at its version, and a proxy that joins then
// gets it, not its own older file.
func TestSet_emptiedRedisIsReseeded(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t, redistest.Options{})
	pathA, stateA := proxyFiles(t, "first@example.com")
	a := openSet(t, r.Addr, pathA, stateA)
	if err := a.Edit(t.Context(), func(f *config.AccountsFile) error { return f.Remove(f.Find("first@example.com")) }); err != nil {
		t.Fatal(err)
	}
	if _, err := redistest.Do(r.Addr, "FLUSHALL"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Pull(t.Context()); err != nil {
		t.Fatal(err)
	}
	pathC, stateC := proxyFiles(t, "first@example.com", "stale@example.com")
	c := openSet(t, r.Addr, pathC, stateC)
	if got := emails(t, pathC); len(got) != 0 {
		t.Fatalf("a proxy joining the re-seeded Redis has %v, want a's (empty) set", got)
	}
	if c.Version() != a.Version() {
		t.Fatalf("versions a=%d c=%d", a.Version(), c.Version())
	}
}
