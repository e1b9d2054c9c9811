package service_test

import (
	"path/filepath"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/service"
)

// TestSeedFilesStartAndRefuseForeignSourceIPs: the old tool's own files
// start the proxy unchanged; their ip_address values are not on this host,
// so with source binding on those accounts refuse to send (451 4.4.0)
// instead of using another address, and nothing is contacted.
func TestSeedFilesStartAndRefuseForeignSourceIPs(t *testing.T) {
	t.Parallel()
	const seed = "../config/testdata/seed"
	for _, tc := range []struct{ cfg, acc, user string }{
		{"config.json", "example_accounts.json", "sender001@gmail.com"},
		{"example_config.json", "example_accounts_with_overrides.json", "sender3@outlook.com"},
	} {
		t.Run(tc.cfg+"+"+tc.acc, func(t *testing.T) {
			t.Parallel()
			svc, err := service.New(service.Options{
				Load: config.LoadOptions{
					ConfigPath: filepath.Join(seed, tc.cfg), AccountsPath: filepath.Join(seed, tc.acc),
					ConfigExplicit: true, SearchDirs: []string{}, StateDir: t.TempDir(), // never write into testdata
				},
				Listen:        "127.0.0.1:0",
				AuthFailDelay: -1,
			})
			if err != nil {
				t.Fatal(err)
			}
			runService(t, svc)
			e := &env{svc: svc, addr: svc.Addr().String()}
			c := e.dial(t)
			// No smtp_password in these files: loopback is trusted.
			c.authPlain(tc.user, "anything", "235")
			c.cmd("MAIL FROM:<"+tc.user+">", "451 4.4.0")
		})
	}
}
