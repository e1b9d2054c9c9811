package smtpd_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/proxyproto"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/smtpd"
)

// proxyConfig: the load balancer is 127.0.0.1, only 127.0.0.3 is trusted.
func proxyConfig() smtpd.Config {
	return smtpd.Config{
		ProxyProtocol:    []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		Trusted:          []netip.Prefix{netip.MustParsePrefix("127.0.0.3/32")},
		HandshakeTimeout: 300 * time.Millisecond,
	}
}

func header(src string) proxyproto.Header {
	return proxyproto.Header{Source: netip.MustParseAddrPort(src), Dest: netip.MustParseAddrPort("127.0.0.1:25")}
}

// TestProxyProtocol_clientAddressFromHeader: behind a load balancer, the
// header's address decides trust (AUTH in clear) and reaches the backend.
func TestProxyProtocol_clientAddressFromHeader(t *testing.T) {
	t.Parallel()
	b := &fakeBackend{}
	srv, addr, _ := startServers(t, proxyConfig(), b, false)
	for _, v := range []int{1, 2} {
		for _, tc := range []struct {
			src  string
			want string // reply to AUTH in clear
		}{
			{"127.0.0.3:4000", "235 "},          // trusted client behind the balancer
			{"198.51.100.7:4000", "538 5.7.11"}, // untrusted: needs TLS
			{"[2001:db8::7]:4000", "538 5.7.11"},
		} {
			h := header(tc.src)
			raw := h.AppendV1(nil)
			if v == 2 {
				raw = h.AppendV2(nil)
			}
			c := dialFrom(t, addr, "127.0.0.1")
			c.send(string(raw))
			c.expect("220 ")
			c.ehlo()
			c.send(authAlice)
			c.expect(tc.want)
			if tc.want == "235 " {
				if li := b.lastLogin(); li.Remote != h.Source || li.Proxy.Addr() != netip.MustParseAddr("127.0.0.1") {
					t.Errorf("v%d: backend saw remote %v via %v, want %v", v, li.Remote, li.Proxy, h.Source)
				}
			}
		}
	}
	if st := srv.Stats(); st.ProxiedClients != 6 {
		t.Errorf("stats %+v", st)
	}
}

// TestProxyProtocol_onlyFromLoadBalancers: a header from anyone else is
// just a bad command; a load balancer without a header is cut off.
func TestProxyProtocol_onlyFromLoadBalancers(t *testing.T) {
	t.Parallel()
	b := &fakeBackend{}
	srv, addr, _ := startServers(t, proxyConfig(), b, false)

	c := dialFrom(t, addr, "127.0.0.2")
	c.expect("220 ")
	c.send(string(header("127.0.0.3:1").AppendV1(nil)))
	c.expect("500 5.5.2")
	c.ehlo()
	c.send(authAlice)
	c.expect("538 ") // still 127.0.0.2, untrusted

	for name, first := range map[string]string{
		"SMTP instead of a header": "EHLO lb.test\r\n",
		"broken v1":                "PROXY TCP4 1.2.3.4\r\n",
		"broken v2":                "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x01x",
	} {
		lb := dialFrom(t, addr, "127.0.0.1")
		lb.send(first)
		if got, _ := io.ReadAll(lb.br); len(got) != 0 {
			t.Errorf("%s: load balancer got %q, want a silent close", name, got)
		}
	}
	lb := dialFrom(t, addr, "127.0.0.1") // says nothing at all
	if got, _ := io.ReadAll(lb.br); len(got) != 0 {
		t.Errorf("silent load balancer got %q", got)
	}
	if st := srv.Stats(); st.ProxyFailures != 4 {
		t.Errorf("proxy failures %d, want 4", st.ProxyFailures)
	}
}

// TestProxyProtocol_localUsesTheConnection: LOCAL (health checks) keeps
// the balancer's own address.
func TestProxyProtocol_localUsesTheConnection(t *testing.T) {
	t.Parallel()
	b := &fakeBackend{}
	cfg := proxyConfig()
	cfg.Trusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	_, addr, _ := startServers(t, cfg, b, false)
	for _, raw := range [][]byte{proxyproto.Header{Local: true}.AppendV2(nil), []byte("PROXY UNKNOWN\r\n")} {
		c := dialFrom(t, addr, "127.0.0.1")
		c.send(string(raw))
		c.expect("220 ")
		c.ehlo()
		c.send(authAlice)
		c.expect("235 ")
		if li := b.lastLogin(); li.Remote.Addr() != netip.MustParseAddr("127.0.0.1") || li.Proxy.IsValid() {
			t.Errorf("backend saw %+v", li)
		}
	}
}

// TestProxyProtocol_perAddressLimit counts the clients behind the
// balancer, not the balancer.
func TestProxyProtocol_perAddressLimit(t *testing.T) {
	t.Parallel()
	cfg := proxyConfig()
	cfg.MaxConnectionsPerIP = 2
	srv, addr, _ := startServers(t, cfg, &fakeBackend{}, false)
	open := func(src string) *client {
		c := dialFrom(t, addr, "127.0.0.1")
		c.send(string(header(src).AppendV2(nil)))
		return c
	}
	open("203.0.113.9:1").expect("220 ")
	open("203.0.113.9:2").expect("220 ")
	open("203.0.113.9:3").expect("421 4.7.0")
	open("203.0.113.10:1").expect("220 ")
	// IPv6 clients count per /64.
	open("[2001:db8::1]:1").expect("220 ")
	open("[2001:db8::2]:1").expect("220 ")
	open("[2001:db8::3]:1").expect("421 4.7.0")
	open("[2001:db8:0:1::1]:1").expect("220 ")
	if st := srv.Stats(); st.RefusedPerIP != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestProxyProtocol_implicitTLS: the header comes in clear before the
// handshake, possibly in the same packet as the ClientHello.
func TestProxyProtocol_implicitTLS(t *testing.T) {
	t.Parallel()
	b := &fakeBackend{}
	cfg := proxyConfig()
	_, _, tlsAddr, _, roots, _ := tlsServer(t, cfg, b)
	c := dialFrom(t, tlsAddr, "127.0.0.1")
	tc := tls.Client(&prefixWriter{Conn: c.nc, pre: header("198.51.100.7:9").AppendV1(nil)}, clientTLS(roots))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.nc, c.br = tc, bufio.NewReader(tc)
	c.expect("220 ")
	if kw := c.ehlo(); !strings.Contains(kw, "AUTH") {
		t.Errorf("EHLO under TLS: %q", kw)
	}
	c.send(authAlice)
	c.expect("235 ")
	if li := b.lastLogin(); li.Remote != netip.MustParseAddrPort("198.51.100.7:9") || !li.TLS {
		t.Errorf("backend saw %+v", li)
	}
}

// prefixWriter sends pre in the same write as the first bytes written.
type prefixWriter struct {
	net.Conn
	pre []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	if p.pre != nil {
		buf := append(p.pre, b...)
		p.pre = nil
		if _, err := p.Conn.Write(buf); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	return p.Conn.Write(b)
}
