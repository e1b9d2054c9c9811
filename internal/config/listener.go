package config

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Listener is the client-facing side of the proxy: listener TLS, the
// PROXY protocol, and the limits and timeouts that protect it (RFC 5321
// §4.5.3). Its keys live in "global.smtp", the timeouts in
// "global.timeouts" with a "client_" prefix (smtp_timeout is the
// upstream's). docs/config.md lists them.
type Listener struct {
	// TLSCertFile and TLSKeyFile are the PEM certificate chain and key
	// for STARTTLS and the implicit TLS port ("tls_cert_file",
	// "tls_key_file", relative to config.json). Both or neither; "" means
	// no TLS, and then AUTH only from trusted_networks.
	TLSCertFile, TLSKeyFile string
	// TLSPort is the implicit TLS (port 465 style) listener's port on the
	// --host address ("tls_port"); 0: none. Needs the certificate.
	TLSPort int
	// ProxyProtocol enables the PROXY protocol v1/v2 header on both
	// listeners ("proxy_protocol"), accepted only from the load balancers
	// in ProxyProtocolNetworks ("proxy_protocol_networks", required when
	// enabled). Default off.
	ProxyProtocol         bool
	ProxyProtocolNetworks []netip.Prefix
	// MaxConnectionsPerIP caps open connections per client address (an
	// IPv6 /64) ("max_connections_per_ip"); default 1000.
	MaxConnectionsPerIP int
	// MaxBadCommands is the number of invalid commands after which a
	// session gets 421 ("max_bad_commands"); default 20.
	MaxBadCommands int
	// MaxAuthFailuresPerIP and MaxAuthFailuresPerUser are the failed AUTH
	// attempts allowed per minute per client address and per username
	// before AUTH gets 421 4.7.0 ("max_auth_failures_per_ip",
	// "max_auth_failures_per_user"); default 10 each. The user counts by
	// account (email and account_id are one budget).
	MaxAuthFailuresPerIP   int
	MaxAuthFailuresPerUser int
	// TrustedAuthFailuresPerIP and TrustedAuthFailuresPerUser are the
	// same limits for clients in trusted_networks
	// ("trusted_max_auth_failures_per_ip", default 300;
	// "trusted_max_auth_failures_per_user", default 30).
	TrustedAuthFailuresPerIP   int
	TrustedAuthFailuresPerUser int
	// MaxAuthChecks bounds the password checks running at once
	// ("max_concurrent_auth_checks"); default 0: the number of CPUs, at
	// least 2.
	MaxAuthChecks int
	// MaxCommandLineBytes ("max_command_line_length", default 2048) and
	// MaxAuthLineBytes ("max_auth_line_length", default 12288) bound
	// command lines, CRLF excluded; both at least 512 (RFC 5321
	// §4.5.3.1.4).
	MaxCommandLineBytes int
	MaxAuthLineBytes    int
	// Timeouts towards clients, from "global.timeouts":
	// "client_command_timeout" (greeting and each command, default 300s),
	// "client_data_block_timeout" (each wait for more of a body, 180s),
	// "client_data_timeout" (a whole DATA phase, 600s) and
	// "client_handshake_timeout" (a TLS handshake or PROXY header, 60s),
	// "client_auth_timeout" (from the greeting to a successful AUTH, 60s)
	// and "client_auth_queue_timeout" (an AUTH's wait for a password
	// check, 10s).
	CommandTimeout   time.Duration
	DataBlockTimeout time.Duration
	DataTimeout      time.Duration
	HandshakeTimeout time.Duration
	AuthTimeout      time.Duration
	AuthQueueTimeout time.Duration
}

// minCommandLineBytes is RFC 5321 §4.5.3.1.4's 512 octets.
const minCommandLineBytes = 512

func defaultListener() Listener {
	return Listener{
		MaxConnectionsPerIP:        1000,
		MaxBadCommands:             20,
		MaxAuthFailuresPerIP:       10,
		MaxAuthFailuresPerUser:     10,
		TrustedAuthFailuresPerIP:   300,
		TrustedAuthFailuresPerUser: 30,
		MaxCommandLineBytes:        2048,
		MaxAuthLineBytes:           12288,
		CommandTimeout:             5 * time.Minute,
		DataBlockTimeout:           3 * time.Minute,
		DataTimeout:                10 * time.Minute,
		HandshakeTimeout:           time.Minute,
		AuthTimeout:                time.Minute,
		AuthQueueTimeout:           10 * time.Second,
	}
}

