package cluster_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/cluster"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/redistest"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// standalone is the cluster config of one server at addr.
func standalone(t testing.TB, addr string) config.Cluster {
	t.Helper()
	var c config.Cluster
	if err := c.SetURL("redis://" + addr); err != nil {
		t.Fatal(err)
	}
	c.Timeout, c.SessionLease, c.SessionRenew = 500*time.Millisecond, 15*time.Second, 5*time.Second
	return c
}

func open(t testing.TB, c config.Cluster, node string) *cluster.Client {
	t.Helper()
	cl, err := cluster.Open(t.Context(), c, cluster.Options{Node: node})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func TestKey_oneHashTagPerAccount(t *testing.T) {
	t.Parallel()
	if got := cluster.Key("acct-1", "slots"); got != "xp:{acct-1}:slots" {
		t.Fatalf("Key = %q", got)
	}
}

func TestOpen_checksTheServer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		opts     redistest.Options
		wantErr  error
		wantWarn string
	}{
		{"no persistence warns", redistest.Options{}, nil, "persists nothing"},
		{"AOF is quiet", redistest.Options{AppendOnly: true}, nil, ""},
		{"evicting policy refuses", redistest.Options{Args: []string{"--maxmemory-policy", "allkeys-lru"}}, cluster.ErrEvicting, ""},
		{"CONFIG refused warns", redistest.Options{Args: []string{"--rename-command", "CONFIG", ""}}, nil, "could not check"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := redistest.Start(t, tc.opts)
			var logs bytes.Buffer
			cl, err := cluster.Open(t.Context(), standalone(t, s.Addr), cluster.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if cl != nil {
				defer cl.Close()
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Open err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantWarn == "" && strings.Contains(logs.String(), "WARN") {
				t.Errorf("unexpected warning: %s", logs.String())
			}
			if tc.wantWarn != "" && !strings.Contains(logs.String(), tc.wantWarn) {
				t.Errorf("log lacks %q:\n%s", tc.wantWarn, logs.String())
			}
		})
	}
}

func TestOpen_aclUserAndPassword(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{Args: []string{"--user", "proxy", "on", ">s3cret", "~xp:*", "&*", "+@all", "--user", "default", "off"}})
	c := standalone(t, s.Addr)
	if err := c.SetURL("redis://proxy:s3cret@" + s.Addr); err != nil {
		t.Fatal(err)
	}
	cl := open(t, c, "a")
	if !cl.Up() {
		t.Fatal("not up after Open")
	}
	c.Password = secret.New("wrong")
	if _, err := cluster.Open(t.Context(), c, cluster.Options{}); err == nil {
		t.Fatal("Open with a wrong password succeeded")
	} else if strings.Contains(err.Error(), "wrong") {
		t.Fatalf("error shows the password: %v", err)
	}
}

func TestHeartbeat_countsLiveProxies(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{})
	c := standalone(t, s.Addr)
	a := open(t, c, "a")
	b, err := cluster.Open(t.Context(), c, cluster.Options{Node: "b"})
	if err != nil {
		t.Fatal(err)
	}
	// Proxies lists them by name (Node adds a random suffix per start)
	// once each has reported its first heartbeat.
	listed := func() string {
		ps, err := a.Proxies(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range ps {
			if p.LastSeen.IsZero() {
				return ""
			}
			name, _, _ := strings.Cut(p.Node, "#")
			names = append(names, name)
		}
		return strings.Join(names, " ")
	}
	waitFor(t, "two live proxies", func() bool { return a.Live() == 2 && listed() == "a b" })
	b.Close() // a clean stop leaves the live set at once
	waitFor(t, "one live proxy", func() bool { return a.Live() == 1 && listed() == "a" })
}

func TestHeartbeat_redisDownAndBack(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{})
	a := open(t, standalone(t, s.Addr), "a")
	s.Stop()
	waitFor(t, "down", func() bool { return !a.Up() })
	s.Restart()
	waitFor(t, "up again", func() bool { return a.Up() })
}

// waitFor polls cond for up to a minute (the machine is slow; no timing
// is asserted).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
