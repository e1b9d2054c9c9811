package config

import (
	"crypto/x509"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// minLineBytes is the smallest max_line_length we enforce. RFC 5321
// §4.5.3.1.6 says 998, but bulk HTML routinely carries longer lines and the
// upstream providers accept them; rejecting them here would bounce mail the
// provider would have taken (docs/config.md).
const minLineBytes = 10000

// defaultGlobal returns the built-in global settings.
func defaultGlobal() Global {
	return Global{
		Feedback: defaultFeedback(),
		SMTP: SMTP{
			ServerHostname:  "xoauth2-proxy",
			MaxMessageBytes: 50 << 20,
			MaxRecipients:   1000,
			MaxLineBytes:    minLineBytes,
			TrustedNetworks: []netip.Prefix{
				netip.MustParsePrefix("127.0.0.0/8"),
				netip.MustParsePrefix("::1/128"),
			},
			UseSourceIPBinding: true,
			ValidateSourceIP:   true,
			UpstreamChunking:   true,
		},
		Timeouts: Timeouts{
			OAuth2:            10 * time.Second,
			ConnectionAcquire: 5 * time.Second,
			SMTP:              30 * time.Second,
		},
		Concurrency: Concurrency{
			GlobalConcurrencyLimit: 10000,
			BackpressureQueueSize:  1000,
		},
		HTTPPool: HTTPPool{
			TotalConnections:   500,
			ConnectionsPerHost: 100,
			DNSCacheTTL:        300 * time.Second,
			ConnectTimeout:     5 * time.Second,
		},
		// PROVIDERS.md: refresh at least 10 minutes before expiry
		// (Microsoft HVE refuses a token with less left). The old tool's
		// 300 is still honoured when a file sets it.
		TokenRefreshBuffer: 600 * time.Second,
		Tokens:             defaultTokens(),
		Listener:           defaultListener(),
		Cluster:            defaultCluster(),
	}
}

// parseConfig applies a decoded config.json to g and provs, which hold the
// built-in defaults.
func parseConfig(d *diag, file string, doc any, g *Global, provs map[string]Provider) {
	top := newObject(d, where{file: file}, "", doc)
	if top == nil {
		return
	}
	// upstream_ca_file is relative to the config file, wherever the
	// process was started.
	dir, err := filepath.Abs(filepath.Dir(file))
	if err != nil {
		dir = filepath.Dir(file)
	}
	// Before "global", whose oauth2 keys win over these.
	parsePowerMTARelay(top, &g.Tokens)
	parseGlobal(top.child("global"), g, dir)
	parseProviders(top.child("providers"), provs)
	parseFeedback(top.child("feedback"), &g.Feedback, dir)
	parseOnboarding(top.child("onboarding"), &g.Onboarding, dir)
	// Blocks the old tool (or its PowerMTA companion) read; none has an
	// effect here.
	top.ignore("powermta_relay", "features", "monitoring")
	top.finish()
}

func parseGlobal(o *object, g *Global, dir string) {
	if o == nil {
		return
	}
	// Old files put these two directly under "global"; the nested keys,
	// read below, win when both are present.
	o.count("backpressure_queue_size", 0, &g.Concurrency.BackpressureQueueSize)
	o.seconds("oauth2_timeout", true, &g.Timeouts.OAuth2)

	if c := o.child("concurrency"); c != nil {
		c.count("global_concurrency_limit", 1, &g.Concurrency.GlobalConcurrencyLimit)
		c.count("backpressure_queue_size", 0, &g.Concurrency.BackpressureQueueSize)
		c.ignore("connection_backlog", "max_concurrent_connections")
		c.finish()
	}
	if t := o.child("timeouts"); t != nil {
		t.seconds("oauth2_timeout", true, &g.Timeouts.OAuth2)
		t.seconds("connection_acquire_timeout", true, &g.Timeouts.ConnectionAcquire)
		t.seconds("smtp_timeout", true, &g.Timeouts.SMTP)
		parseListenerTimeouts(t, &g.Listener)
		t.finish()
	}
	if a := o.child("oauth2"); a != nil {
		a.seconds("token_refresh_buffer_seconds", false, &g.TokenRefreshBuffer)
		parseTokens(a, &g.Tokens, dir)
		a.finish()
	}
	if h := o.child("http_pool"); h != nil {
		h.count("total_connections", 1, &g.HTTPPool.TotalConnections)
		h.count("connections_per_host", 1, &g.HTTPPool.ConnectionsPerHost)
		h.seconds("dns_cache_ttl_seconds", false, &g.HTTPPool.DNSCacheTTL)
		h.seconds("connect_timeout_seconds", true, &g.HTTPPool.ConnectTimeout)
		h.finish()
	}
	if s := o.child("smtp"); s != nil {
		parseSMTP(s, &g.SMTP, dir)
		parseListenerSMTP(s, &g.Listener, dir)
		s.finish()
	}
	parseCluster(o.child("cluster"), &g.Cluster, dir)
	if l := o.child("logging"); l != nil {
		// Logging is set on the command line; the old keys are accepted.
		l.ignore("level", "format", "log_rotation", "max_log_size_mb")
		l.finish()
	}
	o.finish()
}

func parseSMTP(o *object, s *SMTP, dir string) {
	if o.str("server_hostname", &s.ServerHostname) &&
		strings.ContainsAny(s.ServerHostname, " \t\r\n") {
		o.errorf("server_hostname", "must be a host name without spaces, not %q", s.ServerHostname)
	}
	o.size("max_message_size", &s.MaxMessageBytes)
	o.count("max_recipients", 1, &s.MaxRecipients)
	o.count("max_line_length", 1, &s.MaxLineBytes)
	if s.MaxLineBytes < minLineBytes {
		o.warnf("max_line_length", "%d raised to %d: bulk HTML carries longer lines than RFC 5321's 998",
			s.MaxLineBytes, minLineBytes)
		s.MaxLineBytes = minLineBytes
	}
	if v, ok := o.get("trusted_networks"); ok {
		s.TrustedNetworks = parseNetworks(o, "trusted_networks", v)
	}
	if o.str("upstream_ca_file", &s.UpstreamCAFile) {
		if !filepath.IsAbs(s.UpstreamCAFile) {
			s.UpstreamCAFile = filepath.Join(dir, s.UpstreamCAFile)
		}
		checkCAFile(o, "upstream_ca_file", s.UpstreamCAFile)
	}
	o.boolean("use_source_ip_binding", &s.UseSourceIPBinding)
	o.boolean("validate_source_ip", &s.ValidateSourceIP)
	o.boolean("use_ipv6", &s.UseIPv6)
	o.boolean("upstream_chunking", &s.UpstreamChunking)
}

// parseNetworks reads an array of CIDR prefixes or bare addresses (a bare
// address is a /32 or /128). An empty array trusts no network.
func parseNetworks(o *object, key string, v any) []netip.Prefix {
	list, ok := v.([]any)
	if !ok {
		o.errorf(key, "must be an array of CIDR prefixes or IP addresses, not %s", jsonType(v))
		return nil
	}
	out := []netip.Prefix{}
	for _, e := range list {
		s, ok := e.(string)
		if !ok {
			o.errorf(key, "entries must be strings, not %s", jsonType(e))
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			o.errorf(key, "%q is neither a CIDR prefix nor an IP address", s)
			continue
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out
}

// checkCAFile makes sure the extra upstream roots load now rather than at
// the first upstream connection.
func checkCAFile(o *object, key, path string) {
	pem, err := os.ReadFile(path)
	if err != nil {
		o.errorf(key, "%v", err)
		return
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		o.errorf(key, "%s holds no PEM certificate", path)
	}
}
