package config_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
)

func TestLoad_seedFilesLoadUnchanged(t *testing.T) {
	t.Parallel()
	for _, cfg := range []string{"config.json", "example_config.json"} {
		for _, acc := range []string{"example_accounts.json", "example_accounts_with_overrides.json"} {
			t.Run(cfg+"+"+acc, func(t *testing.T) {
				t.Parallel()
				s, ws, err := config.Load(config.LoadOptions{
					ConfigPath:   filepath.Join("testdata", "seed", cfg),
					AccountsPath: filepath.Join("testdata", "seed", acc),
					SearchDirs:   []string{},
				})
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if u := unknownKeys(ws); len(u) > 0 {
					t.Errorf("old keys reported as unknown:\n%s", strings.Join(u, "\n"))
				}
				if len(s.Accounts) != 4 {
					t.Errorf("got %d accounts, want 4", len(s.Accounts))
				}
				for _, a := range s.Accounts {
					if !a.IPAddress.IsValid() || a.TokenURL == "" || a.SMTPAddr == "" {
						t.Errorf("account %v not fully resolved: %+v", a, a)
					}
				}
			})
		}
	}
}

func TestLoad_seedOverridesApplyFieldByField(t *testing.T) {
	t.Parallel()
	s, _, err := config.Load(config.LoadOptions{
		ConfigPath:   "testdata/seed/config.json",
		AccountsPath: "testdata/seed/example_accounts_with_overrides.json",
		SearchDirs:   []string{},
	})
	if err != nil {
		t.Fatal(err)
	}
	two := account(t, s, "2")
	want := config.Pool{
		MaxConnectionsPerAccount: 60, MaxMessagesPerConnection: 80,
		ConnectionMaxAge: 900 * time.Second, ConnectionIdleTimeout: 30 * time.Second, // idle from the gmail block
	}
	if two.Pool != want {
		t.Errorf("account 2 pool = %+v, want %+v", two.Pool, want)
	}
	if two.RateLimiting.MessagesPerHour != 15000 || two.RateLimiting.MessagesPerMinutePerConnection != 40 {
		t.Errorf("account 2 rate limiting = %+v", two.RateLimiting)
	}
	four := account(t, s, "4")
	if four.Pool.ConnectionIdleTimeout != 180*time.Second || four.Pool.MaxConnectionsPerAccount != 80 {
		t.Errorf("account 4 pool = %+v", four.Pool)
	}
	if four.Retry.MaxAttempts != 3 || four.Retry.BackoffFactor != 1.5 || four.Retry.MaxDelay != 20*time.Second || !four.Retry.Jitter {
		t.Errorf("account 4 retry = %+v (jitter should come from the gmail block)", four.Retry)
	}
	three := account(t, s, "3")
	if three.Provider != "outlook" || !three.ClientSecret.Empty() || three.TokenURL != config.OutlookTokenURL {
		t.Errorf("account 3 = %+v", three)
	}
	one := account(t, s, "1")
	if one.Pool != s.Providers["gmail"].Pool || one.Pool.MaxConnectionsPerAccount != 50 {
		t.Errorf("account 1 pool = %+v, want the gmail block's", one.Pool)
	}
}

func TestLoad_seedConfigOldLayout(t *testing.T) {
	t.Parallel()
	s, ws, err := config.Load(config.LoadOptions{
		ConfigPath:   "testdata/seed/config.json",
		AccountsPath: "testdata/seed/example_accounts.json",
		SearchDirs:   []string{},
	})
	if err != nil {
		t.Fatal(err)
	}
	g := s.Global
	if g.Concurrency.BackpressureQueueSize != 10000 || g.Timeouts.OAuth2 != 10*time.Second {
		t.Errorf("flat global keys not read: %+v %+v", g.Concurrency, g.Timeouts)
	}
	if g.HTTPPool.TotalConnections != 5000 {
		t.Errorf("http_pool = %+v", g.HTTPPool)
	}
	if _, ok := findWarning(ws, "providers.outlook.connection_pool.max_connections_per_account", "Microsoft"); !ok {
		t.Errorf("no warning for an outlook pool of 50; got %v", ws)
	}
	if o := s.Providers["outlook"]; o.SMTPAddr != "smtp.office365.com:587" || o.MaxConcurrentMessages != 150 || o.Pool.ConnectionMaxAge != 240*time.Second {
		t.Errorf("outlook block = %+v", o)
	}
}

func TestLoad_seedConfigNestedLayout(t *testing.T) {
	t.Parallel()
	s, _, err := config.Load(config.LoadOptions{
		ConfigPath:   "testdata/seed/example_config.json",
		AccountsPath: "testdata/seed/example_accounts.json",
		SearchDirs:   []string{},
	})
	if err != nil {
		t.Fatal(err)
	}
	g := s.Global
	if g.Concurrency.GlobalConcurrencyLimit != 100 || g.Timeouts.SMTP != 30*time.Second || g.Timeouts.ConnectionAcquire != 5*time.Second {
		t.Errorf("global = %+v", g)
	}
	gm := s.Providers["gmail"]
	if gm.MaxConcurrentMessages != 15 || gm.RateLimiting.BurstSize != 50 || gm.SMTPAddr != "smtp.gmail.com:587" {
		t.Errorf("gmail block = %+v", gm)
	}
	if a := account(t, s, "gmail_account_001"); a.MaxConcurrentMessages != 10 || a.MaxMessagesPerHour != 10000 {
		t.Errorf("account limits = %d, %d", a.MaxConcurrentMessages, a.MaxMessagesPerHour)
	}
}

