package config_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
)

// selfSigned returns a PEM certificate and PEM PKCS#8 key for 127.0.0.1.
func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	k, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k})
}

func TestLoad_listenerDefaults(t *testing.T) {
	t.Parallel()
	s, _, err := loadDir(t, writeDir(t, map[string]string{"accounts.json": "[]"}))
	if err != nil {
		t.Fatal(err)
	}
	want := config.Listener{
		MaxConnectionsPerIP: 1000, MaxBadCommands: 20, MaxAuthFailuresPerIP: 10, MaxAuthFailuresPerUser: 10,
		TrustedAuthFailuresPerIP: 300, TrustedAuthFailuresPerUser: 30,
		MaxCommandLineBytes: 2048, MaxAuthLineBytes: 12288,
		CommandTimeout: 5 * time.Minute, DataBlockTimeout: 3 * time.Minute, DataTimeout: 10 * time.Minute,
		HandshakeTimeout: time.Minute, AuthTimeout: time.Minute, AuthQueueTimeout: 10 * time.Second,
	}
	if !reflect.DeepEqual(s.Global.Listener, want) {
		t.Errorf("listener = %+v, want %+v", s.Global.Listener, want)
	}
}

func TestLoad_listenerKeys(t *testing.T) {
	t.Parallel()
	cert, key := selfSigned(t)
	dir := writeDir(t, map[string]string{
		"accounts.json": "[]",
		"cert.pem":      string(cert),
		"key.pem":       string(key),
		"config.json": `{"global": {
			"smtp": {"tls_cert_file": "cert.pem", "tls_key_file": "key.pem", "tls_port": 465,
			         "proxy_protocol": true, "proxy_protocol_networks": ["10.0.0.0/8", "192.0.2.7"],
			         "max_connections_per_ip": 50, "max_bad_commands": 5,
			         "max_auth_failures_per_ip": 3, "max_auth_failures_per_user": 4,
			         "trusted_max_auth_failures_per_ip": 40, "trusted_max_auth_failures_per_user": 6,
			         "max_concurrent_auth_checks": 3,
			         "max_command_line_length": 4096, "max_auth_line_length": 20000},
			"timeouts": {"client_command_timeout": 60, "client_data_block_timeout": 30,
			             "client_data_timeout": 120, "client_handshake_timeout": 5.5,
			             "client_auth_timeout": 20, "client_auth_queue_timeout": 2}}}`,
	})
	s, ws, err := loadDir(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	if u := unknownKeys(ws); len(u) > 0 {
		t.Errorf("unknown keys: %v", u)
	}
	want := config.Listener{
		TLSCertFile: filepath.Join(dir, "cert.pem"), TLSKeyFile: filepath.Join(dir, "key.pem"), TLSPort: 465,
		ProxyProtocol:         true,
		ProxyProtocolNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32")},
		MaxConnectionsPerIP:   50, MaxBadCommands: 5, MaxAuthFailuresPerIP: 3, MaxAuthFailuresPerUser: 4,
		TrustedAuthFailuresPerIP: 40, TrustedAuthFailuresPerUser: 6, MaxAuthChecks: 3,
		MaxCommandLineBytes: 4096, MaxAuthLineBytes: 20000,
		CommandTimeout: time.Minute, DataBlockTimeout: 30 * time.Second, DataTimeout: 2 * time.Minute,
		HandshakeTimeout: 5500 * time.Millisecond, AuthTimeout: 20 * time.Second, AuthQueueTimeout: 2 * time.Second,
	}
	if !reflect.DeepEqual(s.Global.Listener, want) {
		t.Errorf("listener = %+v\nwant %+v", s.Global.Listener, want)
	}
}

func TestLoad_listenerErrors(t *testing.T) {
	t.Parallel()
	cert, key := selfSigned(t)
	otherCert, _ := selfSigned(t)
	tests := []struct {
		name, smtp, field, msg string
	}{
		{"cert without key", `{"tls_cert_file": "cert.pem"}`, "global.smtp.tls_cert_file", "set both or neither"},
		{"key not matching", `{"tls_cert_file": "other.pem", "tls_key_file": "key.pem"}`, "global.smtp.tls_cert_file", "cannot load"},
		{"missing file", `{"tls_cert_file": "nope.pem", "tls_key_file": "key.pem"}`, "global.smtp.tls_cert_file", "cannot load"},
		{"tls port without cert", `{"tls_port": 465}`, "global.smtp.tls_port", "needs tls_cert_file"},
		{"tls port out of range", `{"tls_port": 70000}`, "global.smtp.tls_port", "at most 65535"},
		{"proxy without networks", `{"proxy_protocol": true}`, "global.smtp.proxy_protocol_networks", "list the load balancers"},
		{"bad network", `{"proxy_protocol": true, "proxy_protocol_networks": ["lb.example"]}`, "global.smtp.proxy_protocol_networks", "neither"},
		{"tiny command line", `{"max_command_line_length": 100}`, "global.smtp.max_command_line_length", "at least 512"},
		{"zero per-ip", `{"max_connections_per_ip": 0}`, "global.smtp.max_connections_per_ip", "at least 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := writeDir(t, map[string]string{
				"accounts.json": "[]", "cert.pem": string(cert), "key.pem": string(key), "other.pem": string(otherCert),
				"config.json": `{"global": {"smtp": ` + tc.smtp + `}}`,
			})
			_, _, err := loadDir(t, dir)
			if err == nil || !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %v, want %s: ...%s", err, tc.field, tc.msg)
			}
		})
	}
	t.Run("zero timeout", func(t *testing.T) {
		t.Parallel()
		dir := writeDir(t, map[string]string{"accounts.json": "[]", "config.json": `{"global": {"timeouts": {"client_data_timeout": 0}}}`})
		if _, _, err := loadDir(t, dir); err == nil || !strings.Contains(err.Error(), "client_data_timeout") {
			t.Errorf("err = %v", err)
		}
	})
}

// TestLoad_secretFilesReadableByOthersWarn: the accounts file and the
// listener key warn when their group or everyone can read them.
func TestLoad_secretFilesReadableByOthersWarn(t *testing.T) {
	t.Parallel()
	cert, key := selfSigned(t)
	for _, mode := range []os.FileMode{0o640, 0o604, 0o600} {
		dir := writeDir(t, map[string]string{
			"accounts.json": "[]", "cert.pem": string(cert), "key.pem": string(key),
			"config.json": `{"global": {"smtp": {"tls_cert_file": "cert.pem", "tls_key_file": "key.pem"}}}`,
		})
		for _, f := range []string{"accounts.json", "key.pem"} {
			if err := os.Chmod(filepath.Join(dir, f), mode); err != nil {
				t.Fatal(err)
			}
		}
		_, ws, err := loadDir(t, dir)
		if err != nil {
			t.Fatal(err)
		}
		_, accWarn := findWarning(ws, "", "holds refresh tokens")
		_, keyWarn := findWarning(ws, "global.smtp.tls_key_file", "private key")
		if want := mode != 0o600; accWarn != want || keyWarn != want {
			var b bytes.Buffer
			for _, w := range ws {
				b.WriteString(w.String() + "\n")
			}
			t.Errorf("mode %04o: accounts warning %v, key warning %v, want %v\n%s", mode, accWarn, keyWarn, want, b.String())
		}
	}
}
