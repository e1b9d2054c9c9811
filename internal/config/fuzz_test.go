package config_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
)

// FuzzLoadAccounts feeds arbitrary bytes to the accounts parser: it must
// never panic, every problem must be a *FieldError about the file, and an
// accepted file must yield complete accounts.
func FuzzLoadAccounts(f *testing.F) {
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"accounts": [{"account_id": "g1", "email": "a@b", "provider": "gmail", "client_id": "c",
		"client_secret": "s", "refresh_token": "r", "connection_settings": {"max_connections_per_account": 2.0}}]`))
	f.Add([]byte(`[{"account_id": 1, "email": "a@b", "provider": "x", "client_id": "c", "refresh_token": "r",
		"oauth_endpoint": "[::1]:25", "smtp_tls": "none", "oauth_token_url": "http://localhost/t",
		"smtp_password": "$2y$04$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234"}]`))
	f.Add([]byte(`[{"email": "a@b@c", "max_concurrent_messages": -1e400, "retry": {"max_delay_seconds": 1e20}}, null, 3]`))
	f.Add([]byte("\xef\xbb\xbf[{\"ip_address\": \"fe80::1%eth0\"}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		accounts, _, err := config.ParseAccounts(data)
		if err != nil {
			var j interface{ Unwrap() []error }
			if !errors.As(err, &j) {
				t.Fatalf("error is not a joined list: %v", err)
			}
			for _, e := range j.Unwrap() {
				fe, ok := e.(*config.FieldError)
				if !ok || fe.File != "fuzz.json" || fe.Message == "" {
					t.Fatalf("problem %#v is not a *FieldError about fuzz.json", e)
				}
			}
			return
		}
		for _, a := range accounts {
			if a.ID == "" || strings.Count(a.Email, "@") != 1 || a.TokenURL == "" || a.SMTPAddr == "" ||
				a.RefreshToken.Empty() || a.MaxConcurrentMessages < 1 || a.Pool.MaxConnectionsPerAccount < 1 {
				t.Fatalf("accepted an incomplete account: %+v", a)
			}
		}
	})
}

// fuzzConfigDir is where the fuzzed config.json pretends to live. It does
// not exist, so relative file names in the input fail to load the same way
// every time.
const fuzzConfigDir = "/nonexistent-xoauth2-proxy-fuzz"

// FuzzLoadConfig feeds arbitrary bytes to the config.json parser (global,
// listener and provider blocks): it must never panic, every problem must be
// a *FieldError about the file, and an accepted file must yield settings
// that keep the documented bounds, be the same on every parse, and not
// change when applied a second time on top of themselves (each key sets a
// value; nothing accumulates).
func FuzzLoadConfig(f *testing.F) {
	// testdata/seed/config.json without its comments: the fuzzer spends
	// long minimizing anything interesting found from a big seed.
	f.Add([]byte(`{"global":{"backpressure_queue_size":10000,"oauth2_timeout":10,"http_pool":{"total_connections":5000,
		"connections_per_host":100,"dns_cache_ttl_seconds":300,"connect_timeout_seconds":5},"smtp":{"use_source_ip_binding":true,
		"validate_source_ip":true,"use_ipv6":false}},"powermta_relay":{"max_workers":400,"num_token_fetching_workers":25},
		"providers":{"gmail":{"max_concurrent_messages":200,"connection_pool":{"max_connections_per_account":50,
		"max_messages_per_connection":200,"connection_max_age_seconds":300,"connection_idle_timeout_seconds":30},
		"retry":{"max_attempts":2,"backoff_factor":2.0,"max_delay_seconds":30,"jitter_enabled":true},
		"circuit_breaker":{"enabled":true,"failure_threshold":5,"recovery_timeout_seconds":60}}}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"global": {"smtp": {"trusted_networks": ["10.0.0.0/8", "::1", "fe80::1%eth0"], "proxy_protocol": true,
		"proxy_protocol_networks": ["192.0.2.0/24"], "max_line_length": 998, "max_command_line_length": 512,
		"tls_cert_file": "cert.pem", "tls_port": 465, "upstream_ca_file": "ca.pem"},
		"timeouts": {"smtp_timeout": 0.5, "client_data_timeout": 1e9, "oauth2_timeout": 0}, "oauth2": {"token_prewarm": "ALL",
		"state_dir": "state"}}, "powermta_relay": {"num_token_refresh_workers": 2.0}}`))
	f.Add([]byte(`{"providers": {"gmail": {"smtp_endpoint": "localhost:25", "smtp_tls": "none", "auth_mechanism": "oauthbearer",
		"connection_pool": {"max_connections_per_account": 1, "connection_max_age_seconds": 1e-3},
		"rate_limiting": {"enabled": false, "cooldowns": {"rate_seconds": 0}}, "retry": {"backoff_factor": 1e308}},
		"outlook": {"connection_pool": {"max_connections_per_account": 9}}, "default": null, "other": {}}}`))
	f.Add([]byte(`{"global": {"smtp": {"max_message_size": 1e400, "max_recipients": -1}}, "_x": [1, {"y": null}]}`))
	f.Add([]byte(`[{"account_id": "a"}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if mentionsOutsideFile(data) {
			return // names a file outside the config directory; reading /dev/zero would never end
		}
		g, provs := config.Defaults()
		_, err := config.ApplyConfig(data, fuzzConfigDir, &g, provs)
		if err != nil {
			var j interface{ Unwrap() []error }
			if !errors.As(err, &j) {
				t.Fatalf("error is not a joined list: %v", err)
			}
			for _, e := range j.Unwrap() {
				fe, ok := e.(*config.FieldError)
				if !ok || fe.File != fuzzConfigDir+"/config.json" || fe.Message == "" {
					t.Fatalf("problem %#v is not a *FieldError about the config file", e)
				}
			}
			return
		}
		checkConfigBounds(t, g, provs)

		g2, provs2 := config.Defaults()
		if _, err := config.ApplyConfig(data, fuzzConfigDir, &g2, provs2); err != nil {
			t.Fatalf("accepted once, refused the second time: %v", err)
		}
		if !reflect.DeepEqual(g, g2) || !reflect.DeepEqual(provs, provs2) {
			t.Fatalf("two parses differ:\n%+v\n%+v", g, g2)
		}
		if _, err := config.ApplyConfig(data, fuzzConfigDir, &g2, provs2); err != nil {
			t.Fatalf("refused when applied on top of its own result: %v", err)
		}
		if !reflect.DeepEqual(g, g2) || !reflect.DeepEqual(provs, provs2) {
			t.Fatalf("applying the file twice changes the result:\n%+v\n%+v", g, g2)
		}
	})
}