func TestLoad_configHoldingAccountsIsUsedAsAccountsFile(t *testing.T) {
	t.Parallel()
	arr := accountsJSON(t, gmailRecord("g1", "a@example.com"))
	tests := []struct {
		name string
		body string
	}{
		{"array", arr},
		{"object", `{"_comment": "x", "accounts": ` + arr + `}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := writeDir(t, map[string]string{"accounts.json": tc.body})
			path := filepath.Join(dir, "accounts.json")
			s, ws, err := config.Load(config.LoadOptions{
				ConfigPath: path, ConfigExplicit: true,
				AccountsPath: filepath.Join(dir, "missing.json"), SearchDirs: []string{},
			})
			if err != nil {
				t.Fatal(err)
			}
			if s.ConfigPath != "" || s.AccountsPath != path || len(s.Accounts) != 1 {
				t.Errorf("paths %q %q, %d accounts", s.ConfigPath, s.AccountsPath, len(s.Accounts))
			}
			if _, ok := findWarning(ws, "", "config file holds accounts"); !ok {
				t.Errorf("no warning; got %v", ws)
			}
			if s.Providers["gmail"].Pool.MaxConnectionsPerAccount != 10 {
				t.Errorf("not built-in provider defaults: %+v", s.Providers["gmail"])
			}
		})
	}
}

func TestLoad_discovery(t *testing.T) {
	t.Parallel()
	acc := accountsJSON(t, gmailRecord("g1", "a@example.com"))
	empty := t.TempDir()
	first := writeDir(t, map[string]string{"accounts.json": acc})
	second := writeDir(t, map[string]string{"config.json": `{}`, "accounts.json": acc})
	missing := filepath.Join(t.TempDir(), "nowhere")

	s, _, err := config.Load(config.LoadOptions{
		ConfigPath:   filepath.Join(missing, "config.json"),
		AccountsPath: filepath.Join(missing, "accounts.json"),
		SearchDirs:   []string{empty, first, second},
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(first, "accounts.json"); s.AccountsPath != want {
		t.Errorf("accounts from %q, want the first directory that has it, %q", s.AccountsPath, want)
	}
	if want := filepath.Join(second, "config.json"); s.ConfigPath != want {
		t.Errorf("config from %q, want %q", s.ConfigPath, want)
	}
}

func TestLoad_missingFiles(t *testing.T) {
	t.Parallel()
	acc := accountsJSON(t, gmailRecord("g1", "a@example.com"))
	onlyAccounts := writeDir(t, map[string]string{"accounts.json": acc})
	onlyConfig := writeDir(t, map[string]string{"config.json": `{}`})

	t.Run("config absent means defaults", func(t *testing.T) {
		t.Parallel()
		s, _, err := loadDir(t, onlyAccounts)
		if err != nil || s.ConfigPath != "" || s.Global.SMTP.ServerHostname != "xoauth2-proxy" {
			t.Fatalf("got %+v, %v", s, err)
		}
	})
	t.Run("explicit config absent is an error", func(t *testing.T) {
		t.Parallel()
		_, _, err := config.Load(config.LoadOptions{
			ConfigPath: filepath.Join(onlyAccounts, "config.json"), ConfigExplicit: true,
			AccountsPath: filepath.Join(onlyAccounts, "accounts.json"), SearchDirs: []string{},
		})
		if err == nil || !strings.Contains(err.Error(), "config.json: not found") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("accounts absent is an error", func(t *testing.T) {
		t.Parallel()
		_, _, err := loadDir(t, onlyConfig)
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "accounts.json: not found") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("unreadable accounts is an error, not empty", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "accounts.json"), 0o700); err != nil {
			t.Fatal(err)
		}
		s, _, err := loadDir(t, dir)
		if err == nil || s != nil || !strings.Contains(err.Error(), "accounts.json: cannot read") {
			t.Fatalf("got %v, %v", s, err)
		}
	})
}

func TestLoad_examplesLoad(t *testing.T) {
	t.Parallel()
	s, ws, err := config.Load(config.LoadOptions{
		ConfigPath:   "../../examples/config.json",
		AccountsPath: "../../examples/accounts.json",
		SearchDirs:   []string{},
	})
	if err != nil {
		t.Fatal(err)
	}
	if u := unknownKeys(ws); len(u) > 0 {
		t.Errorf("unknown keys in the examples:\n%s", strings.Join(u, "\n"))
	}
	hashed := 0
	for _, a := range s.Accounts {
		if a.PasswordHashed {
			hashed++
		}
	}
	if len(s.Accounts) != 3 || hashed != 1 {
		t.Errorf("%d accounts, %d hashed passwords; want 3 and 1", len(s.Accounts), hashed)
	}
}

func TestSnapshot_Summary(t *testing.T) {
	t.Parallel()
	dir := writeDir(t, map[string]string{"accounts.json": accountsJSON(t,
		gmailRecord("g1", "a@example.com").with("client_secret", "PLANTED-SECRET").with("smtp_password", "PLANTED-PASSWORD"),
		gmailRecord("g2", "b@example.com").with("smtp_password", testHash),
		outlookRecord("o1", "c@example.com").with("refresh_token", "PLANTED-TOKEN"),
	)})
	s, _, err := loadDir(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	sum := s.Summary()
	for _, want := range []string{"config: built-in defaults", "3 (gmail 2, outlook 1)", "trusted networks only): 1", "plain-text smtp_password: 1"} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
	for _, secret := range []string{"PLANTED", testHash} {
		if strings.Contains(sum, secret) {
			t.Errorf("summary leaks %q:\n%s", secret, sum)
		}
	}
}
