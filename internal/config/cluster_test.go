package config_test

import (
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
)

func TestCluster_SetURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url, addr, user, pass string
		db                    int
		tls                   bool
		err                   string
	}{
		{url: "redis://10.0.0.9", addr: "10.0.0.9:6379"},
		{url: "redis://h:7000/2", addr: "h:7000", db: 2},
		{url: "rediss://proxy:pw@h:6380", addr: "h:6380", user: "proxy", pass: "pw", tls: true},
		{url: "redis://:pw@[::1]:6379", addr: "[::1]:6379", pass: "pw"},
		{url: "http://h", err: "scheme"},
		{url: "redis:///0", err: "no host"},
		{url: "redis://h/x", err: "database"},
		{url: "redis://u:p%zz@h", err: "not a redis"},
	} {
		var c config.Cluster
		err := c.SetURL(tc.url)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err = %v, want %q", tc.url, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if !c.Enabled || len(c.Addrs) != 1 || c.Addrs[0] != tc.addr || c.Username != tc.user ||
			c.Password.Reveal() != tc.pass || c.DB != tc.db || c.TLS != tc.tls {
			t.Errorf("%s: got %+v", tc.url, c)
		}
	}
}

// FuzzCluster_SetURL: any input is parsed or refused, and an error never
// repeats the password.
func FuzzCluster_SetURL(f *testing.F) {
	for _, s := range []string{"redis://h", "rediss://u:secretpw@h:1/2", "redis://:secretpw@[::1]", "redis://u:secretpw%@h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var c config.Cluster
		err := c.SetURL(s)
		if err == nil {
			return
		}
		if i := strings.Index(s, ":secretpw"); i >= 0 && strings.Contains(err.Error(), "secretpw") {
			t.Fatalf("error %q shows the password", err)
		}
	})
}