// mentionsOutsideFile reports whether some string in the JSON document,
// taken as a file name relative to fuzzConfigDir, lies outside it. The
// parser reads the files config.json names (upstream_ca_file,
// tls_cert_file); the fuzzer must not make it read devices or the tree.
func mentionsOutsideFile(data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		s, ok := tok.(string)
		if !ok {
			continue
		}
		p := s
		if !filepath.IsAbs(p) {
			p = filepath.Join(fuzzConfigDir, p)
		}
		if p = filepath.Clean(p); p != fuzzConfigDir && !strings.HasPrefix(p, fuzzConfigDir+"/") {
			return true
		}
	}
}

// checkConfigBounds checks what validation promises about accepted
// settings (the field comments in snapshot.go and listener.go).
func checkConfigBounds(t *testing.T, g config.Global, provs map[string]config.Provider) {
	t.Helper()
	positive := map[string]time.Duration{
		"timeouts.oauth2_timeout":             g.Timeouts.OAuth2,
		"timeouts.connection_acquire_timeout": g.Timeouts.ConnectionAcquire,
		"timeouts.smtp_timeout":               g.Timeouts.SMTP,
		"timeouts.client_command_timeout":     g.Listener.CommandTimeout,
		"timeouts.client_data_block_timeout":  g.Listener.DataBlockTimeout,
		"timeouts.client_data_timeout":        g.Listener.DataTimeout,
		"timeouts.client_handshake_timeout":   g.Listener.HandshakeTimeout,
		"http_pool.connect_timeout_seconds":   g.HTTPPool.ConnectTimeout,
	}
	for name, p := range provs {
		if p.Name != name {
			t.Fatalf("provider block %q is named %q", name, p.Name)
		}
		positive[name+".connection_max_age_seconds"] = p.Pool.ConnectionMaxAge
		positive[name+".connection_idle_timeout_seconds"] = p.Pool.ConnectionIdleTimeout
		positive[name+".recovery_timeout_seconds"] = p.CircuitBreaker.RecoveryTimeout
		if p.MaxConcurrentMessages < 1 || p.Pool.MaxConnectionsPerAccount < 1 || p.Pool.MaxMessagesPerConnection < 1 ||
			p.Retry.MaxAttempts < 1 || p.Retry.BackoffFactor < 0 || p.CircuitBreaker.FailureThreshold < 1 {
			t.Fatalf("provider %q out of bounds: %+v", name, p)
		}
	}
	if len(provs) != 3 {
		t.Fatalf("provider blocks = %d, want gmail, outlook, default", len(provs))
	}
	for name, d := range positive {
		if d <= 0 {
			t.Fatalf("%s accepted as %v; it must be positive", name, d)
		}
	}
	s, l := g.SMTP, g.Listener
	switch {
	case s.MaxMessageBytes < 1 || s.MaxRecipients < 1 || s.MaxLineBytes < 10000 || strings.ContainsAny(s.ServerHostname, " \t\r\n"):
		t.Fatalf("global.smtp out of bounds: %+v", s)
	case l.MaxCommandLineBytes < 512 || l.MaxAuthLineBytes < 512 || l.MaxConnectionsPerIP < 1 || l.MaxBadCommands < 1:
		t.Fatalf("listener limits out of bounds: %+v", l)
	case (l.TLSCertFile == "") != (l.TLSKeyFile == "") || (l.TLSPort != 0 && l.TLSCertFile == ""):
		t.Fatalf("listener TLS half set: %+v", l)
	case l.ProxyProtocol && len(l.ProxyProtocolNetworks) == 0:
		t.Fatal("proxy_protocol on with no trusted load balancer")
	case g.Concurrency.GlobalConcurrencyLimit < 1 || g.Tokens.RefreshWorkers < 1 || g.Tokens.FetchWorkers < 1:
		t.Fatalf("workers or limits out of bounds: %+v %+v", g.Concurrency, g.Tokens)
	}
}
