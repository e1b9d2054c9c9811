package config

import (
	"net"
	"net/url"
	"path/filepath"
	"time"
)

// Onboarding is the "onboarding" block of config.json: the public listener
// where mailbox owners open their invitation links (package onboarding).
// Never the admin listener.
type Onboarding struct {
	// Listen is "listen", host:port; "" (the default) means no onboarding
	// listener and no invitations.
	Listen string
	// PublicURL is "public_url": the listener as owners' browsers reach
	// it; links and the OAuth redirect URI (PublicURL/callback, to be
	// registered with the provider's app) start with it.
	PublicURL string
	// TLSCertFile and TLSKeyFile ("tls_cert_file", "tls_key_file") make
	// the listener serve HTTPS; relative to config.json.
	TLSCertFile, TLSKeyFile string
	// BehindProxy is "behind_reverse_proxy": TLS ends at a reverse proxy
	// in front, and the listener speaks plain HTTP to it.
	BehindProxy bool
	// StateFile is "state_file", the invitations; default
	// invitations.json next to accounts.json.
	StateFile string
	// InvitationTTL is "invitation_ttl_seconds"; default 7 days.
	InvitationTTL time.Duration
}

func parseOnboarding(o *object, ob *Onboarding, dir string) {
	ob.InvitationTTL = 7 * 24 * time.Hour
	if o == nil {
		return
	}
	if o.str("listen", &ob.Listen) {
		if _, _, err := net.SplitHostPort(ob.Listen); err != nil {
			o.errorf("listen", "must be host:port, not %q", ob.Listen)
		}
	}
	if o.str("public_url", &ob.PublicURL) {
		u, err := url.Parse(ob.PublicURL)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			o.errorf("public_url", "must be an absolute https:// URL, not %q", ob.PublicURL)
		case u.Scheme == "http" && !IsLoopbackHost(u.Hostname()):
			o.errorf("public_url", "must be https:// (owners' browsers send the provider's authorization code to it); http:// only to a loopback host")
		}
	}
	for _, k := range []struct {
		key string
		dst *string
	}{{"tls_cert_file", &ob.TLSCertFile}, {"tls_key_file", &ob.TLSKeyFile}, {"state_file", &ob.StateFile}} {
		if o.str(k.key, k.dst) && !filepath.IsAbs(*k.dst) {
			*k.dst = filepath.Join(dir, *k.dst)
		}
	}
	o.boolean("behind_reverse_proxy", &ob.BehindProxy)
	o.seconds("invitation_ttl_seconds", true, &ob.InvitationTTL)
	if ob.Listen == "" {
		o.finish()
		return
	}
	if ob.PublicURL == "" {
		o.errorf("public_url", "required with listen: the address owners' browsers reach the listener at")
	}
	if (ob.TLSCertFile == "") != (ob.TLSKeyFile == "") {
		o.errorf("tls_cert_file", "tls_cert_file and tls_key_file go together")
	}
	if ob.TLSCertFile == "" && !ob.BehindProxy {
		if host, _, err := net.SplitHostPort(ob.Listen); err == nil && !IsLoopbackHost(host) {
			o.errorf("listen", "a public listener needs tls_cert_file and tls_key_file, or behind_reverse_proxy: true when a reverse proxy in front ends TLS")
		}
	}
	o.finish()
}