// parseListenerSMTP reads the listener keys of "global.smtp". Relative
// file names are resolved against dir, the config file's directory.
func parseListenerSMTP(o *object, l *Listener, dir string) {
	abs := func(p string) string {
		if p != "" && !filepath.IsAbs(p) {
			return filepath.Join(dir, p)
		}
		return p
	}
	o.str("tls_cert_file", &l.TLSCertFile)
	o.str("tls_key_file", &l.TLSKeyFile)
	l.TLSCertFile, l.TLSKeyFile = abs(l.TLSCertFile), abs(l.TLSKeyFile)
	if n, ok := o.whole("tls_port", 0, 65535); ok {
		l.TLSPort = int(n)
	}
	switch {
	case (l.TLSCertFile == "") != (l.TLSKeyFile == ""):
		o.errorf("tls_cert_file", "tls_cert_file and tls_key_file go together; set both or neither")
	case l.TLSCertFile != "":
		if _, err := tls.LoadX509KeyPair(l.TLSCertFile, l.TLSKeyFile); err != nil {
			o.errorf("tls_cert_file", "cannot load the certificate and key: %v", err)
		}
		warnSecretFile(o, "tls_key_file", l.TLSKeyFile, "the listener's private key")
	case l.TLSPort != 0:
		o.errorf("tls_port", "needs tls_cert_file and tls_key_file")
	}

	o.boolean("proxy_protocol", &l.ProxyProtocol)
	if v, ok := o.get("proxy_protocol_networks"); ok {
		l.ProxyProtocolNetworks = parseNetworks(o, "proxy_protocol_networks", v)
	}
	switch {
	case l.ProxyProtocol && len(l.ProxyProtocolNetworks) == 0:
		o.errorf("proxy_protocol_networks", "proxy_protocol is on: list the load balancers' addresses; a PROXY header from anyone else would let them claim any client address")
	case !l.ProxyProtocol && len(l.ProxyProtocolNetworks) > 0:
		o.warnf("proxy_protocol_networks", "ignored: proxy_protocol is off")
	}

	o.count("max_connections_per_ip", 1, &l.MaxConnectionsPerIP)
	o.count("max_bad_commands", 1, &l.MaxBadCommands)
	o.count("max_auth_failures_per_ip", 1, &l.MaxAuthFailuresPerIP)
	o.count("max_auth_failures_per_user", 1, &l.MaxAuthFailuresPerUser)
	o.count("trusted_max_auth_failures_per_ip", 1, &l.TrustedAuthFailuresPerIP)
	o.count("trusted_max_auth_failures_per_user", 1, &l.TrustedAuthFailuresPerUser)
	o.count("max_concurrent_auth_checks", 1, &l.MaxAuthChecks)
	o.count("max_command_line_length", minCommandLineBytes, &l.MaxCommandLineBytes)
	o.count("max_auth_line_length", minCommandLineBytes, &l.MaxAuthLineBytes)
}

// parseListenerTimeouts reads the client_* keys of "global.timeouts".
func parseListenerTimeouts(o *object, l *Listener) {
	o.seconds("client_command_timeout", true, &l.CommandTimeout)
	o.seconds("client_data_block_timeout", true, &l.DataBlockTimeout)
	o.seconds("client_data_timeout", true, &l.DataTimeout)
	o.seconds("client_handshake_timeout", true, &l.HandshakeTimeout)
	o.seconds("client_auth_timeout", true, &l.AuthTimeout)
	o.seconds("client_auth_queue_timeout", true, &l.AuthQueueTimeout)
}

// warnSecretFile warns when a file holding a secret can be read by the
// file's group or by everyone.
func warnSecretFile(o *object, key, path, what string) {
	if runtime.GOOS == "windows" {
		return // the mode bits do not describe Windows ACLs
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o044 != 0 {
		o.warnf(key, "%s is readable by other users (mode %04o) but holds %s; chmod 600 it", path, fi.Mode().Perm(), what)
	}
}

// summary is the listener's line of Snapshot.Summary.
func (l Listener) summary() string {
	tls := "listener TLS: none (AUTH from trusted networks only)"
	if l.TLSCertFile != "" {
		tls = "listener TLS: STARTTLS"
		if l.TLSPort != 0 {
			tls += fmt.Sprintf(", implicit TLS port %d", l.TLSPort)
		}
	}
	proxy := "PROXY protocol: off"
	if l.ProxyProtocol {
		nets := make([]string, len(l.ProxyProtocolNetworks))
		for i, p := range l.ProxyProtocolNetworks {
			nets[i] = p.String()
		}
		proxy = "PROXY protocol from " + strings.Join(nets, ", ")
	}
	return fmt.Sprintf("%s; %s; per address: %d connections, %d failed AUTH/min (trusted networks: no connection cap, %d); %d failed AUTH/min per account (trusted: %d)\n",
		tls, proxy, l.MaxConnectionsPerIP, l.MaxAuthFailuresPerIP, l.TrustedAuthFailuresPerIP,
		l.MaxAuthFailuresPerUser, l.TrustedAuthFailuresPerUser)
}
